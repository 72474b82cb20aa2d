"""Precise invalidation over the real Redis and broker: evaluations counted per write.

Observers are created by a first full evaluation; each write then commits,
its evaluate tasks land in the real broker, and each queued task is run
in-process with ``observer.refresh``, as a worker would.
"""

import json

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.db import transaction

from reactive_celery import invalidation, observer, signals, tasks
from reactive_celery.invalidation import Invalidation
from reactive_celery.signals import notify
from reactive_celery.spec import ObserverSpec
from reactive_celery.store import keys, locks, observers
from tests.specs import spec_for
from tests.test_observer import Requeues
from tests.testapp.models import Category, Item

# Real commits: each write's on_commit runs as in production (autocommit or atomic()).
pytestmark = pytest.mark.django_db(transaction=True)


def start(spec: ObserverSpec) -> str:
    """An observer after its first, full evaluation (its tables stored).

    The writes before it are sent first: a send landing after the observer
    exists would queue it for rows it was created after.
    """
    signals.flush()
    observers.save(
        spec.id, spec=spec.to_json(), items=[], meta={}, version=1, tables=[], creator=""
    )
    observer.refresh(spec.id, retry=False, requeue=Requeues())
    return spec.id


def evaluations(oids) -> list[int]:
    return [observers.load(oid).evaluations for oid in oids]


def changed(oids, before) -> list[int]:
    """Evaluations of each observer since ``before`` was counted."""
    return [now - then for now, then in zip(evaluations(oids), before, strict=True)]


def run_queued(broker) -> None:
    """What a worker would do with the tasks the commits sent, until none is left.

    Dispatch tasks run first (a worker takes them in order; a dispatch queues
    evaluations behind it).
    """
    while messages := broker.messages():
        broker.redis.delete("reactive-unconsumed")
        for message in messages:
            if message["headers"]["task"] == "reactive_celery.dispatch":
                tasks.dispatch(*message["args"])
            else:
                observer.refresh(message["args"][0], retry=False, requeue=Requeues())


def groups(n=10) -> list[str]:
    return [
        start(spec_for("/api/groups/", "GroupItemViewSet", query=[("position", str(g))]))
        for g in range(n)
    ]


def test_an_update_in_one_group_evaluates_one_of_ten_observers(store_redis, broker):
    items = [Item.objects.create(name=f"i{g}", position=g) for g in range(10)]
    oids = groups()
    before = evaluations(oids)
    items[3].name = "renamed"
    items[3].save()
    run_queued(broker)
    assert changed(oids, before) == [0, 0, 0, 1, 0, 0, 0, 0, 0, 0]
    assert observers.load(oids[3]).items[0]["name"] == "renamed"
    assert int(store_redis.get(keys.stats_skipped())) == 9


def test_a_row_moving_into_a_filter_is_picked_up_and_out_of_the_old_one(store_redis, broker):
    item = Item.objects.create(name="mover", position=1)
    oids = groups(4)
    before = evaluations(oids)
    item.position = 2
    item.save()
    run_queued(broker)
    assert changed(oids, before) == [0, 1, 1, 0]
    assert observers.load(oids[1]).items == []
    assert [i["name"] for i in observers.load(oids[2]).items] == ["mover"]


def test_a_delete_evaluates_only_the_observer_that_held_the_row(store_redis, broker):
    items = [Item.objects.create(name=f"i{g}", position=g) for g in range(3)]
    oids = groups(3)
    before = evaluations(oids)
    items[0].delete()
    run_queued(broker)
    assert changed(oids, before) == [1, 0, 0]
    assert observers.load(oids[0]).items == []


def test_a_create_evaluates_only_the_observer_whose_filter_matches(store_redis, broker):
    oids = groups(3)
    before = evaluations(oids)
    Item.objects.create(name="new", position=2)
    run_queued(broker)
    assert changed(oids, before) == [0, 0, 1]


def test_a_table_level_notify_still_evaluates_every_observer(store_redis, broker):
    Item.objects.create(name="a", position=0)
    oids = groups(5)
    before = evaluations(oids)
    Item.objects.update(name="bulk")
    notify(Item)
    run_queued(broker)
    assert changed(oids, before) == [1] * 5


def test_notify_with_pks_evaluates_what_those_rows_concern(store_redis, broker):
    items = [Item.objects.create(name=f"i{g}", position=g) for g in range(3)]
    oids = groups(3)
    before = evaluations(oids)
    Item.objects.filter(pk=items[1].pk).update(name="bulk")
    notify("testapp_item", pks=[items[1].pk])
    run_queued(broker)
    assert changed(oids, before) == [0, 1, 0]
    assert observers.load(oids[1]).items[0]["name"] == "bulk"


def test_a_bulk_transaction_coalesces_into_one_evaluation_per_concerned_observer(
    store_redis, broker
):
    oids = groups(3)
    before = evaluations(oids)
    with transaction.atomic():
        for n in range(50):
            Item.objects.create(name=f"n{n}", position=n % 2)
    run_queued(broker)
    assert changed(oids, before) == [1, 1, 0]
    assert len(observers.load(oids[0]).items) == 25


def test_a_change_to_an_already_queued_observer_is_considered_too(store_redis, broker):
    first = Item.objects.create(name="first", position=5)
    (oid,) = groups(1)  # position 0
    first.name = "untouched group"
    first.save()
    Item.objects.create(name="joins", position=0)  # queued already: coalesced
    assert len(broker.messages()) == 1
    run_queued(broker)
    assert [i["name"] for i in observers.load(oid).items] == ["joins"]


def test_a_change_during_an_evaluation_is_decided_on_the_rerun(store_redis, broker):
    (oid,) = groups(1)
    assert locks.begin(oid, "holder").acquired
    locks.queue_dependents(["testapp_item"], {"testapp_item": ["999"]})
    assert not locks.begin(oid, "their-task").acquired  # marks it dirty for the holder
    assert locks.rerun(oid, "holder").touched == ("testapp_item:999",)
    assert locks.rerun(oid, "holder").touched is None


def test_a_precise_refresh_reads_the_observer_once_for_the_decision_and_the_evaluation(
    store_redis, broker, round_trips
):
    item = Item.objects.create(name="a", position=0)
    (oid,) = groups(1)

    def renamed(name: str) -> int:
        locks.queue_dependents(["testapp_item"], {"testapp_item": [str(item.pk)]})
        Item.objects.filter(pk=item.pk).update(name=name)
        signals.flush()  # what the update's own commit sends, before counting
        before = round_trips()
        observer.refresh(oid, retry=False, requeue=Requeues())
        made = round_trips() - before
        assert [i["name"] for i in observers.load(oid).items] == [name]
        return made

    renamed("first")  # classifies the observer
    # begin, load (the row it holds decides it), the commit stamp (metrics), its
    # subscribers (a shared observer's permissions), save, and one script that
    # releases the lock, answers waiting clients and clears the crash count.
    assert renamed("second") == 6


def test_other_tables_a_view_reads_keep_table_level_invalidation(store_redis, broker):
    category = Category.objects.create(name="c")
    Item.objects.create(name="a", category=category)
    unrelated = Category.objects.create(name="unrelated")
    oid = start(spec_for("/api/detailed/", "DetailedItemViewSet"))
    before = observers.load(oid).evaluations
    unrelated.name = "renamed"
    unrelated.save()  # no item shows it, but categories are not the primary table
    run_queued(broker)
    assert observers.load(oid).evaluations == before + 1


@pytest.mark.parametrize(
    ("path", "view", "reason"),
    [
        ("/api/paged/", "PagedItemViewSet", "paginated"),
        ("/api/annotated/", "AnnotatedItemViewSet", "distinct() on annotations"),
        ("/api/slow/", "SlowItemViewSet", "its own list method"),
    ],
)
def test_views_that_cannot_be_probed_are_classified_with_the_reason(path, view, reason):
    spec = spec_for(path, view)
    found = invalidation.classify(spec, invalidation.build_view(spec, AnonymousUser()))
    assert not found.precise
    assert reason in found.reason


def test_a_filtered_list_is_probed_on_its_model_table():
    spec = spec_for("/api/groups/", "GroupItemViewSet", query=[("position", "1")])
    found = invalidation.classify(spec, invalidation.build_view(spec, AnonymousUser()))
    assert found == Invalidation(table="testapp_item")


def test_a_fallback_view_evaluates_on_every_write_and_stores_the_reason(store_redis, broker):
    Item.objects.create(name="a", position=0)
    other = Item.objects.create(name="b", position=1)
    oid = start(spec_for("/api/annotated/", "AnnotatedItemViewSet"))
    before = observers.load(oid).evaluations
    for n in range(3):
        other.name = f"b{n}"
        other.save()
        run_queued(broker)
    assert observers.load(oid).evaluations == before + 3
    stored = json.loads(store_redis.hget(keys.observer(oid), invalidation.FIELD))
    assert "distinct() on annotations" in stored["reason"]


def test_a_per_user_observer_probes_as_its_user(store_redis, broker):
    users = [User.objects.create_user(f"u{n}") for n in range(3)]
    items = [Item.objects.create(name=f"i{n}", owner=user) for n, user in enumerate(users)]
    oids = [start(spec_for("/api/own/", "OwnItemViewSet", user=str(u.pk))) for u in users]
    before = evaluations(oids)
    items[2].owner = users[1]
    items[2].save()
    run_queued(broker)
    assert changed(oids, before) == [0, 1, 1]


def test_turned_off_every_observer_of_the_table_is_evaluated(store_redis, broker, settings):
    settings.REACTIVE_CELERY = {**settings.REACTIVE_CELERY, "PRECISE_INVALIDATION": False}
    item = Item.objects.create(name="a", position=0)
    oids = groups(4)
    before = evaluations(oids)
    item.save()
    run_queued(broker)
    assert changed(oids, before) == [1, 1, 1, 1]


def test_a_probe_that_raises_falls_back_to_an_evaluation(store_redis, caplog):
    assert invalidation.affects("no-such-observer", ["testapp_item:1"]) is True
    observers.save("broken", spec="{}", items=[], meta={}, version=1, tables=[], creator="")
    assert invalidation.affects("broken", ["testapp_item:1"]) is True
    assert len([r for r in caplog.records if "fell back" in r.getMessage()]) == 1


def test_no_touched_entries_or_a_whole_table_mean_an_evaluation():
    assert invalidation.affects("o", ()) is True
    assert invalidation.affects("o", [locks.ANY]) is True
