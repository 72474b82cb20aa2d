"""The sender thread: commits outside a request hand over their writes; requests send inline.

The sends reach the real store and broker (Redis db 0 and 1 of the private
server); a test holds the thread's send on an event to see who ran it.
"""

import json
import os
import subprocess
import sys
import threading

import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from rest_framework.test import APIClient

from reactive_celery import sending, signals
from reactive_celery.sending import Sender
from reactive_celery.signals import notify
from reactive_celery.store import observers
from tests.conftest import UNCONSUMED
from tests.processes import ROOT
from tests.testapp.models import Item


def observing(oid: str, *tables: str) -> None:
    observers.save(oid, spec="{}", items=[], meta={}, version=1, tables=tables, creator="")


def merge(into, tables, pks):
    for table in tables:
        if pks is None or into.get(table, set()) is None:
            into[table] = None
        else:
            into[table] = into.get(table, set()) | set(pks)


class Held:
    """A send that waits until released, recording what it was given."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.calls: list[dict] = []

    def __call__(self, written, committed) -> None:
        self.entered.set()
        self.release.wait(10)
        self.calls.append(dict(written))


@pytest.fixture
def held(monkeypatch):
    """The process's sender, its sends held until ``held.release`` is set."""
    send = Held()
    real = signals._sender._send

    def then_send(written, committed):
        send(written, committed)
        real(written, committed)

    monkeypatch.setattr(signals._sender, "_send", then_send)
    yield send
    send.release.set()
    signals.flush(10)


def test_submit_returns_before_the_send_and_flush_waits_for_it():
    send = Held()
    sender = Sender(send, merge)
    sender.submit({"t": {"1"}})
    assert send.entered.wait(5)
    assert sender.flush(0.05) is False  # still sending
    send.release.set()
    assert sender.flush(5) is True
    assert send.calls == [{"t": {"1"}}]


def test_commits_during_a_send_go_out_together_in_the_next():
    send = Held()
    sender = Sender(send, merge)
    sender.submit({"t": {"1"}})
    assert send.entered.wait(5)
    sender.submit({"t": {"2"}, "u": None})
    sender.submit({"t": {"3"}, "u": {"9"}})
    send.release.set()
    assert sender.flush(5)
    assert send.calls == [{"t": {"1"}}, {"t": {"2", "3"}, "u": None}]


def test_the_first_commit_goes_at_once_and_a_stream_shares_the_next_send(monkeypatch):
    monkeypatch.setattr(sending, "MIN_INTERVAL", 1.0)
    send = Held()
    sender = Sender(send, merge)
    sender.submit({"t": {"0"}})
    assert send.entered.wait(0.9)  # not held back by the interval
    send.release.set()
    assert sender.flush(5)
    for pk in "12345":
        sender.submit({"t": {pk}})
    assert sender.flush(5)
    assert send.calls == [{"t": {"0"}}, {"t": set("12345")}]


def test_a_send_that_raises_is_logged_once_and_the_next_still_goes(caplog):
    calls = []

    def send(written, committed):
        calls.append(written)
        if len(calls) == 1:
            raise RuntimeError("boom")

    sender = Sender(send, merge)
    sender.submit({"t": None})
    assert sender.flush(5)
    sender.submit({"u": None})
    assert sender.flush(5)
    assert calls == [{"t": None}, {"u": None}]
    assert caplog.text.count("could not send committed writes") == 1


def test_a_forked_child_has_nothing_pending_and_its_own_thread():
    send = Held()
    sender = Sender(send, merge)
    sender.submit({"t": None})
    assert send.entered.wait(5)
    sender.submit({"u": None})  # pending behind the held send: the parent's
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: flush must not wait for the parent's send
        ok = sender.flush(2)
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.waitpid(pid, 0)
    send.release.set()
    assert sender.flush(5)
    assert send.calls == [{"t": None}, {"u": None}]


@pytest.mark.django_db(transaction=True)
def test_a_save_outside_a_request_does_not_wait_for_redis(held, store_redis, broker):
    observing("reads-items", "testapp_item")
    Item.objects.create(name="a")
    assert held.entered.wait(5)
    assert broker.redis.llen(UNCONSUMED) == 0  # the save returned; the thread holds the send
    held.release.set()
    assert [m["args"][0] for m in broker.messages()] == ["reads-items"]


@pytest.mark.django_db(transaction=True)
def test_a_write_request_answers_after_its_commit_was_sent(held, store_redis, broker):
    observing("reads-items", "testapp_item")
    response = APIClient().post("/api/items/", {"name": "posted"}, format="json")
    assert response.status_code == 201
    assert broker.redis.llen(UNCONSUMED) == 1  # sent before the response
    assert not held.entered.is_set()


@pytest.mark.django_db(transaction=True)
def test_a_write_request_under_asgi_answers_after_its_commit_was_sent(held, store_redis, broker):
    from tests.project.asgi import application

    observing("reads-items", "testapp_item")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/items/",
        "raw_path": b"/api/items/",
        "query_string": b"",
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", b"18"),
            (b"host", b"localhost"),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
    }

    async def post():
        communicator = ApplicationCommunicator(application, scope)
        await communicator.send_input(
            {"type": "http.request", "body": b'{"name": "posted"}', "more_body": False}
        )
        start = await communicator.receive_output(10)
        body = await communicator.receive_output(10)
        await communicator.wait(10)
        return start["status"], json.loads(body["body"])["name"]

    assert async_to_sync(post)() == (201, "posted")
    assert broker.redis.llen(UNCONSUMED) == 1
    assert not held.entered.is_set()


@pytest.mark.django_db(transaction=True)
def test_without_send_in_background_the_commit_sends_before_save_returns(
    settings, held, store_redis, broker
):
    settings.REACTIVE_CELERY = {**settings.REACTIVE_CELERY, "SEND_IN_BACKGROUND": False}
    observing("reads-items", "testapp_item")
    Item.objects.create(name="a")
    assert broker.redis.llen(UNCONSUMED) == 1
    assert not held.entered.is_set()


def test_a_process_that_exits_sends_what_its_commits_handed_over(store_redis, broker):
    observing("reads-a-view", "a_view_of_our_own")
    script = (
        "import django; django.setup()\n"
        "import time\n"
        "from reactive_celery import signals\n"
        "held = signals._sender._send\n"
        "signals._sender._send = lambda w, c: (time.sleep(0.3), held(w, c))\n"
        # A commit's callback, as on_commit calls it; the send is still asleep at exit.
        "signals._PendingTables({'a_view_of_our_own'})()\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "tests.project.settings",
        "REACTIVE_TEST_QUEUE": UNCONSUMED,
    }
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)
    assert [m["args"][0] for m in broker.messages()] == ["reads-a-view"]


@pytest.mark.django_db(transaction=True)
def test_notify_outside_a_transaction_hands_over_too(held, store_redis, broker):
    observing("reads-a-view", "a_view_of_our_own")
    notify("a_view_of_our_own")
    assert held.entered.wait(5)
    held.release.set()
    assert [m["args"][0] for m in broker.messages()] == ["reads-a-view"]
