"""Store operations against the real Redis: lock, dirty flag, queueing, lifetimes."""

import pytest

from reactive_celery import coordination, store
from reactive_celery.exceptions import ForeignSubscriber

TTL = 10_000


def test_contended_lock_marks_dirty_and_the_holder_runs_again(store_redis):
    assert coordination.acquire_or_mark_dirty("o1", "holder", TTL) == -2
    assert coordination.acquire_or_mark_dirty("o1", "late", TTL) > 0
    assert coordination.release_or_continue("o1", "holder", TTL) == 1  # rerun, lock kept
    assert coordination.acquire_or_mark_dirty("o1", "later", TTL) > 0
    assert coordination.release_or_continue("o1", "holder", TTL) == 1
    assert coordination.release_or_continue("o1", "holder", TTL) == 0
    assert not store_redis.exists("rc:lock:o1")


def test_release_with_a_foreign_token_changes_nothing(store_redis):
    coordination.acquire_or_mark_dirty("o1", "holder", TTL)
    assert coordination.release_or_continue("o1", "thief", TTL) == -1
    assert store_redis.get("rc:lock:o1") == "holder"


def test_queue_dependents_queues_each_observer_once(store_redis):
    store.save_observer(
        "o1", spec="{}", items=[], meta={}, version=1, tables=["t1", "t2"], creator=""
    )
    store.save_observer("o2", spec="{}", items=[], meta={}, version=1, tables=["t2"], creator="")
    observers, queued = coordination.queue_dependents({"t1", "t2"})
    assert sorted(observers) == ["o1", "o2"] and sorted(queued) == ["o1", "o2"]
    assert coordination.queue_dependents({"t2"})[1] == []
    coordination.clear_queued("o1")
    assert coordination.queue_dependents({"t1", "t3"}) == (["o1"], ["o1"])
    assert coordination.queue_dependents({"nothing"}) == ([], [])


def test_every_key_has_a_lifetime(store_redis):
    store.register_subscriber("sub12345", "chan", "")
    store.save_observer("o1", spec="{}", items=[], meta={}, version=1, tables=["t"], creator="")
    store.subscribe("o1", "sub12345")
    coordination.queue_dependents({"t"})
    coordination.acquire_or_mark_dirty("o1", "holder", TTL)
    coordination.acquire_or_mark_dirty("o1", "other", TTL)
    for name in store_redis.keys("rc:*"):
        assert store_redis.ttl(name) > 0, name


def test_subscriber_id_of_another_user_is_refused(store_redis):
    store.register_subscriber("sub12345", "chan-a", "1")
    with pytest.raises(ForeignSubscriber):
        store.register_subscriber("sub12345", "chan-b", "2")
    assert store.get_subscriber("sub12345").channel == "chan-a"


def test_reconnect_keeps_subscriptions_and_old_socket_close_is_ignored(store_redis):
    store.register_subscriber("sub12345", "chan-a", "1")
    store.save_observer("o1", spec="{}", items=[], meta={}, version=1, tables=["t"], creator="1")
    store.subscribe("o1", "sub12345")
    assert store.register_subscriber("sub12345", "chan-b", "1") == ["o1"]
    assert store.remove_subscriber("sub12345", "chan-a") == []
    assert store.is_subscribed("o1", "sub12345")
    assert store.remove_subscriber("sub12345", "chan-b") == ["o1"]
    assert store_redis.keys("rc:*") == []


def test_replay_returns_the_diffs_after_a_version_and_none_beyond_the_buffer(store_redis):
    from django.test import override_settings

    with override_settings(REACTIVE_CELERY={**_settings(), "REPLAY_BUFFER": 3}):
        for version in range(11, 16):
            store.record_diff("o1", version, "id", [{"msg": "added", "order": 0, "item": {}}])
        assert store_redis.llen("rc:obs:o1:log") == 3
        assert [e["version"] for e in store.replay("o1", 12, 15)] == [13, 14, 15]
        assert store.replay("o1", 15, 15) == []
        assert store.replay("o1", 11, 15) is None  # 12 fell out of the buffer
        assert store.replay("o1", 16, 15) is None  # a version from the future
        assert store.replay("o1", -1, 15) is None


def _settings():
    from django.conf import settings

    return dict(settings.REACTIVE_CELERY)


def test_a_watched_observer_is_queued_for_any_table_until_unwatched(store_redis):
    coordination.watch("new", 30)
    assert coordination.queue_dependents({"any_table"}) == (["new"], ["new"])
    coordination.clear_queued("new")
    coordination.unwatch("new")
    assert coordination.queue_dependents({"any_table"}) == ([], [])


def test_watch_entries_expire_by_themselves(store_redis):
    store_redis.zadd("rc:watch", {"stale": 1})  # a crashed subscribe's entry, long past
    assert coordination.queue_dependents({"any_table"}) == ([], [])
    assert store_redis.zcard("rc:watch") == 0


def test_an_evaluation_does_not_bring_back_a_dropped_observer(store_redis):
    fields = dict(spec="{}", items=[], meta={}, version=1, tables=["t"], creator="")
    assert store.save_observer("o1", **fields) is True
    store.drop_observer("o1")
    assert store.save_observer("o1", **fields, must_exist=True) is False
    assert store_redis.keys("rc:*") == []


def test_a_contended_retry_does_not_mark_the_observer_dirty(store_redis):
    assert coordination.acquire_or_mark_dirty("o1", "holder", TTL) == -2
    assert coordination.acquire_or_mark_dirty("o1", "retry", TTL, mark=False) > 0
    assert coordination.release_or_continue("o1", "holder", TTL) == 0  # no rerun
