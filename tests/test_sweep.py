"""The sweep against the real Redis: what it removes, and what it must leave alone."""

import time

import pytest

from reactive_celery import coordination, polling, store
from reactive_celery.sweep import sweep


@pytest.fixture
def short_lived(settings):
    """Subscribers that live one second without a heartbeat."""
    settings.REACTIVE_CELERY = {
        **settings.REACTIVE_CELERY,
        "SUBSCRIBER_TTL": 1,
        "HEARTBEAT_INTERVAL": 0.5,
    }


def observer(oid: str, tables=("t",), *subscribers: str) -> None:
    store.save_observer(oid, spec="{}", items=[], meta={}, version=1, tables=tables, creator="")
    for sid in subscribers:
        store.subscribe(oid, sid)


def test_expired_subscribers_and_their_abandoned_observers_go(store_redis, short_lived):
    baseline = set(store_redis.keys("*"))
    store.register_subscriber("alive1234", "chan-a", "")
    store.register_subscriber("dead12345", "chan-d", "")
    observer("shared", ("t",), "alive1234", "dead12345")
    observer("deadonly", ("t", "u"), "dead12345")
    polling.schedule("deadonly", 1)
    store.record_diff("deadonly", 2, "id", [{"msg": "added", "order": 0, "item": {"id": 1}}])

    time.sleep(0.6)
    store.heartbeat("alive1234", "chan-a")  # the live socket renews; the dead one cannot
    time.sleep(0.6)
    assert not store_redis.exists("rc:sub:dead12345")

    report = sweep()
    assert report["observers"] == 1
    assert report["subscriptions"] >= 1
    assert store.subscribers("shared") == {"alive1234"}
    assert store.load_observer("deadonly") is None
    assert store_redis.smembers("rc:dep:t") == {"shared"}
    assert not store_redis.exists("rc:dep:u", "rc:poll", "rc:obs:deadonly:log")

    store.remove_subscriber("alive1234", "chan-a")
    sweep()
    assert set(store_redis.keys("*")) == baseline


def test_a_live_observer_is_left_whole(store_redis):
    store.register_subscriber("alive1234", "chan-a", "")
    observer("o1", ("t",), "alive1234")
    polling.schedule("o1", 5)
    before = {name: store_redis.type(name) for name in store_redis.keys("*")}
    assert sweep() == dict.fromkeys(
        ("subscribers", "subscriptions", "observers", "dependencies", "polls", "rescheduled"), 0
    )
    assert {name: store_redis.type(name) for name in store_redis.keys("*")} == before
    assert store_redis.zscore("rc:poll", "o1") is not None


def test_an_observer_being_subscribed_or_evaluated_is_not_dropped(store_redis):
    observer("o1", ("t",))  # saved, its first subscriber not yet recorded
    with coordination.observer_lock("o1"):
        sweep()
        assert store.load_observer("o1") is not None
    sweep()
    assert store.load_observer("o1") is None
    assert not store_redis.exists("rc:lock:o1", "rc:dep:t")


def test_stale_dependency_and_poll_entries_are_pruned(store_redis):
    store.register_subscriber("alive1234", "chan-a", "")
    observer("o1", ("t",), "alive1234")
    store_redis.sadd("rc:dep:t", "ghost")
    store_redis.zadd("rc:poll", {"ghost": 0})
    report = sweep()
    assert (report["dependencies"], report["polls"]) == (1, 1)
    assert store_redis.smembers("rc:dep:t") == {"o1"}
    assert not store_redis.exists("rc:poll")


def test_a_lost_poll_schedule_is_restored(store_redis):
    store.register_subscriber("alive1234", "chan-a", "")
    observer("o1", ("t",), "alive1234")
    polling.schedule("o1", 5)
    store_redis.delete("rc:poll")  # expired while beat was down
    assert sweep()["rescheduled"] == 1
    assert store_redis.zscore("rc:poll", "o1") is not None


def test_a_reconnected_subscriber_is_not_forgotten(store_redis, short_lived):
    store.register_subscriber("back1234", "chan-1", "")
    observer("o1", ("t",), "back1234")
    time.sleep(1.2)
    store.register_subscriber("back1234", "chan-2", "")  # the client came back in time
    store.subscribe("o1", "back1234")
    sweep()
    assert store.subscribers("o1") == {"back1234"}
    assert store.is_subscribed("o1", "back1234")
