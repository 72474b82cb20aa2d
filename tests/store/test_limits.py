"""The limits every subscribe meets, against the real Redis."""

import time

import pytest

from reactive_celery.exceptions import TooManySockets
from reactive_celery.store import keys, limits, subscribers


def _refused(sid, user="7", oid="o1"):
    return limits.admit(sid, user, oid).refused


def test_the_subscribe_rate_counts_one_second_at_a_time(store_redis, settings):
    settings.REACTIVE_CELERY = {**settings.REACTIVE_CELERY, "SUBSCRIBE_RATE": 3}
    subscribers.register("sub12345", "chan-a", "7")
    subscribers.register("other123", "chan-b", "7")
    assert [_refused("sub12345") for _ in range(4)] == ["", "", "", "rate"]
    assert _refused("other123") == ""  # per subscriber
    time.sleep(1.1)
    assert _refused("sub12345") == ""
    assert 0 < store_redis.pttl(keys.subscribe_rate("sub12345")) <= 1000


def test_admission_names_the_live_subscriber(store_redis):
    subscribers.register("sub12345", "chan-a", "7", "10.0.0.1")
    admitted = limits.admit("sub12345", "7", "o1")
    assert admitted == limits.Admission(subscribers.get("sub12345"))
    assert admitted.subscriber.channel == "chan-a"


def test_an_unknown_or_foreign_subscriber_is_refused_without_spending_its_rate(
    store_redis, settings
):
    settings.REACTIVE_CELERY = {**settings.REACTIVE_CELERY, "SUBSCRIBE_RATE": 1}
    subscribers.register("sub12345", "chan-a", "7")
    assert _refused("nobody123") == "unknown"
    assert [_refused("sub12345", user="8") for _ in range(3)] == ["unknown"] * 3
    assert _refused("sub12345", user="") == "unknown"  # anonymous is not user 7 either
    assert (
        store_redis.exists(keys.subscribe_rate("sub12345"), keys.subscribe_rate("nobody123")) == 0
    )
    assert _refused("sub12345") == ""  # its owner's budget is whole


def test_a_socket_at_its_most_subscriptions_may_only_renew_one_it_holds(store_redis, settings):
    settings.REACTIVE_CELERY = {**settings.REACTIVE_CELERY, "MAX_SUBSCRIPTIONS": 2}
    subscribers.register("sub12345", "chan-a", "7")
    subscribers.subscribe("o1", "sub12345")
    assert _refused("sub12345", oid="o2") == ""
    subscribers.subscribe("o2", "sub12345")
    assert _refused("sub12345", oid="o3") == "subscriptions"
    assert _refused("sub12345", oid="o1") == ""


def test_observers_per_user_count_what_their_live_sockets_follow(store_redis, settings):
    settings.REACTIVE_CELERY = {**settings.REACTIVE_CELERY, "MAX_OBSERVERS_PER_USER": 2}
    subscribers.register("sock-a-123", "chan-a", "7")
    subscribers.register("sock-b-123", "chan-b", "7")
    subscribers.subscribe("o1", "sock-a-123")
    subscribers.subscribe("o2", "sock-b-123")
    assert not limits.allow_observer("7", "", "o3")
    assert limits.allow_observer("7", "", "o1")  # one it follows already
    assert limits.allow_observer("8", "", "o3")  # another user
    subscribers.remove("sock-b-123", "chan-b")  # a socket closes: its observers no longer count
    assert limits.allow_observer("7", "", "o3")


def test_anonymous_observers_count_per_address(store_redis, settings):
    settings.REACTIVE_CELERY = {**settings.REACTIVE_CELERY, "MAX_OBSERVERS_PER_USER": 1}
    subscribers.register("anon-1234", "chan", "", "10.0.0.1")
    subscribers.subscribe("o1", "anon-1234")
    assert not limits.allow_observer("", "10.0.0.1", "o2")
    assert limits.allow_observer("", "10.0.0.2", "o2")


def test_sockets_per_user_and_address_are_capped_and_freed_on_close(store_redis, settings):
    settings.REACTIVE_CELERY = {**settings.REACTIVE_CELERY, "MAX_SOCKETS_PER_USER": 2}
    subscribers.register("user-sock-1", "c1", "7", "10.0.0.1")
    subscribers.register("user-sock-2", "c2", "7", "10.0.0.1")
    with pytest.raises(TooManySockets):
        subscribers.register("user-sock-3", "c3", "7", "10.0.0.1")
    assert subscribers.get("user-sock-3") is None
    subscribers.register("user-sock-1", "c1", "7", "10.0.0.1")  # a re-register is no new socket
    subscribers.remove("user-sock-2", "c2")
    subscribers.register("user-sock-3", "c3", "7", "10.0.0.1")
    assert store_redis.zcard(keys.sockets_of_user("7")) == 2
