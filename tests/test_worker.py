"""Connections kept across a worker's tasks, against the real database."""

import threading

import pytest
from celery.signals import task_prerun, worker_process_shutdown
from django.db import OperationalError, connection, connections

from reactive_celery import signals, worker
from reactive_celery.store import observers
from tests.conftest import UNCONSUMED
from tests.testapp.models import Item


@pytest.mark.django_db(transaction=True)
def test_a_connection_that_failed_but_answers_is_kept_and_checked_again():
    Item.objects.count()
    raw = connection.connection
    connection.errors_occurred = True  # as after an IntegrityError the task handled
    connection.health_check_done = True
    task_prerun.send(sender=None)  # connected in AppConfig.ready
    assert connection.connection is raw
    assert (connection.errors_occurred, connection.health_check_done) == (False, False)


@pytest.mark.django_db(transaction=True)
def test_a_connection_the_database_dropped_is_closed_before_the_next_task():
    Item.objects.count()
    if connection.vendor == "postgresql":
        pid = connection.connection.info.backend_pid
        other = connections.create_connection("default")
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        other.close()
        with pytest.raises(OperationalError):
            Item.objects.count()
        worker.check_connections()
        assert connection.connection is None
    else:
        # SQLite has no server to drop it: an open file stays usable.
        connection.errors_occurred = True
        worker.check_connections()
        assert connection.connection is not None
    assert Item.objects.count() == 0  # the next task connects anew


@pytest.mark.django_db(transaction=True)
def test_a_pool_process_about_to_exit_first_sends_what_its_commits_handed_over(
    monkeypatch, store_redis, broker
):
    observers.save(
        "reads-items", spec="{}", items=[], meta={}, version=1, tables=["testapp_item"], creator=""
    )
    release = threading.Event()
    real = signals._sender._send
    monkeypatch.setattr(signals._sender, "_send", lambda w, c: (release.wait(10), real(w, c)))
    Item.objects.create(name="written by a task")
    exiting = threading.Thread(
        target=worker_process_shutdown.send, kwargs={"sender": None, "pid": 1, "exitcode": 0}
    )
    exiting.start()
    exiting.join(0.3)
    assert exiting.is_alive()  # waits for the held send (connected in AppConfig.ready)
    assert broker.redis.llen(UNCONSUMED) == 0
    release.set()
    exiting.join(10)
    assert not exiting.is_alive()
    assert broker.redis.llen(UNCONSUMED) == 1
