"""A table's probe dispatch over the real Redis and broker: tasks, queries and evaluations counted.

Observers are created by a first full evaluation and classified as a
subscription classifies them (``invalidation.record``). Each write commits;
its tasks land in the real broker and are run in-process as a worker would
(``run_dispatches`` for the dispatch tasks, ``run_queued`` for all).
"""

import time

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from reactive_celery import dispatch, invalidation, observer, signals, tasks
from reactive_celery.evaluation import evaluate_spec
from reactive_celery.signals import notify
from reactive_celery.spec import ObserverSpec
from reactive_celery.store import keys, locks, observers, probes
from tests.specs import spec_for
from tests.test_invalidation import changed, evaluations, run_queued, start
from tests.testapp.models import Item

pytestmark = pytest.mark.django_db(transaction=True)

DISPATCH = "reactive_celery.dispatch"
EVALUATE = "reactive_celery.evaluate"
TABLE = "testapp_item"


def subscribed(spec: ObserverSpec, user=None) -> str:
    """An observer after its first evaluation, classified as its subscription would."""
    oid = start(spec)
    invalidation.record(oid, spec, invalidation.build_view(spec, user or AnonymousUser()))
    return oid


def groups(n: int) -> list[str]:
    return [
        subscribed(spec_for("/api/groups/", "GroupItemViewSet", query=[("position", str(g))]))
        for g in range(n)
    ]


def sent(broker) -> list[tuple[str, str]]:
    """(task, first argument) of every task waiting in the broker."""
    return [(m["headers"]["task"], m["args"][0]) for m in broker.messages()]


def run_dispatches(broker) -> list[str]:
    """Run the waiting dispatches (only them) in-process; return the SQL they ran."""
    waiting = broker.messages()
    broker.redis.delete("reactive-unconsumed")
    with CaptureQueriesContext(connection) as queries:
        for message in waiting:
            if message["headers"]["task"] == DISPATCH:
                # As the task does, but sending every evaluation: what was decided shows.
                table, task = message["args"][0], message["headers"]["id"]
                dispatch.dispatch(table, requeue=tasks.enqueue_evaluation, task=task)
    for message in waiting:  # the evaluations go back behind the dispatch's own
        if message["headers"]["task"] != DISPATCH:
            observer.refresh(message["args"][0], retry=False, requeue=lambda *a, **k: None)
    # A large probe on PostgreSQL comes in its own transaction (parallel workers off).
    control = ("BEGIN", "COMMIT", "SET LOCAL max_parallel_workers_per_gather")
    return [q["sql"] for q in queries.captured_queries if not q["sql"].startswith(control)]


def stat(store_redis, name: str) -> int:
    return int(store_redis.get(name) or 0)


def test_one_update_among_a_hundred_observers_is_one_dispatch_one_probe_one_evaluation(
    store_redis, broker
):
    items = [Item.objects.create(name=f"i{g}", position=g) for g in range(100)]
    oids = groups(100)
    before = evaluations(oids)
    items[3].name = "renamed"
    items[3].save()
    assert sent(broker) == [(DISPATCH, TABLE)]
    queries = run_dispatches(broker)
    assert len(queries) == 1 and "_reactive_probe" in queries[0]
    assert sent(broker) == [(EVALUATE, oids[3])]
    run_queued(broker)
    assert changed(oids, before) == [1 if g == 3 else 0 for g in range(100)]
    assert observers.load(oids[3]).items[0]["name"] == "renamed"
    assert stat(store_redis, keys.stats_skipped()) == 99
    assert stat(store_redis, keys.stats_dispatches()) == 1
    assert stat(store_redis, keys.stats_probes()) == 1
    assert not store_redis.exists(keys.probe_pending(TABLE))


def test_a_create_is_found_by_the_probe_alone(store_redis, broker):
    oids = groups(10)
    before = evaluations(oids)
    Item.objects.create(name="new", position=5)
    assert len(run_dispatches(broker)) == 1
    assert sent(broker) == [(EVALUATE, oids[5])]
    run_queued(broker)
    assert changed(oids, before) == [1 if g == 5 else 0 for g in range(10)]
    # Decided: the evaluation does not probe again.
    assert [i["name"] for i in observers.load(oids[5]).items] == ["new"]


def test_a_dispatch_reads_again_only_the_results_that_moved_since_the_last(
    store_redis, broker, monkeypatch
):
    items = [Item.objects.create(name=f"i{g}", position=g) for g in range(4)]
    oids = groups(4)
    reads = []

    def read(*args):
        found = real_read(*args)
        reads.append({c.oid: c.unchanged for c in found})
        return found

    real_read = probes.read
    monkeypatch.setattr(probes, "read", read)
    before = evaluations(oids)
    items[0].name = "renamed"
    items[0].save()
    run_queued(broker)
    assert reads[-1] == dict.fromkeys(oids, False)  # this process knew none of them
    # A row moves from group 1 to 2: 1 held it (known, not read again), 2's probe finds it.
    items[1].position = 2
    items[1].save()
    run_queued(broker)
    assert reads[-1] == {oid: oid != oids[0] for oid in oids}  # 0 moved on: read in full
    assert changed(oids, before) == [1, 1, 1, 0]
    # Now only group 2 holds the row: its result moved, so it is read (and held) again.
    items[1].name = "again"
    items[1].save()
    run_queued(broker)
    assert reads[-1] == {oids[0]: True, oids[1]: False, oids[2]: False, oids[3]: True}
    assert changed(oids, before) == [1, 1, 2, 0]
    assert {i["name"] for i in observers.load(oids[2]).items} == {"i2", "again"}


def test_writes_before_the_dispatch_runs_coalesce_into_one(store_redis, broker):
    oids = groups(4)
    before = evaluations(oids)
    Item.objects.create(name="a", position=1)
    Item.objects.create(name="b", position=2)
    assert sent(broker) == [(DISPATCH, TABLE)]  # the second commit found it queued
    assert len(run_dispatches(broker)) == 1
    run_queued(broker)
    assert changed(oids, before) == [0, 1, 1, 0]


def run_dispatch_task(broker) -> None:
    """Run the one waiting dispatch as its worker would: the task itself."""
    (message,) = broker.messages()
    assert message["headers"]["task"] == DISPATCH
    broker.redis.delete("reactive-unconsumed")
    tasks.dispatch(*message["args"])


def test_the_dispatch_task_evaluates_the_one_concerned_observer_itself(
    store_redis, broker, listener
):
    from reactive_celery import broadcast

    oids = groups(10)
    listener.join(broadcast.group_name(oids[3]))
    before = evaluations(oids)
    Item.objects.create(name="new", position=3)
    signals.flush()
    assert locks.sync(oids[3]) is None  # a client waits for its write
    run_dispatch_task(broker)
    assert sent(broker) == []  # no evaluate task: the dispatch's worker ran it
    assert changed(oids, before) == [1 if g == 3 else 0 for g in range(10)]
    assert [i["name"] for i in observers.load(oids[3]).items] == ["new"]
    diff, synced = listener.receive(), listener.receive()
    assert (diff["type"], synced["type"]) == ("reactive.diff", "reactive.synced"), (diff, synced)
    assert locks.idle(oids[3]) and locks.sync(oids[3]) == synced["version"]


def test_the_dispatch_task_sends_the_other_concerned_observers(store_redis, broker):
    oids = groups(4)
    before = evaluations(oids)
    Item.objects.create(name="a", position=1)
    Item.objects.create(name="b", position=2)
    signals.flush()
    run_dispatch_task(broker)
    # One evaluated in the dispatch, the other sent to the next free process.
    ((task, other),) = sent(broker)
    assert task == EVALUATE and other in (oids[1], oids[2])
    assert changed(oids, before) == [0, int(other != oids[1]), int(other != oids[2]), 0]
    run_queued(broker)
    assert changed(oids, before) == [0, 1, 1, 0]


def test_a_dispatch_that_took_a_quarter_of_the_time_limit_sends_every_evaluation(
    store_redis, broker, monkeypatch
):
    from types import SimpleNamespace

    oids = groups(2)  # a table's only precise observer gets no dispatch
    limit = dispatch.reactive_settings.EVALUATION_TIME_LIMIT
    clock = iter([0.0, limit / 4 + 1])
    monkeypatch.setattr(dispatch, "time", SimpleNamespace(monotonic=lambda: next(clock)))
    Item.objects.create(name="slow", position=0)
    signals.flush()
    run_dispatch_task(broker)
    assert sent(broker) == [(EVALUATE, oids[0])]


def test_an_evaluation_that_read_before_the_commit_and_finished_before_the_dispatch(
    store_redis, broker
):
    """The race: E holds the lock while the write commits, read the rows before it,
    and publishes and releases before the commit's callback looks. The stored result
    then predates the write although nothing marked the observer: the row that left
    its filter is still in it, and the dispatch must evaluate it for that."""
    mover = Item.objects.create(name="mover", position=0)
    oids = groups(3)
    before = evaluations(oids)
    spec = ObserverSpec.from_json(observers.load(oids[0]).spec)
    assert locks.begin(oids[0], "E").acquired
    read_before = evaluate_spec(spec, spec.user)  # E's snapshot: mover is in group 0

    def e_finishes():
        observer.publish(oids[0], spec, read_before, stored=observers.load(oids[0]), evaluated=True)
        assert locks.finish(oids[0], "E") == 0  # nothing marked it dirty

    with transaction.atomic():
        transaction.on_commit(e_finishes)  # runs after the commit, before ours
        mover.position = 1
        mover.save()
    signals.flush()
    assert locks.idle(oids[0]) is False  # probing: not idle until the dispatch decided
    assert sent(broker) == [(DISPATCH, TABLE)]
    run_dispatches(broker)
    assert sorted(oid for _, oid in sent(broker)) == sorted([oids[0], oids[1]])
    run_queued(broker)
    assert [observers.load(oid).items for oid in oids[:2]] == [
        [],
        [{**observers.load(oids[1]).items[0], "name": "mover"}],
    ]
    assert changed(oids, before) == [2, 1, 0]  # E's publish, then the dispatch's evaluation


def test_an_observer_busy_when_the_dispatch_looks_takes_todays_path(store_redis, broker):
    item = Item.objects.create(name="a", position=0)
    oid, _ = groups(2)
    Item.objects.create(name="elsewhere", position=7)  # concerns no result of either
    assert locks.begin(oid, "holder").acquired  # an evaluation starts before the dispatch
    run_dispatches(broker)
    assert sent(broker) == [(EVALUATE, oid)]  # queued, not dropped: the lock decides
    assert store_redis.smembers(keys.touched(oid)) == {
        f"{TABLE}:{pk}" for pk in Item.objects.exclude(pk=item.pk).values_list("pk", flat=True)
    }
    assert not store_redis.exists(keys.probe_pending(TABLE))
    assert stat(store_redis, keys.stats_skipped()) == 1  # the other one, probed and dropped


def test_a_commit_during_the_dispatch_keeps_the_observers_pending_for_the_next(
    store_redis, broker, monkeypatch
):
    oids = groups(2)
    Item.objects.create(name="first", position=7)
    real_decide = dispatch.decide

    def decide_after_another_commit(*args, **kwargs):
        Item.objects.create(name="second", position=8)  # pends again, a token of its own
        return real_decide(*args, **kwargs)

    monkeypatch.setattr(dispatch, "decide", decide_after_another_commit)
    run_dispatch_task(broker)
    signals.flush()
    monkeypatch.setattr(dispatch, "decide", real_decide)
    # The first dispatch dropped both for "first" but left "second"'s token to the next.
    assert [locks.idle(oid) for oid in oids] == [False, False]
    assert sent(broker) == [(DISPATCH, TABLE)]
    run_dispatches(broker)
    assert [locks.idle(oid) for oid in oids] == [True, True]
    assert stat(store_redis, keys.stats_skipped()) == 4


def test_a_client_waiting_on_sync_hears_the_dispatch_release_it(store_redis, broker, listener):
    from reactive_celery import broadcast

    (oid,) = groups(1)
    listener.join(broadcast.group_name(oid))
    Item.objects.create(name="elsewhere", position=7)
    signals.flush()  # outside a request the commit's sender thread pends it
    assert locks.sync(oid) is None  # waits for the dispatch
    run_dispatches(broker)
    version = observers.load(oid).version
    assert listener.receive()["version"] == version
    assert locks.sync(oid) == version
    assert sent(broker) == []


def test_a_dispatch_whose_worker_died_decides_the_same_observers_when_redelivered(
    store_redis, broker, monkeypatch
):
    oids = groups(3)
    Item.objects.create(name="new", position=1)
    (message,) = broker.messages()
    broker.redis.delete("reactive-unconsumed")

    def killed(*args, **kwargs):
        raise SystemExit("the worker died")  # after taking, before deciding

    monkeypatch.setattr(dispatch, "decide", killed)
    with pytest.raises(SystemExit):
        dispatch.dispatch(TABLE, requeue=tasks.enqueue_evaluation, task="task-1")
    monkeypatch.undo()
    # The broker redelivers the same message: same task id, same observers.
    dispatch.dispatch(TABLE, requeue=tasks.enqueue_evaluation, task="task-1")
    assert sent(broker) == [(EVALUATE, oids[1])]
    assert [locks.idle(oid) for oid in (oids[0], oids[2])] == [True, True]
    assert not store_redis.keys("rc:probe:*")  # what it took is forgotten once done


def test_a_dispatch_whose_message_was_lost_is_sent_again_by_the_sweep(store_redis, broker, caplog):
    from reactive_celery.store.sweep import requeue_lost_dispatches

    oids = groups(4)
    before = evaluations(oids)
    Item.objects.create(name="lost", position=2)
    assert sent(broker) == [(DISPATCH, TABLE)]
    assert requeue_lost_dispatches() == []  # its task still waits in the broker

    # The message is lost (a worker killed as it took it): the flag expires, the
    # pended observers outlive it.
    broker.redis.delete("reactive-unconsumed")
    store_redis.delete(keys.probe_queued(TABLE))
    assert store_redis.exists(keys.probe_tokens(TABLE), keys.probe_pks(TABLE)) == 2
    assert requeue_lost_dispatches() == [TABLE]  # the sweep task sends one dispatch each
    assert "Requeued the probe dispatch of testapp_item" in caplog.text
    assert requeue_lost_dispatches() == []  # queued again: left alone
    tasks.enqueue_dispatch(TABLE)
    run_dispatches(broker)
    run_queued(broker)
    assert changed(oids, before) == [0, 0, 1, 0]
    assert not store_redis.exists(keys.probe_pending(TABLE))


def test_per_user_observers_are_probed_as_their_users_in_one_query(store_redis, broker):
    users = [User.objects.create_user(f"u{n}") for n in range(3)]
    items = [Item.objects.create(name=f"i{n}", owner=user) for n, user in enumerate(users)]
    oids = [
        subscribed(spec_for("/api/own/", "OwnItemViewSet", user=str(u.pk)), user=u) for u in users
    ]
    before = evaluations(oids)
    items[2].owner = users[1]
    items[2].save()
    queries = run_dispatches(broker)
    # The users of the two observers probed, then one probe as both of them.
    assert len(queries) == 2 and "_reactive_probe" in queries[1]
    run_queued(broker)
    assert changed(oids, before) == [0, 1, 1]
    assert [len(observers.load(oid).items) for oid in oids] == [1, 2, 0]


def test_unprobeable_observers_are_queued_at_commit_beside_one_dispatch(store_redis, broker):
    Item.objects.create(name="a", position=0)
    other = Item.objects.create(name="b", position=1)
    precise = groups(5)
    annotated = subscribed(spec_for("/api/annotated/", "AnnotatedItemViewSet"))
    paged = subscribed(spec_for("/api/paged/", "PagedItemViewSet"))
    undecided = start(spec_for("/api/groups/", "GroupItemViewSet", query=[("position", "9")]))
    before = evaluations([*precise, annotated, paged, undecided])
    other.name = "renamed"
    other.save()
    assert sorted(sent(broker)) == sorted(
        [(DISPATCH, TABLE), (EVALUATE, annotated), (EVALUATE, paged), (EVALUATE, undecided)]
    )
    run_dispatches(broker)
    run_queued(broker)
    # The undecided one was classified under its lock and probed there: not evaluated.
    assert changed([*precise, annotated, paged, undecided], before) == [0, 1, 0, 0, 0, 1, 1, 0]


def test_a_whole_table_change_keeps_todays_path(store_redis, broker):
    Item.objects.create(name="a", position=0)
    oids = groups(3)
    notify(Item)
    assert sorted(sent(broker)) == sorted((EVALUATE, oid) for oid in oids)


def test_turned_off_no_dispatch_is_sent(store_redis, broker, settings):
    oids = groups(3)
    settings.REACTIVE_CELERY = {**settings.REACTIVE_CELERY, "PRECISE_INVALIDATION": False}
    Item.objects.create(name="a", position=0)
    assert sorted(sent(broker)) == sorted((EVALUATE, oid) for oid in oids)
    assert not store_redis.keys("rc:probe:*")


def test_a_dispatch_that_finds_nothing_pended_does_nothing(store_redis, broker):
    assert dispatch.dispatch(TABLE, requeue=tasks.enqueue_evaluation, task="t").owed == {}
    assert sent(broker) == []
    assert stat(store_redis, keys.stats_dispatches()) == 0


@pytest.mark.parametrize("observed", [2, 20, 200])
def test_a_commit_with_precise_observers_costs_one_round_trip_however_many(
    store_redis, broker, round_trips, observed
):
    groups(observed)
    signals.enqueue_dependents({TABLE}, {TABLE: {"1"}})  # loads the script, once a process
    before = round_trips()
    signals.enqueue_dependents({TABLE}, {TABLE: {"2"}})
    # The lookup pends for the dispatch; the first commit sent its task.
    assert round_trips() - before == 1


def test_a_tables_one_precise_observer_skips_the_dispatch_and_decides_itself(
    store_redis, broker, round_trips
):
    held = Item.objects.create(name="held", position=0)
    (oid,) = groups(1)
    broker.redis.delete("reactive-unconsumed")
    before = round_trips()
    Item.objects.create(name="elsewhere", position=7)
    signals.flush()
    # The lookup, then its touch-and-queue, then the one evaluate task: no dispatch.
    assert round_trips() - before == 2
    assert sent(broker) == [(EVALUATE, oid)]
    version = observers.load(oid).version
    evaluations = stat(store_redis, keys.stats_evaluations())
    tasks.evaluate(oid)  # its probe finds the new row outside group 0: no evaluation
    assert stat(store_redis, keys.stats_evaluations()) == evaluations
    assert observers.load(oid).version == version
    broker.redis.delete("reactive-unconsumed")
    held.name = "renamed"
    held.save()
    tasks.evaluate(sent(broker)[0][1])  # a row it holds: evaluated
    assert observers.load(oid).version == version + 1


def test_the_commit_stamp_reaches_only_the_observers_the_dispatch_queues(store_redis, broker):
    oids = groups(3)
    before = time.time()
    Item.objects.create(name="new", position=1)
    after = time.time()
    assert store_redis.exists(*(keys.committed(oid) for oid in oids)) == 0
    run_dispatches(broker)
    assert store_redis.exists(keys.committed(oids[0]), keys.committed(oids[2])) == 0
    # The commit's time, carried by its token, not the dispatch's.
    assert before <= float(store_redis.get(keys.committed(oids[1]))) <= after


def test_a_commit_stamps_what_it_queues_in_the_same_script(store_redis, broker, round_trips):
    oids = groups(3)
    notify(Item)  # loads the scripts
    run_queued(broker)
    before = round_trips()
    notify(Item)
    signals.flush()
    assert round_trips() - before == 2  # dependents, touch-and-queue with the stamps
    assert store_redis.exists(*(keys.committed(oid) for oid in oids)) == 3


def test_a_dispatch_that_queues_every_candidate_is_counted(store_redis, broker):
    items = [Item.objects.create(name=f"i{g}", position=g) for g in range(2)]
    groups(2)
    with transaction.atomic():
        for item in items:
            item.save()
    run_dispatches(broker)
    assert stat(store_redis, keys.stats_dispatches()) == 1
    assert stat(store_redis, keys.stats_probes()) == 0  # both held their row: no probe
