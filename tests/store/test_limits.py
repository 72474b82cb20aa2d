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


def _current_observer(store_redis, oid="o1"):
    """An observer with a stored result and nothing owed, followed by user 7's socket."""
    store_redis.hset(keys.observer(oid), mapping={"version": "3", "items": "[]"})
    subscribers.register("sock-a-123", "chan-a", "7")
    subscribers.subscribe(oid, "sock-a-123")


def test_a_subscribe_to_a_current_observer_its_owner_follows_is_made_with_admission(
    store_redis,
):
    _current_observer(store_redis)
    subscribers.register("sock-b-123", "chan-b", "7")
    admitted = limits.admit("sock-b-123", "7", "o1", address="10.0.0.1")
    if keys.clustered():
        # The observer's keys and the subscriber's hash apart: admission alone, as before.
        assert admitted == limits.Admission(subscribers.get("sock-b-123"))
        return
    assert admitted == limits.Admission(
        subscribers.get("sock-b-123"), "", owner_follows=True, subscribed=True
    )
    assert subscribers.follows("sock-b-123", "o1")
    assert subscribers.followers("o1") == {"sock-a-123", "sock-b-123"}
    # The socket's set expires with its record, the observer's with the observer.
    assert store_redis.ttl(keys.subscriber_observers("sock-b-123")) > 0
    assert store_redis.ttl(keys.observer_subscribers("o1")) > 0


@pytest.mark.parametrize("owed", ["queued", "dirty", "lock", "gone"])
def test_an_observer_that_is_owed_an_evaluation_or_gone_is_left_to_the_locked_path(
    store_redis, owed
):
    _current_observer(store_redis)
    if owed == "gone":
        store_redis.delete(keys.observer("o1"))
    else:
        store_redis.set(getattr(keys, owed)("o1"), "1")
    subscribers.register("sock-b-123", "chan-b", "7")
    admitted = limits.admit("sock-b-123", "7", "o1", address="10.0.0.1")
    owner_follows = not keys.clustered()  # a cluster's admission does not look
    assert (admitted.refused, admitted.owner_follows, admitted.subscribed) == (
        "",
        owner_follows,
        False,
    )
    assert not subscribers.follows("sock-b-123", "o1")


def test_a_table_dispatch_pending_for_a_precise_observer_leaves_it_to_the_locked_path(
    store_redis,
):
    oid = "precise-o1"  # its classification is kept for the process
    _current_observer(store_redis, oid)
    store_redis.hset(keys.observer(oid), "invalidation", '{"table": "testapp_item", "reason": ""}')
    store_redis.set(keys.probe_pending("testapp_item"), "token")
    subscribers.register("sock-b-123", "chan-b", "7")
    assert not limits.admit("sock-b-123", "7", oid, address="10.0.0.1").subscribed
    store_redis.delete(keys.probe_pending("testapp_item"))
    subscribed = limits.admit("sock-b-123", "7", oid, address="10.0.0.1").subscribed
    assert subscribed is not keys.clustered()


def test_an_owner_new_to_the_observer_is_admitted_but_not_subscribed(store_redis, settings):
    settings.REACTIVE_CELERY = {**settings.REACTIVE_CELERY, "SUBSCRIBE_RATE": 1}
    _current_observer(store_redis)
    subscribers.register("anon-1234", "chan", "", "10.0.0.1")
    admitted = limits.admit("anon-1234", "", "o1", address="10.0.0.1")
    # Its observer cap is for allow_observer to decide.
    assert (admitted.refused, admitted.owner_follows, admitted.subscribed) == ("", False, False)
    assert not subscribers.follows("anon-1234", "o1")
    # The refusals are admit's: the one request this second is spent.
    assert limits.admit("anon-1234", "", "o1", address="10.0.0.1").refused == "rate"
    assert limits.admit("nobody123", "", "o1", address="10.0.0.1").refused == "unknown"
