"""An observer's stored state against the real Redis: save, replay, drop."""

from collections import Counter

import pytest

from reactive_celery.store import keys, observers, stats, subscribers

FIELDS = dict(spec="{}", items=[], meta={}, tables=["t"], creator="")


def test_save_and_load_round_trip_with_dependency_entries(store_redis):
    observers.save(
        "o1",
        spec='{"view": "v"}',
        items=[{"id": 1}],
        meta={"count": 1},
        version=7,
        tables=["t", "u"],
        declared=["u"],
        creator="3",
    )
    loaded = observers.load("o1")
    assert (loaded.items, loaded.meta, loaded.version) == ([{"id": 1}], {"count": 1}, 7)
    assert (loaded.tables, loaded.declared, loaded.creator) == (["t", "u"], ["u"], "3")
    assert store_redis.smembers(keys.dependents("u")) == {"o1"}
    observers.save("o1", **{**FIELDS, "version": 8, "old_tables": ["t", "u"]}, evaluated=True)
    assert not store_redis.exists(keys.dependents("u"))
    assert observers.load("o1").evaluations == 1
    assert observers.load("missing") is None


def test_replay_returns_the_diffs_after_a_version_and_none_beyond_the_buffer(store_redis, settings):
    settings.REACTIVE_CELERY = {**settings.REACTIVE_CELERY, "REPLAY_BUFFER": 3}
    for version in range(11, 16):
        change = {"msg": "added", "order": 0, "item": {}}
        entry = {"version": version, "primary_key": "id", "changes": [change]}
        observers.save("o1", **FIELDS, version=version, diff=entry)
    assert store_redis.llen(keys.observer_log("o1")) == 3
    assert [e["version"] for e in observers.replay("o1", 12, 15)] == [13, 14, 15]
    assert observers.replay("o1", 15, 15) == []
    assert observers.replay("o1", 11, 15) is None  # 12 fell out of the buffer
    assert observers.replay("o1", 16, 15) is None  # a version from the future
    assert observers.replay("o1", -1, 15) is None


def test_an_evaluation_does_not_bring_back_a_dropped_observer(store_redis):
    fields = dict(FIELDS, version=1)
    assert observers.save("o1", **fields) is True
    observers.drop("o1")
    assert observers.save("o1", **fields, must_exist=True) is False
    assert sorted(store_redis.scan_iter("rc:*")) == []


def test_drop_takes_the_observer_off_every_subscriber_and_table(store_redis):
    observers.save("o1", **{**FIELDS, "tables": ["t", "u"]}, version=1)
    for sid in ("sub-a-1234", "sub-b-1234"):
        subscribers.register(sid, f"chan-{sid}", "")
        subscribers.subscribe("o1", sid)
    assert sorted(observers.drop("o1")) == ["sub-a-1234", "sub-b-1234"]
    assert not store_redis.exists(
        keys.observer("o1"),
        keys.observer_subscribers("o1"),
        keys.dependents("t"),
        keys.dependents("u"),
    )
    assert not subscribers.follows("sub-a-1234", "o1")


def test_release_keeps_an_observer_others_follow_and_drops_it_after_the_last(store_redis):
    observers.save("o1", **FIELDS, version=1)
    for sid in ("sub-a-1234", "sub-b-1234"):
        subscribers.register(sid, f"chan-{sid}", "")
        assert subscribers.subscribe("o1", sid)
    assert observers.release("o1", "sub-a-1234") is None
    assert subscribers.followers("o1") == {"sub-b-1234"}
    assert observers.release("o1", "sub-b-1234") == []
    assert observers.load("o1") is None


@pytest.mark.single_server  # the single script's own retry; a cluster has no such read
def test_release_reads_again_when_a_subscriber_joins_meanwhile(store_redis):
    observers.save("o1", **FIELDS, version=1)
    subscribers.register("sub-a-1234", "chan-a", "")
    subscribers.subscribe("o1", "sub-a-1234")
    # A stale read: the script is handed no subscriber keys, finds one, and is retried.
    script = store_redis.register_script(observers._RELEASE)
    names = [
        keys.observer("o1"),
        keys.observer_subscribers("o1"),
        keys.observer_log("o1"),
        keys.queued("o1"),
        keys.dirty("o1"),
        keys.starts("o1"),
        keys.poll(),
        keys.observer_subscribers("o1"),
        keys.dependents("t"),
    ]
    assert script(keys=names, args=["o1", "", "1", 0, "t"]) == -1
    assert observers.load("o1") is not None  # nothing was changed by the refused call
    assert observers.drop("o1") == ["sub-a-1234"]


def test_a_worker_save_stores_and_counts_the_evaluation_in_one_round_trip(round_trips):
    fields = dict(FIELDS, version=1)
    observers.save("o1", **fields)  # loads the script into Redis, once per server
    before = round_trips()
    entry = {"version": 2, "primary_key": "id", "changes": []}
    saved = observers.save(
        "o1", **{**fields, "version": 2}, evaluated=True, must_exist=True, diff=entry, elapsed=0.004
    )
    assert saved is True
    assert round_trips() - before == 1
    assert observers.load("o1").version == 2
    assert observers.replay("o1", 1, 2) == [entry]
    assert stats.summary() == {"evaluations": 1, "samples": 1, "p50_ms": 4.0, "p99_ms": 4.0}


def test_a_save_refused_for_a_dropped_observer_still_counts_its_evaluation(store_redis):
    assert observers.save("o1", **FIELDS, version=1, must_exist=True, elapsed=0.002) is False
    assert not store_redis.exists(
        keys.observer("o1"), keys.observer_log("o1"), keys.dependents("t")
    )
    assert stats.summary()["evaluations"] == 1


def test_note_sets_a_field_of_an_existing_observer_only(store_redis):
    observers.note("nobody", "invalidation", "{}")
    assert not store_redis.exists(keys.observer("nobody"))  # no hash without a lifetime
    observers.save("o1", spec="{}", items=[], meta={}, version=1, tables=[], creator="")
    observers.note("o1", "invalidation", "first")
    observers.note("o1", "invalidation", "second")
    assert store_redis.hget(keys.observer("o1"), "invalidation") == "first"
    observers.note("o1", "invalidation", "second", overwrite=True)
    assert store_redis.hget(keys.observer("o1"), "invalidation") == "second"


@pytest.mark.cluster
def test_on_a_cluster_observers_spread_over_the_masters_and_the_index_shares_one_slot(
    store_redis,
):
    oids = [f"spread{i}" for i in range(12)]
    for oid in oids:
        observers.save(oid, **{**FIELDS, "tables": ["t", "u"]}, version=1)
    masters = {store_redis.get_node_from_key(keys.observer(oid)).name for oid in oids}
    assert len(masters) > 1
    index = [keys.dependents("t"), keys.dependents("u"), keys.watch(), keys.poll()]
    assert len({store_redis.keyslot(name) for name in index}) == 1
    assert store_redis.smembers(keys.dependents("u")) == set(oids)
    for oid in oids:
        observers.drop(oid)
    assert sorted(store_redis.scan_iter("rc:*")) == []


@pytest.mark.cluster
def test_on_a_cluster_a_worker_save_is_three_round_trips(store_redis, round_trips):
    observers.save("o1", **FIELDS, version=1)
    observers.save("o1", **FIELDS, version=2)  # the script is loaded on its master now
    before = round_trips.per_node()
    fields = {**FIELDS, "old_tables": ["t"], "evaluated": True, "must_exist": True}
    assert observers.save("o1", **fields, version=3, elapsed=0.01) is True
    # Join the index, count the evaluation, write the observer: one trip to each's master.
    steps = [keys.dependents("t"), keys.stats_evaluations(), keys.observer("o1")]
    expected = Counter(store_redis.get_node_from_key(key).name for key in steps)
    assert round_trips.per_node() - before == expected
    assert (observers.load("o1").version, stats.summary()["evaluations"]) == (3, 1)
