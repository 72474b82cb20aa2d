"""The sweep against the real Redis: what it removes, and what it must leave alone."""

import time

import pytest

from reactive_celery.exceptions import ForeignSubscriber
from reactive_celery.store import keys, locks, observers, schedule, subscribers
from reactive_celery.store.sweep import requeue_crashed, sweep


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
    baseline = set(store_redis.scan_iter("*"))
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
    assert not store_redis.exists(keys.subscriber("dead12345"))

    report = sweep()
    assert report["observers"] == 1
    assert report["subscriptions"] >= 1
    assert subscribers.followers("shared") == {"alive1234"}
    assert observers.load("deadonly") is None
    assert store_redis.smembers(keys.dependents("t")) == {"shared"}
    assert not store_redis.exists(keys.dependents("u"), keys.poll(), keys.observer_log("deadonly"))

    subscribers.remove("alive1234", "chan-a")
    sweep()
    assert set(store_redis.scan_iter("*")) == baseline


def test_a_live_observer_is_left_whole(store_redis):
    subscribers.register("alive1234", "chan-a", "")
    observer("o1", ("t",), "alive1234")
    schedule.schedule("o1", 5)
    before = {name: store_redis.type(name) for name in store_redis.scan_iter("*")}
    assert sweep() == dict.fromkeys(
        ("subscribers", "subscriptions", "observers", "dependencies", "polls", "rescheduled"), 0
    )
    assert {name: store_redis.type(name) for name in store_redis.scan_iter("*")} == before
    assert store_redis.zscore(keys.poll(), "o1") is not None


def test_an_observer_being_subscribed_or_evaluated_is_not_dropped(store_redis):
    observer("o1", ("t",))  # saved, its first subscriber not yet recorded
    with locks.observer_lock("o1"):
        sweep()
        assert observers.load("o1") is not None
    sweep()
    assert observers.load("o1") is None
    assert not store_redis.exists(keys.lock("o1"), keys.dependents("t"))


def test_stale_dependency_and_poll_entries_are_pruned(store_redis):
    subscribers.register("alive1234", "chan-a", "")
    observer("o1", ("t",), "alive1234")
    store_redis.sadd(keys.dependents("t"), "ghost")
    store_redis.zadd(keys.poll(), {"ghost": 0})
    report = sweep()
    assert (report["dependencies"], report["polls"]) == (1, 1)
    assert store_redis.smembers(keys.dependents("t")) == {"o1"}
    assert not store_redis.exists(keys.poll())


def test_a_lost_poll_schedule_is_restored(store_redis):
    subscribers.register("alive1234", "chan-a", "")
    observer("o1", ("t",), "alive1234")
    schedule.schedule("o1", 5)
    store_redis.delete(keys.poll())  # expired while beat was down
    assert sweep()["rescheduled"] == 1
    assert store_redis.zscore(keys.poll(), "o1") is not None


def test_a_reconnected_subscriber_is_not_forgotten(store_redis, short_lived):
    subscribers.register("back1234", "chan-1", "")
    observer("o1", ("t",), "back1234")
    time.sleep(1.2)
    subscribers.register("back1234", "chan-2", "")  # the client came back in time
    subscribers.subscribe("o1", "back1234")
    sweep()
    assert subscribers.followers("o1") == {"back1234"}
    assert subscribers.follows("back1234", "o1")


def crashed_evaluation(store_redis, oid: str) -> None:
    """An evaluation that took the lock and died: the lock then expires in Redis."""
    assert locks.begin(oid, "dead-worker").acquired
    store_redis.pexpire(keys.lock(oid), 1)
    time.sleep(0.01)
    assert not store_redis.exists(keys.lock(oid))


def test_an_evaluation_that_never_finished_is_requeued_once_its_lock_expired(store_redis, caplog):
    subscribers.register("alive1234", "chan-a", "")
    observer("o1", ("t",), "alive1234")
    assert locks.begin("o1", "dead-worker").acquired
    assert requeue_crashed() == []  # the lock still holds: it may be running

    store_redis.pexpire(keys.lock("o1"), 1)
    time.sleep(0.01)
    assert requeue_crashed() == ["o1"]
    assert store_redis.get(keys.queued("o1")) == "1"
    assert 0 < store_redis.ttl(keys.queued("o1")) <= 30
    assert "Requeued observer o1" in caplog.text
    assert requeue_crashed() == []  # queued: the task sent for it is on its way

    # That task starts and finishes: nothing is left to requeue.
    begun = locks.begin("o1", "new-worker")
    assert begun.acquired and begun.starts == 2  # the crash cap still counts the crash
    assert locks.finish("o1", "new-worker") == 0
    locks.clear_starts("o1")
    assert requeue_crashed() == []


def test_a_change_marked_dirty_under_a_dead_lock_is_requeued(store_redis):
    subscribers.register("alive1234", "chan-a", "")
    observer("o1", ("t",), "alive1234")
    with locks.observer_lock("o1") as held:
        assert not locks.begin("o1", "a-task").acquired  # a change: dirty for the holder
        assert not store_redis.exists(keys.starts("o1"))  # only the dirty flag tells
        assert requeue_crashed() == []
        store_redis.pexpire(keys.lock("o1"), 1)  # the holder dies
        time.sleep(0.01)
        assert requeue_crashed() == ["o1"]
    assert held.changed_meanwhile is False  # the lock was no longer its own


def test_a_change_whose_task_was_lost_is_requeued_once_its_queued_flag_expired(store_redis, caplog):
    subscribers.register("alive1234", "chan-a", "")
    observer("o1", ("t",), "alive1234")
    assert locks.queue_dependents(["t"], {"t": ["7"]}) == (["o1"], ["o1"])
    assert requeue_crashed() == []  # queued: its task may still be in the broker

    # The task's message is lost (a worker killed as it took it): the flag expires,
    # what the change touched outlives it by more than a sweep interval.
    assert store_redis.ttl(keys.touched("o1")) > store_redis.ttl(keys.queued("o1")) + 30
    store_redis.delete(keys.queued("o1"))
    assert requeue_crashed() == ["o1"]
    assert "Requeued observer o1: a change reached no task" in caplog.text
    assert store_redis.get(keys.queued("o1")) == "1"
    assert requeue_crashed() == []

    begun = locks.begin("o1", "new-worker")
    assert begun.acquired and begun.touched == ("t:7",)  # the lost change is evaluated
    assert locks.finish("o1", "new-worker") == 0
    locks.clear_starts("o1")
    assert requeue_crashed() == []


def test_finished_evaluations_and_waiting_tasks_are_not_requeued(store_redis):
    subscribers.register("alive1234", "chan-a", "")
    observer("done", ("t",), "alive1234")
    observer("waiting", ("t",), "alive1234")
    assert locks.begin("done", "w").acquired
    locks.finish("done", "w")
    locks.clear_starts("done")
    crashed_evaluation(store_redis, "waiting")
    assert locks.queue(["waiting"]) == ["waiting"]  # a task for it waits in the broker
    assert requeue_crashed() == []


def test_leftovers_of_a_dropped_observer_are_removed_not_requeued(store_redis):
    crashed_evaluation(store_redis, "gone")
    store_redis.set(keys.dirty("gone"), "1", px=60000)
    store_redis.sadd(keys.touched("gone"), "t:1")
    assert requeue_crashed() == []
    assert not store_redis.exists(
        keys.starts("gone"), keys.dirty("gone"), keys.touched("gone"), keys.queued("gone")
    )


def test_many_crashed_observers_are_requeued_in_batches(store_redis, monkeypatch):
    import reactive_celery.store.sweep as store_sweep

    monkeypatch.setattr(store_sweep, "BATCH", 3)
    subscribers.register("alive1234", "chan-a", "")
    oids = [f"o{i}" for i in range(7)]
    for oid in oids:
        observer(oid, ("t",), "alive1234")
        crashed_evaluation(store_redis, oid)
    assert requeue_crashed() == sorted(oids)


# What a crash between the steps of an operation leaves on a cluster, and its repair.


def test_a_save_cut_after_joining_the_index_leaves_an_entry_the_sweep_prunes(store_redis):
    # The first step of a cluster save (the join) done, the observer never written.
    store_redis.eval(observers._INDEX_MOVE, 1, keys.dependents("t"), "ghost", 60, "1")
    subscribers.register("alive1234", "chan-a", "")
    observer("real", ("t",), "alive1234")
    assert sweep()["dependencies"] == 1
    assert store_redis.smembers(keys.dependents("t")) == {"real"}


@pytest.mark.cluster
def test_an_observer_being_created_keeps_its_index_entry_while_its_lock_is_held(store_redis):
    # Between a cluster save's join and its write the observer has an entry and no hash;
    # the subscription creating it holds its lock, and the sweep must not prune it then.
    store_redis.eval(observers._INDEX_MOVE, 1, keys.dependents("t"), "new", 60, "1")
    store_redis.set(keys.lock("new"), "creating", px=5000)
    assert sweep()["dependencies"] == 0
    assert store_redis.smembers(keys.dependents("t")) == {"new"}
    store_redis.delete(keys.lock("new"))
    assert sweep()["dependencies"] == 1


def test_a_drop_cut_after_the_observer_went_leaves_entries_the_sweep_prunes(store_redis):
    subscribers.register("alive1234", "chan-a", "")
    observer("cut", ("t", "u"), "alive1234")
    schedule.schedule("cut", 1)
    # The observer's own keys gone, as by the first step of a cluster drop; the rest left.
    store_redis.delete(*keys.observer_state("cut"))
    report = sweep()
    assert (report["dependencies"], report["polls"]) == (2, 1)
    assert not store_redis.exists(keys.dependents("t"), keys.dependents("u"), keys.poll())


def test_a_subscriber_that_came_back_during_the_sweep_is_put_back(store_redis):
    from reactive_celery.store.sweep import _forget_on_cluster

    subscribers.register("back12345", "chan-b", "")
    observer("kept", ("t",), "back12345")
    # Read as dead (its record had expired), registered and subscribed again meanwhile.
    assert _forget_on_cluster(store_redis, {"back12345": ["kept"]}) == 0
    assert subscribers.followers("kept") == {"back12345"}
    assert subscribers.follows("back12345", "kept")


def test_a_socket_refused_its_id_gives_its_place_under_the_cap_back(store_redis):
    subscribers.register("taken1234", "chan-a", "1")
    with pytest.raises(ForeignSubscriber):
        subscribers.register("taken1234", "chan-b", "2")
    assert store_redis.zrange(keys.sockets_of_user("2"), 0, -1) == []
    assert store_redis.zrange(keys.sockets_of_user("1"), 0, -1) == ["taken1234"]
