"""Polling observers: the option, the Redis schedule and beat's entries."""

import threading

import pytest
from celery import Celery

from reactive_celery import beat, coordination, polling, reactive, store
from tests.project.celery_app import app as celery_app
from tests.testapp.ops_views import TickViewSet


def polling_observer(oid: str, interval: float = 1, subscriber: str = "sub12345") -> None:
    store.save_observer(oid, spec="{}", items=[], meta={}, version=1, tables=[], creator="")
    store.subscribe(oid, subscriber)
    polling.schedule(oid, interval)


def make_due(r, oid: str) -> None:
    r.zadd("rc:poll", {oid: 0})


def test_poll_interval_is_recorded():
    assert TickViewSet.list.reactive_options.poll_interval == 1


def test_poll_interval_with_dependencies_is_a_type_error_naming_both():
    with pytest.raises(TypeError, match="dependencies= or poll_interval=, not both"):
        reactive(dependencies=["testapp.Item"], poll_interval=5)


@pytest.mark.parametrize(
    ("value", "error"), [("5", TypeError), (True, TypeError), (0.5, ValueError), (0, ValueError)]
)
def test_bad_poll_interval_is_refused_at_decoration(value, error):
    with pytest.raises(error, match="poll_interval"):
        reactive(poll_interval=value)


def test_a_new_observer_is_due_one_interval_later(store_redis):
    polling_observer("o1", interval=30)
    due = store_redis.zscore("rc:poll", "o1")
    now = float(store_redis.time()[0])
    assert now + 29 <= due <= now + 31
    assert store_redis.hget("rc:obs:o1", "poll") == "30.0"
    assert store_redis.ttl("rc:poll") > 0
    assert polling.claim_due() == []


def test_another_subscriber_keeps_the_due_time(store_redis):
    polling_observer("o1", interval=30)
    make_due(store_redis, "o1")
    polling_observer("o1", interval=30, subscriber="sub67890")
    assert store_redis.zscore("rc:poll", "o1") == 0


def test_a_due_observer_is_claimed_once_and_moved_on(store_redis):
    polling_observer("o1", interval=5)
    make_due(store_redis, "o1")
    assert polling.claim_due() == ["o1"]
    now = float(store_redis.time()[0])
    assert now + 4 <= store_redis.zscore("rc:poll", "o1") <= now + 6
    assert polling.claim_due() == []


def test_a_due_observer_still_queued_is_moved_on_but_not_enqueued_twice(store_redis):
    polling_observer("o1", interval=5)
    make_due(store_redis, "o1")
    assert polling.claim_due() == ["o1"]
    make_due(store_redis, "o1")
    assert polling.claim_due() == []  # its evaluate task has not started yet
    coordination.clear_queued("o1")
    make_due(store_redis, "o1")
    assert polling.claim_due() == ["o1"]


def test_observers_without_subscribers_or_state_leave_the_schedule(store_redis):
    polling_observer("o1")
    store_redis.delete("rc:obs:o1:subs")
    store_redis.zadd("rc:poll", {"o1": 0, "ghost": 0})
    assert polling.claim_due() == []
    assert store_redis.zcard("rc:poll") == 0


def test_dropping_an_observer_unschedules_it_at_once(store_redis):
    polling_observer("o1")
    store.unsubscribe("o1", "sub12345")
    assert store_redis.zscore("rc:poll", "o1") is None


def test_concurrent_claims_take_each_due_observer_once(store_redis):
    oids = [f"o{i}" for i in range(300)]
    for oid in oids:
        polling_observer(oid, interval=60)
        make_due(store_redis, oid)
    claims: list[list[str]] = []

    def claim():
        claims.append(polling.claim_due())

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    claimed = [oid for batch in claims for oid in batch]
    assert sorted(claimed) == sorted(oids)


def test_the_project_app_gets_both_beat_entries():
    celery_app.finalize()
    schedule = celery_app.conf.beat_schedule
    assert schedule[beat.POLL]["task"] == "reactive_celery.poll"
    assert schedule[beat.POLL]["schedule"] == 1.0
    assert schedule[beat.SWEEP]["task"] == "reactive_celery.sweep"
    assert schedule[beat.SWEEP]["schedule"] == 30.0
    assert {"reactive_celery.poll", "reactive_celery.sweep"} <= set(celery_app.tasks)


def test_an_entry_the_project_defines_is_kept_and_queue_follows_settings(settings):
    settings.REACTIVE_CELERY = {**settings.REACTIVE_CELERY, "QUEUE": "live"}
    app = Celery("other", set_as_current=False)
    own = {"task": "reactive_celery.poll", "schedule": 2.0, "options": {"queue": "mine"}}
    app.conf.beat_schedule = {beat.POLL: own}
    app.finalize()
    assert app.conf.beat_schedule[beat.POLL] == own
    assert app.conf.beat_schedule[beat.SWEEP]["options"]["queue"] == "live"


def test_each_claim_renews_the_schedule_lifetime(store_redis):
    polling_observer("o1", interval=3600)  # not due for an hour
    store_redis.expire("rc:poll", 5)
    assert polling.claim_due() == []
    assert store_redis.ttl("rc:poll") > 5
