"""The sweep against the real Redis: what it removes, and what it must leave alone."""

import time

import pytest

from reactive_celery.store import locks, observers, schedule, subscribers
from reactive_celery.store.sweep import sweep


@pytest.fixture
def short_lived(settings):
    """Subscribers that live one second without a heartbeat."""
    settings.REACTIVE_CELERY = {
        **settings.REACTIVE_CELERY,
        "SUBSCRIBER_TTL": 1,
        "HEARTBEAT_INTERVAL": 0.5,
    }


def observer(oid: str, tables=("t",), *sids: str, diff=None) -> None:
    observers.save(
        oid, spec="{}", items=[], meta={}, version=1, tables=tables, creator="", diff=diff
    )
    for sid in sids:
        subscribers.subscribe(oid, sid)


def test_expired_subscribers_and_their_abandoned_observers_go(store_redis, short_lived):
    baseline = set(store_redis.keys("*"))
    subscribers.register("alive1234", "chan-a", "")
    subscribers.register("dead12345", "chan-d", "")
    observer("shared", ("t",), "alive1234", "dead12345")
    added = {"msg": "added", "order": 0, "item": {"id": 1}}
    entry = {"version": 2, "primary_key": "id", "changes": [added]}
    observer("deadonly", ("t", "u"), "dead12345", diff=entry)
    schedule.schedule("deadonly", 1)

    time.sleep(0.6)
    subscribers.heartbeat("alive1234", "chan-a")  # the live socket renews; the dead one cannot
    time.sleep(0.6)
    assert not store_redis.exists("rc:sub:dead12345")

    report = sweep()
    assert report["observers"] == 1
    assert report["subscriptions"] >= 1
    assert subscribers.followers("shared") == {"alive1234"}
    assert observers.load("deadonly") is None
    assert store_redis.smembers("rc:dep:t") == {"shared"}
    assert not store_redis.exists("rc:dep:u", "rc:poll", "rc:obs:deadonly:log")

    subscribers.remove("alive1234", "chan-a")
    sweep()
    assert set(store_redis.keys("*")) == baseline


def test_a_live_observer_is_left_whole(store_redis):
    subscribers.register("alive1234", "chan-a", "")
    observer("o1", ("t",), "alive1234")
    schedule.schedule("o1", 5)
    before = {name: store_redis.type(name) for name in store_redis.keys("*")}
    assert sweep() == dict.fromkeys(
        ("subscribers", "subscriptions", "observers", "dependencies", "polls", "rescheduled"), 0
    )
    assert {name: store_redis.type(name) for name in store_redis.keys("*")} == before
    assert store_redis.zscore("rc:poll", "o1") is not None


def test_an_observer_being_subscribed_or_evaluated_is_not_dropped(store_redis):
    observer("o1", ("t",))  # saved, its first subscriber not yet recorded
    with locks.observer_lock("o1"):
        sweep()
        assert observers.load("o1") is not None
    sweep()
    assert observers.load("o1") is None
    assert not store_redis.exists("rc:lock:o1", "rc:dep:t")


def test_stale_dependency_and_poll_entries_are_pruned(store_redis):
    subscribers.register("alive1234", "chan-a", "")
    observer("o1", ("t",), "alive1234")
    store_redis.sadd("rc:dep:t", "ghost")
    store_redis.zadd("rc:poll", {"ghost": 0})
    report = sweep()
    assert (report["dependencies"], report["polls"]) == (1, 1)
    assert store_redis.smembers("rc:dep:t") == {"o1"}
    assert not store_redis.exists("rc:poll")


def test_a_lost_poll_schedule_is_restored(store_redis):
    subscribers.register("alive1234", "chan-a", "")
    observer("o1", ("t",), "alive1234")
    schedule.schedule("o1", 5)
    store_redis.delete("rc:poll")  # expired while beat was down
    assert sweep()["rescheduled"] == 1
    assert store_redis.zscore("rc:poll", "o1") is not None


def test_a_reconnected_subscriber_is_not_forgotten(store_redis, short_lived):
    subscribers.register("back1234", "chan-1", "")
    observer("o1", ("t",), "back1234")
    time.sleep(1.2)
    subscribers.register("back1234", "chan-2", "")  # the client came back in time
    subscribers.subscribe("o1", "back1234")
    sweep()
    assert subscribers.followers("o1") == {"back1234"}
    assert subscribers.follows("back1234", "o1")
