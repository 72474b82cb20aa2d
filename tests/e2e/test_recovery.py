"""Recovery within seconds from the two faults of issue 9 (8), across real processes.

(a) A worker SIGKILLed with its pool mid-evaluation: its task stays unacked
    for the broker's visibility timeout (300 s for these processes); the sweep
    requeues the observer once its lock expires.
(b) A commit whose enqueue fails (Redis or the broker unreachable): the
    committing process retries, on a timer and with its next commit.
"""

import logging
import time
from contextlib import contextmanager

import pytest
from django.test import override_settings

from reactive_celery import notify, signals
from tests import processes
from tests.testapp.models import Item

pytestmark = [pytest.mark.e2e]

QUEUE = "reactive-recovery"
#: Dedicated worker and beat: the slow view (1.5 s) fits a 2 s limit, so its lock lives
#: 2 + 5 = 7 s; a sweep each second; unacked tasks come back only after 300 s.
DEDICATED = {
    "REACTIVE_TEST_QUEUE": QUEUE,
    "REACTIVE_TEST_TIME_LIMIT": "2",
    "REACTIVE_TEST_SWEEP_INTERVAL": "1",
    "REACTIVE_TEST_VISIBILITY_TIMEOUT": "300",
}
#: A port nothing listens on.
DEAD = "redis://127.0.0.1:1/0"


def test_a_worker_killed_with_its_pool_mid_evaluation_is_recovered_by_the_sweep(
    live, spawn, settings
):
    # Every consumer of the broker restores unacked tasks after its own visibility
    # timeout (the suite's workers: 20 s): none but the dedicated ones may run now.
    for worker in live.cluster["workers"]:
        worker.stop()
    try:
        doomed = spawn(processes.celery_worker, "doomed", env=DEDICATED, queue=QUEUE)
        sock = live.socket()
        answer = live.observe("/api/slow/", sock)
        oid = answer["observer"]
        # This process enqueues on commit: to the dedicated queue, with its limit.
        settings.REACTIVE_CELERY = {
            **settings.REACTIVE_CELERY,
            "QUEUE": QUEUE,
            "EVALUATION_TIME_LIMIT": 2.0,
        }

        Item.objects.create(name="lost with its worker")
        live.wait_for(lambda: live.redis.exists(f"rc:lock:{oid}"), timeout=20)
        doomed.kill()  # SIGKILL to the process group: parent and pool children
        killed = time.monotonic()
        assert live.redis.exists(f"rc:lock:{oid}", f"rc:starts:{oid}") == 2
        assert int(live.redis.hget(f"rc:obs:{oid}", "version")) == answer["version"]

        fresh = spawn(processes.celery_worker, "fresh", env=DEDICATED, queue=QUEUE)
        # Nothing but a sweep would send the lost task again: past the lock's
        # lifetime, with a worker waiting, no change arrives.
        live.wait_for(lambda: not live.redis.exists(f"rc:lock:{oid}"), timeout=15)
        with pytest.raises(TimeoutError):
            sock.recv(timeout=2)

        spawn(processes.celery_beat, "recovery", env=DEDICATED)
        frame = sock.recv(timeout=20)
        recovered = time.monotonic() - killed
        assert (frame["msg"], frame["item"]["name"]) == ("added", "lost with its worker")
        assert frame["version"] == answer["version"] + 1
        assert recovered < 30, recovered  # the broker would have waited 300 s
        live.wait_for(lambda: f"Requeued observer {oid}" in fresh.output(), timeout=5)
        # The push can overtake the worker's last step, which clears the crash counter.
        live.wait_for(lambda: not live.redis.exists(f"rc:starts:{oid}"), timeout=5)
    finally:
        live.cluster["workers"][:] = [processes.celery_worker(f"w{i}r") for i in range(2)]


def test_a_commit_while_redis_is_unreachable_is_retried_until_it_is_back(live, caplog):
    sock = live.socket()
    answer = live.observe("/api/items/", sock)
    unreachable = {**live_settings(), "REDIS_URL": DEAD}

    with caplog.at_level(logging.ERROR, logger="reactive_celery"):
        with override_settings(REACTIVE_CELERY=unreachable):
            Item.objects.create(name="committed while redis was away")
            signals.flush(10)  # its send runs with these settings
            # The timer's first retry (after 1 s) fails too, against the same closed port.
            wait_until(lambda: len(failures(caplog)) >= 2, timeout=10)
        frame = sock.recv(timeout=15)

    assert (frame["msg"], frame["item"]["name"]) == ("added", "committed while redis was away")
    assert frame["version"] == answer["version"] + 1
    first, second = failures(caplog)[:2]
    assert first.getMessage().startswith(
        "reactive_celery could not queue evaluations for tables ['testapp_item'] (ConnectionError"
    )
    assert first.getMessage().endswith("; retrying in 1 s")
    assert second.getMessage().endswith("; retrying in 2 s")
    assert not any(record.exc_info for record in caplog.records)
    assert signals._retry.timer is None and not signals._retry.tables


def test_a_failed_commit_goes_with_the_next_commit(live, monkeypatch):
    monkeypatch.setattr(signals, "RETRY_DELAYS", (600.0,))  # no timer would help in time
    sock = live.socket()
    live.observe("/api/items/", sock)

    with override_settings(REACTIVE_CELERY={**live_settings(), "REDIS_URL": DEAD}):
        Item.objects.create(name="committed while redis was away")
        signals.flush(10)  # its send runs with these settings
    assert signals._retry.tables == {"testapp_item"}
    with pytest.raises(TimeoutError):
        sock.recv(timeout=1)

    notify("a_table_nobody_reads")  # commits at once, outside a transaction
    frame = sock.recv(timeout=10)
    assert (frame["msg"], frame["item"]["name"]) == ("added", "committed while redis was away")
    assert signals._retry.timer is None and not signals._retry.tables


def test_observers_queued_while_the_broker_is_unreachable_are_sent_when_it_is_back(live, caplog):
    sock = live.socket()
    # Paginated, so table-level: queued at commit (a precise one goes to its table's dispatch).
    oid = live.observe("/api/paged/?page=1", sock)["observer"]

    with caplog.at_level(logging.ERROR, logger="reactive_celery"), broker_unreachable():
        Item.objects.create(name="committed while the broker was away")
        signals.flush(10)  # its send runs with these settings
        # Redis answered: the observer is marked queued, its task owed.
        assert live.redis.exists(f"rc:queued:{oid}")
        assert signals._retry.observers == [oid]
        assert not signals._retry.tables
    message = failures(caplog)[0].getMessage()
    assert f"for observers ['{oid}'] (OperationalError" in message

    frame = sock.recv(timeout=15)  # the timer's retry sends it
    assert (frame["msg"], frame["item"]["name"]) == (
        "added",
        "committed while the broker was away",
    )
    assert not signals._retry.observers


def live_settings() -> dict:
    from django.conf import settings

    return dict(settings.REACTIVE_CELERY)


def failures(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "could not queue evaluations" in r.getMessage()]


def wait_until(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.02)


@contextmanager
def broker_unreachable():
    """Point this process's Celery producer at a closed port (the real broker stays up)."""
    from tests.project import celery_app

    def reset_pools():
        celery_app.amqp._producer_pool = None
        celery_app._pool = None

    celery_app.conf.broker_write_url = "redis://127.0.0.1:1/1"
    reset_pools()
    try:
        yield
    finally:
        celery_app.conf.broker_write_url = None
        reset_pools()
