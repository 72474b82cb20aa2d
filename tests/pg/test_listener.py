"""Draining the change log, the listener's reconnect and catch-up, ``manage.py reactive_listen``.

Against the real PostgreSQL of the postgres cell; ``on_change`` records what
the listener would hand to ``notify()`` (the e2e tests follow it to sockets).
"""

import threading
from io import StringIO

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connections as db_connections

from reactive_celery import signals
from reactive_celery.pg import listener as listen
from reactive_celery.pg import triggers
from reactive_celery.store import observers
from tests.conftest import UNCONSUMED
from tests.testapp.models import Item, Tag

pytestmark = [pytest.mark.postgres]


class Recorder:
    """An ``on_change`` that keeps every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list | None]] = []
        self.ready = threading.Semaphore(0)
        self.seen = threading.Condition()

    def __call__(self, table, pks) -> None:
        with self.seen:
            self.calls.append((table, pks))
            self.seen.notify_all()

    def wait_for(self, count: int) -> None:
        with self.seen:
            assert self.seen.wait_for(lambda: len(self.calls) >= count, timeout=15), self.calls


def log_count() -> int:
    with psycopg.connect(**_params(), autocommit=True) as conn:
        return conn.execute(f"SELECT count(*) FROM {triggers.LOG_TABLE}").fetchone()[0]


def _params() -> dict:
    conn = listen.connect()
    info = conn.info.get_parameters()
    conn.close()
    return {
        "dbname": info["dbname"],
        "user": info["user"],
        "host": info["host"],
        "port": info["port"],
    }


def test_a_drain_merges_rows_per_table_with_typed_keys_and_empties_the_log(watched):
    a, b = Item.objects.bulk_create([Item(name="a"), Item(name="b")])
    Item.objects.filter(pk=a.pk).update(name="c")
    Tag.objects.bulk_create([Tag(name=str(i)) for i in range(triggers.MAX_PKS + 1)])
    Tag.objects.create(name="one more")
    seen = Recorder()
    with listen.connect() as conn:
        assert listen.drain(conn, seen) == 4
        assert listen.drain(conn, seen) == 0
    assert sorted(seen.calls, key=str) == [("testapp_item", [a.pk, b.pk]), ("testapp_tag", None)]
    assert log_count() == 0


def test_a_drain_that_fails_leaves_its_rows_for_the_next(watched):
    Item.objects.create(name="kept")

    def broken(table, pks):
        raise RuntimeError("Redis is down")

    with listen.connect() as conn:
        with pytest.raises(RuntimeError):
            listen.drain(conn, broken)
        assert log_count() == 1
        seen = Recorder()
        assert listen.drain(conn, seen) == 1
    assert [table for table, _ in seen.calls] == ["testapp_item"]


def test_a_drain_commits_only_after_notify_sent_what_it_fed(
    watched, monkeypatch, store_redis, broker
):
    observers.save(
        "reads-items", spec="{}", items=[], meta={}, version=1, tables=["testapp_item"], creator=""
    )
    Item.objects.create(name="fed")
    release, real = threading.Event(), signals._sender._send
    monkeypatch.setattr(signals._sender, "_send", lambda w, c: (release.wait(10), real(w, c)))
    with listen.connect() as conn:

        def drain():
            listen.drain(conn)
            db_connections.close_all()  # notify() opened this thread's own

        draining = threading.Thread(target=drain)
        draining.start()
        draining.join(0.3)
        # Killed now, the listener would leave the row to the next drain: not yet deleted.
        assert draining.is_alive() and log_count() == 1
        assert broker.redis.llen(UNCONSUMED) == 0
        release.set()
        draining.join(10)
    assert log_count() == 0
    assert [m["args"][0] for m in broker.messages()] == ["reads-items"]


def test_two_listeners_never_feed_the_same_row(watched):
    Item.objects.create(name="once")
    first, second = Recorder(), Recorder()
    with listen.connect() as one, listen.connect() as two, one.transaction():
        # The first holds the row locked, as a drain in progress does: the second skips it.
        one.execute(f"SELECT id FROM {triggers.LOG_TABLE} FOR UPDATE").fetchall()
        assert listen.drain(two, second) == 0
    with listen.connect() as one:
        assert listen.drain(one, first) == 1
    assert (len(first.calls), second.calls) == (1, [])


def test_the_listener_reconnects_and_catches_up_on_what_committed_meanwhile(watched):
    seen = Recorder()
    catchups: list[int] = []

    def ready(caught_up: int) -> None:
        catchups.append(caught_up)
        seen.ready.release()

    running = listen.Listener(on_change=seen, poll=0.1, on_ready=ready)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    try:
        assert seen.ready.acquire(timeout=15)
        first = Item.objects.create(name="live")
        seen.wait_for(1)
        with psycopg.connect(**_params(), autocommit=True) as admin:
            # Cut the listener's connection, then commit before it can reconnect.
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s",
                [listen.APPLICATION_NAME],
            )
        second = Item.objects.create(name="while cut")
        assert seen.ready.acquire(timeout=15)
        seen.wait_for(2)
    finally:
        running.stop()
        thread.join(15)
    assert not thread.is_alive()
    assert running.failures == 0  # reconnected
    assert [pks for _, pks in seen.calls] == [[first.pk], [second.pk]]
    assert catchups[0] == 0 and len(catchups) >= 2


def test_reactive_listen_refuses_to_start_without_triggers(transactional_db):
    with pytest.raises(CommandError, match="No reactive triggers on database 'default'"):
        call_command("reactive_listen", stdout=StringIO())
