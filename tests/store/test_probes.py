"""The probe dispatch's store side against the real Redis (one server and a cluster)."""

import json

import pytest

from reactive_celery.store import keys, locks, observers, probes

TABLE = "t"


def saved(oid: str, *, precise: bool = True) -> None:
    observers.save(
        oid, spec="{}", items=[{"id": 1}], meta={}, version=7, tables=[TABLE], creator=""
    )
    how = {"table": TABLE, "reason": ""} if precise else {"table": "", "reason": "paginated"}
    observers.note(oid, "invalidation", json.dumps(how))
    if precise:
        observers.mark_precise(oid, TABLE)


def commit(pks: list[str], token: str) -> locks.Queued:
    return locks.queue_or_probe([TABLE], {TABLE: pks}, token=token)


def test_commits_pend_into_one_dispatch_until_it_takes_them(store_redis):
    saved("o1")
    saved("o2")
    assert commit(["1"], "tok-a") == locks.Queued([], [], [TABLE])
    assert commit(["2"], "tok-b").dispatches == []  # one task waits
    taken = probes.take(TABLE, "task-1")
    assert (taken.pks, taken.first, taken.last) == ({"1", "2"}, "tok-a", "tok-b")
    assert taken.candidates == ["o1", "o2"]
    # Redelivered after its worker died: the same task id finds what it took.
    assert probes.take(TABLE, "task-1") == taken
    # A commit after the take sends a dispatch of its own, which sees only its part.
    assert commit(["3"], "tok-c").dispatches == [TABLE]
    later = probes.take(TABLE, "task-2")
    assert (later.pks, later.first, later.last) == ({"3"}, "tok-c", "tok-c")


def test_a_commit_touches_the_others_and_leaves_only_the_precise_ones(store_redis):
    saved("precise")
    saved("precise-2")
    saved("paged", precise=False)
    found = commit(["1"], "tok")
    assert (found.dependents, found.fresh, found.dispatches) == (["paged"], ["paged"], [TABLE])
    assert store_redis.smembers(keys.touched("paged")) == {f"{TABLE}:1"}
    assert not store_redis.exists(keys.touched("precise"), keys.queued("precise"))
    # Another written table it read, or no token: today's path.
    both = locks.queue_or_probe([TABLE, "u"], {TABLE: ["2"]}, token="tok-2")
    assert "precise" not in both.dependents  # it did not read u
    observers.save(
        "reads-u", spec="{}", items=[], meta={}, version=1, tables=[TABLE, "u"], creator=""
    )
    observers.mark_precise("reads-u", TABLE)
    assert "reads-u" in locks.queue_or_probe([TABLE, "u"], {TABLE: ["3"]}, token="t3").dependents
    assert "precise" in locks.queue_or_probe([TABLE], {TABLE: ["4"]}, token="").dependents


def test_a_tables_one_precise_observer_is_queued_at_commit_without_a_dispatch(store_redis):
    saved("alone")
    saved("paged", precise=False)
    found = commit(["1", "2"], "tok")
    assert (sorted(found.dependents), sorted(found.fresh)) == (
        ["alone", "paged"],
        ["alone", "paged"],
    )
    assert found.dispatches == []
    # Its evaluation decides it from the rows written, as a dispatch would have.
    assert store_redis.smembers(keys.touched("alone")) == {f"{TABLE}:1", f"{TABLE}:2"}
    assert not store_redis.exists(keys.probe_pending(TABLE), keys.probe_pks(TABLE))
    assert not locks.idle("alone") and locks.sync("alone") is None
    saved("second")
    assert commit(["3"], "tok-2").dispatches == [TABLE]  # two: one dispatch decides both


def test_more_pks_than_the_cap_stand_for_the_whole_table(store_redis):
    saved("o1")
    saved("o2")
    commit([str(n) for n in range(locks.TOUCHED_CAP + 1)], "tok")
    commit(["5"], "tok")
    assert probes.take(TABLE, "task").pks == {locks.ANY}


def test_read_tells_busy_from_idle_and_gives_the_stored_result(store_redis):
    saved("idle")
    saved("busy")
    assert locks.queue(["busy"]) == ["busy"]
    found = {c.oid: c for c in probes.read(["idle", "busy", "gone"])}
    assert not found["idle"].busy and json.loads(found["idle"].items) == [{"id": 1}]
    assert found["busy"].busy
    assert found["gone"].spec == ""


def test_read_answers_in_order_past_one_chunk(store_redis, monkeypatch):
    monkeypatch.setattr(probes, "READ_CHUNK", 2)
    for oid in ("a", "b", "c", "d"):
        saved(oid)
    assert locks.queue(["c"]) == ["c"]
    found = probes.read(["a", "gone", "c", "b", "d"])
    assert [(c.oid, c.busy, bool(c.spec)) for c in found] == [
        ("a", False, True),
        ("gone", False, False),
        ("c", True, True),
        ("b", False, True),
        ("d", False, True),
    ]


@pytest.mark.parametrize("chunk", [2, 500])
def test_read_leaves_out_the_result_of_an_observer_still_at_the_version_held(
    store_redis, monkeypatch, chunk
):
    monkeypatch.setattr(probes, "READ_CHUNK", chunk)
    for oid in ("a", "b", "c"):
        saved(oid)
    assert locks.queue(["b"]) == ["b"]
    found = probes.read(["a", "b", "c", "gone"], {"a": "7", "b": "7", "c": "6", "gone": "7"})
    assert [(c.oid, c.busy, c.version, c.unchanged, bool(c.items)) for c in found] == [
        ("a", False, "7", True, False),
        ("b", True, "7", True, False),  # busy is told whatever the caller holds
        ("c", False, "7", False, True),  # moved on: read in full
        ("gone", False, "", False, False),
    ]


def test_read_of_many_is_one_round_trip_on_one_server(store_redis, round_trips):
    oids = [f"o{n}" for n in range(100)]
    for oid in oids:
        saved(oid)
    probes.read(oids)  # loads the script, once a process
    before = round_trips()
    assert len(probes.read(oids)) == 100
    assert round_trips() - before == 1


def test_until_the_dispatch_releases_its_table_no_precise_observer_is_caught_up(store_redis):
    saved("waited")
    saved("busy")
    commit(["1"], "tok-1")
    assert [locks.idle("waited"), locks.sync("waited")] == [False, None]
    locks.queue(["busy"])
    assert locks.sync("busy") is None
    probes.take(TABLE, "task")
    assert probes.release(TABLE, "task", "tok-1", skipped=2, queries=1) == ["busy", "waited"]
    assert not store_redis.exists(keys.probe_pending(TABLE), *keys.probe_taken(TABLE, "task"))
    assert locks.idle("waited") and locks.sync("waited") == 7
    assert int(store_redis.get(keys.stats_skipped())) == 2
    assert int(store_redis.get(keys.stats_probes())) == 1
    assert int(store_redis.get(keys.stats_dispatches())) == 1


def test_a_release_after_a_later_commit_leaves_its_waiters_to_the_next_dispatch(store_redis):
    saved("o1")
    saved("o2")
    commit(["1"], "tok-1")
    probes.take(TABLE, "task-1")
    commit(["2"], "tok-2")  # after the take: its own token
    assert locks.sync("o1") is None
    assert probes.release(TABLE, "task-1", "tok-1", skipped=0, queries=0) == []
    assert not locks.idle("o1")
    assert probes.take(TABLE, "task-2").last == "tok-2"
    assert probes.release(TABLE, "task-2", "tok-2", skipped=0, queries=0) == ["o1"]
    assert locks.idle("o1")


def test_a_dropped_observer_leaves_its_tables_precise_set(store_redis):
    saved("o1")
    saved("o2")
    observers.drop("o1")
    assert store_redis.smembers(keys.precise(TABLE)) == {"o2"}
    observers.drop("o2")
    assert not store_redis.exists(keys.precise(TABLE))
