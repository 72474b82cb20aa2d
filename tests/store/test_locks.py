"""Queued flags, the evaluation lock and the dirty flag against the real Redis."""

from collections import Counter

import pytest

from reactive_celery.conf import lock_ttl_ms
from reactive_celery.exceptions import ObserverBusy
from reactive_celery.store import keys, locks, observers, subscribers


def test_contended_lock_marks_dirty_and_the_holder_runs_again(store_redis):
    assert locks.begin("o1", "holder").acquired
    assert not locks.begin("o1", "late").acquired
    assert locks.finish("o1", "holder") == 1  # rerun, lock kept
    assert not locks.begin("o1", "later").acquired
    assert locks.finish("o1", "holder") == 1
    assert locks.finish("o1", "holder") == 0
    assert not store_redis.exists(keys.lock("o1"))


def test_release_with_a_foreign_token_changes_nothing(store_redis):
    locks.begin("o1", "holder")
    assert locks.finish("o1", "thief") == -1
    assert store_redis.get(keys.lock("o1")) == "holder"


def test_a_contended_retry_does_not_mark_the_observer_dirty(store_redis):
    assert locks.begin("o1", "holder").acquired
    assert not locks.begin("o1", "retry", retry=True).acquired
    assert locks.finish("o1", "holder") == 0  # no rerun


def test_only_the_first_contended_task_schedules_a_retry(store_redis):
    locks.begin("o1", "holder")
    first = locks.begin("o1", "late")
    assert first.retry_in_ms is not None and 0 < first.retry_in_ms <= lock_ttl_ms()
    assert locks.begin("o1", "later").retry_in_ms is None


def test_begin_clears_the_queued_flag_and_counts_starts(store_redis):
    store_redis.set(keys.queued("o1"), "1")
    assert locks.begin("o1", "first").starts == 1
    assert not store_redis.exists(keys.queued("o1"))
    locks.finish("o1", "first")
    store_redis.set(keys.queued("o1"), "1")
    assert locks.begin("o1", "retry", retry=True).starts == 2  # no clean finish between
    assert store_redis.exists(keys.queued("o1"))  # a retry carries no change of its own
    locks.clear_starts("o1")
    assert not store_redis.exists(keys.starts("o1"))


def test_the_subscription_lock_waits_then_gives_up(store_redis, settings):
    settings.REACTIVE_CELERY = {**settings.REACTIVE_CELERY, "LOCK_WAIT": 0.05}
    locks.begin("o1", "holder")
    with pytest.raises(ObserverBusy), locks.observer_lock("o1"):
        pass
    locks.finish("o1", "holder")
    with locks.observer_lock("o1") as held:
        locks.begin("o1", "change")  # a change arrives while the subscription holds it
    assert held.changed_meanwhile
    assert not store_redis.exists(keys.lock("o1"))


def test_queue_dependents_queues_each_observer_once(store_redis):
    observers.save("o1", spec="{}", items=[], meta={}, version=1, tables=["t1", "t2"], creator="")
    observers.save("o2", spec="{}", items=[], meta={}, version=1, tables=["t2"], creator="")
    found, queued = locks.queue_dependents({"t1", "t2"})
    assert sorted(found) == ["o1", "o2"] and sorted(queued) == ["o1", "o2"]
    assert locks.queue_dependents({"t2"})[1] == []
    store_redis.delete(keys.queued("o1"))  # its evaluate task started
    assert locks.queue_dependents({"t1", "t3"}) == (["o1"], ["o1"])
    assert locks.queue_dependents({"nothing"}) == ([], [])


def test_every_key_has_a_lifetime(store_redis):
    subscribers.register("sub12345", "chan", "")
    observers.save("o1", spec="{}", items=[], meta={}, version=1, tables=["t"], creator="")
    subscribers.subscribe("o1", "sub12345")
    locks.queue_dependents({"t"})
    locks.begin("o1", "holder")
    locks.begin("o1", "other")
    for name in sorted(store_redis.scan_iter("rc:*")):
        assert store_redis.ttl(name) > 0, name


def test_a_watched_observer_is_queued_for_any_table_until_unwatched(store_redis):
    locks.watch("new", 30)
    assert locks.queue_dependents({"any_table"}) == (["new"], ["new"])
    store_redis.delete(keys.queued("new"))  # its evaluate task started
    locks.unwatch("new")
    assert locks.queue_dependents({"any_table"}) == ([], [])


def test_watch_entries_expire_by_themselves(store_redis):
    store_redis.zadd(keys.watch(), {"stale": 1})  # a crashed subscribe's entry, long past
    assert locks.queue_dependents({"any_table"}) == ([], [])
    assert store_redis.zcard(keys.watch()) == 0


def test_sync_answers_the_version_when_nothing_is_owed_else_waits(store_redis):
    observers.save("o1", spec="{}", items=[], meta={}, version=4, tables=["t"], creator="")
    assert locks.sync("o1") == 4
    assert locks.settled("o1") is None  # nobody waits
    locks.queue(["o1"])  # a commit queued an evaluation
    assert locks.sync("o1") is None
    assert store_redis.ttl(keys.waiting("o1")) > 0
    locks.begin("o1", "worker")  # the task starts: queued cleared, lock taken
    assert locks.sync("o1") is None
    observers.save("o1", spec="{}", items=[], meta={}, version=5, tables=["t"], creator="")
    assert locks.finish("o1", "worker") == 0
    assert locks.settled("o1") == 5  # announced once
    assert locks.settled("o1") is None
    assert locks.sync("o1") == 5
    assert locks.sync("missing") == -2


def test_a_rerun_that_finds_nothing_new_ends_the_evaluation_in_the_same_step(store_redis):
    observers.save("o1", spec="{}", items=[], meta={}, version=3, tables=["t"], creator="")
    locks.queue(["o1"])
    assert locks.sync("o1") is None  # a client waits for the queued evaluation
    assert locks.begin("o1", "worker").starts == 1
    assert not locks.begin("o1", "late").acquired  # a change arrives meanwhile
    kept = locks.rerun("o1", "worker")
    assert kept.touched is not None and kept.settled is None
    assert store_redis.exists(keys.lock("o1")) and store_redis.exists(keys.starts("o1"))
    observers.save("o1", spec="{}", items=[], meta={}, version=4, tables=["t"], creator="")
    ended = locks.rerun("o1", "worker")
    assert ended == locks.Rerun(None, 4)  # released, and the waiting client's version
    assert not store_redis.exists(keys.lock("o1"))
    assert not store_redis.exists(keys.starts("o1"))
    assert locks.settled("o1") is None  # announced once
    assert locks.sync("o1") == 4


def test_a_rerun_by_a_holder_whose_lock_expired_changes_no_one_elses_lock(store_redis):
    assert locks.begin("o1", "worker").acquired
    store_redis.delete(keys.lock("o1"))  # expired
    assert locks.begin("o1", "next").acquired
    assert locks.rerun("o1", "worker") == locks.Rerun(None, None)  # nobody waits
    assert store_redis.get(keys.lock("o1")) == "next"


# --- touched entries ----------------------------------------------------------


def dependent(oid: str, *tables: str) -> None:
    observers.save(oid, spec="{}", items=[], meta={}, version=1, tables=tables, creator="")


def test_a_commit_records_its_rows_per_observer_and_begin_takes_them(store_redis):
    dependent("o1", "items")
    dependent("o2", "items", "tags")
    found, fresh = locks.queue_dependents(["items", "tags"], {"items": ["3", "4"]})
    assert sorted(found) == sorted(fresh) == ["o1", "o2"]
    assert set(locks.begin("o2", "t").touched) == {"items:3", "items:4", "tags:*"}
    assert set(locks.begin("o1", "t").touched) == {"items:3", "items:4"}
    assert not store_redis.exists(keys.touched("o1"), keys.touched("o2"))


def test_a_change_to_a_queued_observer_joins_its_touched_set(store_redis):
    dependent("o1", "items")
    assert locks.queue_dependents(["items"], {"items": ["1"]})[1] == ["o1"]
    assert locks.queue_dependents(["items"], {"items": ["2"]})[1] == []  # already queued
    assert set(locks.begin("o1", "t").touched) == {"items:1", "items:2"}


def test_past_the_cap_the_touched_set_stands_for_everything(store_redis):
    dependent("o1", "items")
    many = [str(n) for n in range(locks.TOUCHED_CAP // 2 + 1)]
    locks.queue_dependents(["items"], {"items": many})
    locks.queue_dependents(["items"], {"items": [f"x{n}" for n in many]})
    locks.queue_dependents(["items"], {"items": ["later"]})
    assert locks.begin("o1", "t").touched == (locks.ANY,)


def test_an_observer_being_created_is_touched_everywhere(store_redis):
    locks.watch("new", 30)
    assert locks.queue_dependents(["anything"], {"anything": ["1"]}) == (["new"], ["new"])
    assert locks.begin("new", "t").touched == (locks.ANY,)


def test_a_contended_change_is_taken_by_the_holders_rerun(store_redis):
    dependent("o1", "items")
    assert locks.begin("o1", "holder").touched == ()
    locks.queue_dependents(["items"], {"items": ["9"]})
    assert not locks.begin("o1", "their-task").acquired
    assert locks.rerun("o1", "holder").touched == ("items:9",)
    assert locks.rerun("o1", "holder").touched is None
    assert not store_redis.exists(keys.lock("o1"))
    assert locks.rerun("o1", "holder").touched is None  # no longer held


def test_a_redis_that_lost_its_scripts_still_records_and_queues(store_redis):
    dependent("o1", "items")
    assert locks.queue_dependents(["items"], {"items": ["1"]})[1] == ["o1"]
    locks.begin("o1", "t")
    locks.finish("o1", "t")
    store_redis.script_flush()  # as after a Redis restart
    assert locks.queue_dependents(["items"], {"items": ["2"]})[1] == ["o1"]
    assert locks.begin("o1", "t2").touched == ("items:2",)


def test_idle_until_an_evaluation_is_queued_running_or_owed(store_redis):
    assert locks.idle("o1")
    locks.queue(["o1"])
    assert not locks.idle("o1")  # queued
    assert locks.begin("o1", "t1").acquired
    assert not locks.idle("o1")  # running
    assert not locks.begin("o1", "t2").acquired
    locks.finish("o1", "t1")
    assert not locks.idle("o1")  # a change arrived meanwhile: owed a rerun


@pytest.mark.cluster
def test_on_a_cluster_a_commit_costs_one_round_trip_to_the_index_and_one_per_master(
    store_redis, round_trips
):
    oids = [f"spread{i}" for i in range(12)]
    for oid in oids:
        dependent(oid, "items")
    masters = {store_redis.get_node_from_key(keys.queued(oid)).name for oid in oids}
    assert len(masters) > 1
    locks.queue_dependents(["items"])  # loads the script on every master, once per process
    for oid in oids:
        locks.begin(oid, "t")
        locks.finish(oid, "t")
    before = round_trips.per_node()
    assert len(locks.queue_dependents(["items"])[1]) == 12
    index = store_redis.get_node_from_key(keys.dependents("items")).name
    assert round_trips.per_node() - before == Counter([index, *masters])
