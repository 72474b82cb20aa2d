"""Subscriber records against the real Redis: registration, reconnects, heartbeats."""

import pytest

from reactive_celery.exceptions import ForeignSubscriber
from reactive_celery.store import keys, observers, subscribers


def test_subscriber_id_of_another_user_is_refused(store_redis):
    subscribers.register("sub12345", "chan-a", "1")
    with pytest.raises(ForeignSubscriber):
        subscribers.register("sub12345", "chan-b", "2")
    assert subscribers.get("sub12345").channel == "chan-a"


def test_reconnect_keeps_subscriptions_and_old_socket_close_is_ignored(store_redis):
    subscribers.register("sub12345", "chan-a", "1")
    observers.save("o1", spec="{}", items=[], meta={}, version=1, tables=["t"], creator="1")
    subscribers.subscribe("o1", "sub12345")
    assert subscribers.register("sub12345", "chan-b", "1") == ["o1"]
    assert subscribers.remove("sub12345", "chan-a") == []
    assert subscribers.follows("sub12345", "o1")
    assert subscribers.remove("sub12345", "chan-b") == ["o1"]
    assert sorted(store_redis.scan_iter("rc:*")) == []


def test_heartbeat_renews_its_own_socket_only(store_redis):
    subscribers.register("sub12345", "chan-a", "")
    observers.save("o1", spec="{}", items=[], meta={}, version=1, tables=["t"], creator="")
    subscribers.subscribe("o1", "sub12345")
    store_redis.expire(keys.dependents("t"), 2)
    assert subscribers.heartbeat("sub12345", "chan-a") == ["o1"]
    assert store_redis.ttl(keys.dependents("t")) > 2
    assert subscribers.heartbeat("sub12345", "chan-other") is None
    assert subscribers.heartbeat("gone1234", "chan-a") is None


def test_counts_and_membership(store_redis):
    assert not subscribers.subscribe("o1", "sub12345")  # no live socket holds the id
    subscribers.register("sub12345", "chan", "")
    for oid in ("o1", "o2"):
        assert subscribers.subscribe(oid, "sub12345")
    assert subscribers.count("sub12345") == 2
    assert subscribers.follows("sub12345", "o2") and not subscribers.follows("sub12345", "o3")
    assert subscribers.followers("o1") == {"sub12345"}
    assert subscribers.unsubscribe("o1", "sub12345") is True  # its last subscriber left
    assert subscribers.count("sub12345") == 1


@pytest.mark.parametrize("owed", [None, "queued", "dirty", "lock", "gone"])
def test_a_subscription_to_a_current_result_is_made_and_to_another_refused(store_redis, owed):
    subscribers.register("sub12345", "chan-a", "")
    observers.save("o1", spec="{}", items=[], meta={}, version=1, tables=["t"], creator="")
    if owed == "gone":
        store_redis.delete(keys.observer("o1"))
    elif owed is not None:
        store_redis.set(getattr(keys, owed)("o1"), "1")
    subscribed = subscribers.subscribe_if_current("o1", "sub12345")
    assert subscribed is (True if owed is None else None)
    assert subscribers.follows("sub12345", "o1") is (owed is None)
    if owed is None:
        assert store_redis.ttl(keys.observer_subscribers("o1")) > 0


def test_a_subscription_under_the_callers_own_lock_ignores_the_lock(store_redis):
    subscribers.register("sub12345", "chan-a", "")
    observers.save("o1", spec="{}", items=[], meta={}, version=1, tables=["t"], creator="")
    store_redis.set(keys.lock("o1"), "held")
    assert subscribers.subscribe_if_current("o1", "sub12345") is None
    assert subscribers.subscribe_if_current("o1", "sub12345", holding=True) is True


def test_a_subscription_of_a_gone_subscriber_to_a_current_result_is_false(store_redis):
    observers.save("o1", spec="{}", items=[], meta={}, version=1, tables=["t"], creator="")
    assert subscribers.subscribe_if_current("o1", "nobody123") is False
    assert subscribers.followers("o1") == set()
