"""Limits: an evaluation over the hard time limit stops its observer and says why."""

import logging

import pytest

from reactive_celery import observer
from reactive_celery.store import stats
from tests import processes
from tests.testapp.models import Item

pytestmark = [pytest.mark.e2e]

QUEUE = "reactive-limits"
#: A worker of its own, with a 1 s limit, on a queue only this test's writes go to.
LIMITED = {"REACTIVE_TEST_QUEUE": QUEUE, "REACTIVE_TEST_TIME_LIMIT": "1"}


def test_over_the_limit_subscribers_get_an_error_and_others_keep_working(live, spawn, settings):
    worker = spawn(processes.celery_worker, "limits", env=LIMITED, queue=QUEUE)
    stalled, other = live.socket(), live.socket()
    stalled_oid = live.observe("/api/stalling/", stalled)["observer"]
    live.observe("/api/items/", other)
    # This process enqueues on commit: the same queue and limit as the dedicated worker.
    settings.REACTIVE_CELERY = {
        **settings.REACTIVE_CELERY,
        "QUEUE": QUEUE,
        "EVALUATION_TIME_LIMIT": 1.0,
    }

    Item.objects.create(name="stall")  # from now on the stalling view sleeps 10 s
    error = stalled.recv(timeout=15)
    assert (error["msg"], error["observer"], error["code"]) == ("error", stalled_oid, "timeout")
    assert "longer than 1.0 s" in error["error"]
    frame = other.recv()
    assert (frame["msg"], frame["item"]["name"]) == ("added", "stall")

    Item.objects.create(name="after")
    frame = other.recv()
    assert (frame["msg"], frame["item"]["name"]) == ("added", "after")
    with pytest.raises(TimeoutError):
        stalled.recv(timeout=1)
    assert not live.redis.exists(f"rc:obs:{stalled_oid}")
    assert not live.redis.sismember(f"rc:sub:{stalled.id}:obs", stalled_oid)

    recorded = stats.last_errors()[0]
    assert (recorded["observer"], recorded["code"]) == (stalled_oid, "timeout")
    assert recorded["view"] == "tests.testapp.ops_views.StallingItemViewSet"
    assert (
        f"Observer {stalled_oid} (tests.testapp.ops_views.StallingItemViewSet) stopped "
        "(timeout)" in worker.output()
    )


def test_evaluations_log_structured_records_and_warn_when_slow_or_large(live, settings, caplog):
    Item.objects.create(name="a")
    Item.objects.create(name="b")
    oid = live.observe("/api/items/", live.socket())["observer"]
    settings.REACTIVE_CELERY = {
        **settings.REACTIVE_CELERY,
        "SLOW_EVALUATION": 1e-9,
        "LARGE_RESULT": 1,
    }
    caplog.set_level(logging.INFO, logger="reactive_celery")

    observer.evaluate(oid)  # in this process, against the real store and layer

    records = {r.getMessage().split(" ")[0]: r for r in caplog.records}
    assert set(records) >= {"Evaluated", "Slow", "Large"}
    for word in ("Evaluated", "Slow", "Large"):
        record = records[word]
        assert record.observer == oid
        assert record.name == "reactive_celery.tasks"  # the logger docs/operations.md names
        assert record.view == "tests.testapp.views.ItemViewSet"
        assert record.elapsed > 0
        assert record.items == 2
    assert records["Slow"].levelno == records["Large"].levelno == logging.WARNING
    assert records["Evaluated"].levelno == logging.INFO
    assert stats.summary()["evaluations"] == 1
