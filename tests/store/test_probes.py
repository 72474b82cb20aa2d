"""The probe dispatch's store side against the real Redis (one server and a cluster)."""

import json

from reactive_celery.store import keys, locks, observers, probes

TABLE = "t"


def saved(oid: str) -> None:
    observers.save(
        oid, spec="{}", items=[{"id": 1}], meta={}, version=7, tables=[TABLE], creator=""
    )


def test_commits_pend_into_one_dispatch_until_it_takes_them(store_redis):
    assert probes.pend({TABLE: ["o1"]}, {TABLE: ["1"]}, "tok-a") == [TABLE]
    assert probes.pend({TABLE: ["o1", "o2"]}, {TABLE: ["2"]}, "tok-b") == []  # one task waits
    assert probes.take(TABLE, "task-1") == ({"1", "2"}, {"o1": "tok-b", "o2": "tok-b"})
    # Redelivered after its worker died: the same task id finds what it took.
    assert probes.take(TABLE, "task-1") == ({"1", "2"}, {"o1": "tok-b", "o2": "tok-b"})
    # A commit after the take sends a dispatch of its own, which sees only its part.
    assert probes.pend({TABLE: ["o3"]}, {TABLE: ["3"]}, "tok-c") == [TABLE]
    assert probes.take(TABLE, "task-2") == ({"3"}, {"o3": "tok-c"})


def test_more_pks_than_the_cap_stand_for_the_whole_table(store_redis):
    many = [str(n) for n in range(locks.TOUCHED_CAP + 1)]
    probes.pend({TABLE: ["o1"]}, {TABLE: many}, "tok")
    probes.pend({TABLE: ["o1"]}, {TABLE: ["5"]}, "tok")
    assert probes.take(TABLE, "task")[0] == {locks.ANY}


def test_read_tells_busy_from_idle_and_gives_the_stored_result(store_redis):
    saved("idle")
    saved("busy")
    assert locks.queue(["busy"]) == ["busy"]
    found = {c.oid: c for c in probes.read(["idle", "busy", "gone"])}
    assert not found["idle"].busy and json.loads(found["idle"].items) == [{"id": 1}]
    assert found["busy"].busy
    assert found["gone"].spec == ""


def test_queue_records_the_entries_and_clears_only_its_own_probing_flag(store_redis):
    saved("mine")
    saved("later")
    store_redis.set(keys.probing("mine"), "tok-1")
    store_redis.set(keys.probing("later"), "tok-2")  # a later commit pended it again
    owed = {"mine": [f"{TABLE}:*"], "later": [f"{TABLE}:*"]}
    fresh = probes.queue(owed, {"mine": "tok-1", "later": "tok-1"}, stamps=False)
    assert fresh == ["later", "mine"]
    assert store_redis.smembers(keys.touched("mine")) == {f"{TABLE}:*"}
    assert not store_redis.exists(keys.probing("mine"))
    assert store_redis.get(keys.probing("later")) == "tok-2"
    assert probes.queue(owed, {}, stamps=False) == []  # already queued


def test_release_announces_the_version_to_waiting_clients_and_counts(store_redis):
    saved("waited")
    saved("busy")
    for oid in ("waited", "busy"):
        store_redis.set(keys.probing(oid), "tok")
        store_redis.set(keys.waiting(oid), "1")
    locks.queue(["busy"])
    store_redis.sadd(keys.probe_taken(TABLE, "task")[0], "1")
    released = probes.release(
        ["waited", "busy"],
        {"waited": "tok", "busy": "tok"},
        skipped=2,
        queries=1,
        taken=(TABLE, "task"),
    )
    assert released == {"waited": 7}  # the busy one's evaluation announces it
    assert not store_redis.exists(keys.probing("waited"), keys.probing("busy"))
    assert not store_redis.exists(*keys.probe_taken(TABLE, "task"))
    assert int(store_redis.get(keys.stats_skipped())) == 2
    assert int(store_redis.get(keys.stats_probes())) == 1
    assert int(store_redis.get(keys.stats_dispatches())) == 1
