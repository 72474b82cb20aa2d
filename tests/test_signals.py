"""Writes mark tables; one on_commit callback per transaction queues dependent observers.

Callbacks are captured with pytest-django's ``django_capture_on_commit_callbacks``;
the evaluations they queue land in the real broker (Redis db 1).
"""

import json
import logging

import pytest
from django.core import serializers
from django.db import connection, transaction

from reactive_celery import signals
from reactive_celery.signals import notify
from reactive_celery.store import locks, observers
from tests.conftest import UNCONSUMED
from tests.testapp.models import Category, Item, Tag

pytestmark = pytest.mark.django_db


def pending_tables(callbacks) -> list[set[str]]:
    return [set(callback.tables) for callback in callbacks]


def observing(oid: str, *tables: str) -> None:
    observers.save(oid, spec="{}", items=[], meta={}, version=1, tables=tables, creator="")


def test_a_save_marks_its_table_for_the_commit(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        Item.objects.create(name="a")
    assert pending_tables(callbacks) == [{"testapp_item"}]


def test_one_callback_per_transaction_holds_every_table_written(
    django_capture_on_commit_callbacks,
):
    with django_capture_on_commit_callbacks() as callbacks:
        category = Category.objects.create(name="c")
        Item.objects.create(name="a", category=category)
        Item.objects.create(name="b")
        Tag.objects.filter(pk=0).delete()  # no rows, no signal
        Category.objects.get().delete()
    assert pending_tables(callbacks) == [{"testapp_category", "testapp_item"}]


def test_a_rolled_back_write_leaves_no_callback_and_the_next_one_gets_its_own(
    django_capture_on_commit_callbacks,
):
    with django_capture_on_commit_callbacks() as callbacks:
        with pytest.raises(ZeroDivisionError), transaction.atomic():
            Item.objects.create(name="rolled back")
            raise ZeroDivisionError
        assert connection.run_on_commit == []
        Tag.objects.create(name="kept")
    assert pending_tables(callbacks) == [{"testapp_tag"}]


@pytest.mark.parametrize(
    ("action", "linked"),
    [("add", False), ("remove", True), ("clear", True), ("set", True)],
)
def test_m2m_changes_mark_the_through_table(django_capture_on_commit_callbacks, action, linked):
    # bulk_create sends no signals: only the m2m change below is marked.
    (item,) = Item.objects.bulk_create([Item(name="a")])
    (tag,) = Tag.objects.bulk_create([Tag(name="t")])
    if linked:
        Item.tags.through.objects.bulk_create([Item.tags.through(item=item, tag=tag)])
    assert connection.run_on_commit == []
    with django_capture_on_commit_callbacks() as callbacks:
        if action == "clear":
            item.tags.clear()
        elif action == "set":
            item.tags.set([])
        else:
            getattr(item.tags, action)(tag)
    assert pending_tables(callbacks) == [{"testapp_item_tags"}]


def test_notify_takes_models_model_names_and_tables(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        notify(Item)
        notify("testapp.Tag", "testapp_category")
        notify("a_view_of_our_own", using="default")
    assert pending_tables(callbacks) == [
        {"testapp_item", "testapp_tag", "testapp_category", "a_view_of_our_own"}
    ]


def test_notify_without_targets_is_a_type_error_showing_the_usage():
    with pytest.raises(TypeError, match=r"at least one model or table, e\.g\. notify\(Task\)"):
        notify()
    assert connection.run_on_commit == []


def test_raw_saves_of_fixture_loading_are_ignored(django_capture_on_commit_callbacks):
    fixture = json.dumps([{"model": "testapp.tag", "pk": 5, "fields": {"name": "loaded"}}])
    with django_capture_on_commit_callbacks() as callbacks:
        for deserialized in serializers.deserialize("json", fixture):
            deserialized.save()  # Model.save_base(raw=True), as loaddata does
    assert Tag.objects.get(pk=5).name == "loaded"
    assert callbacks == []


def test_disconnected_receivers_mark_nothing(django_capture_on_commit_callbacks):
    signals.disconnect()
    try:
        with django_capture_on_commit_callbacks() as callbacks:
            Item.objects.create(name="silent")
    finally:
        signals.connect()
    assert callbacks == []
    with django_capture_on_commit_callbacks() as callbacks:
        Item.objects.create(name="heard")
    assert len(callbacks) == 1


def test_the_commit_queues_one_evaluation_per_dependent_observer_not_queued(
    django_capture_on_commit_callbacks, store_redis, broker
):
    observing("reads-items", "testapp_item")
    observing("reads-both", "testapp_item", "testapp_tag")
    observing("already-queued", "testapp_item")
    observing("reads-tags", "testapp_tag")
    store_redis.set("rc:queued:already-queued", "1")
    with django_capture_on_commit_callbacks(execute=True):
        Item.objects.create(name="a")
        Item.objects.create(name="b")
    messages = broker.messages()
    assert sorted(m["args"][0] for m in messages) == ["reads-both", "reads-items"]
    assert {m["headers"]["task"] for m in messages} == {"reactive_celery.evaluate"}
    assert store_redis.exists("rc:queued:reads-items", "rc:queued:reads-both") == 2
    assert not store_redis.exists("rc:queued:reads-tags")
    # A second commit before the tasks start queues nothing more.
    with django_capture_on_commit_callbacks(execute=True):
        Item.objects.create(name="c")
    assert len(broker.messages()) == 2


def test_enqueue_dependents_returns_what_it_queued(store_redis, broker):
    observing("o1", "t1")
    observing("o2", "t2")
    assert sorted(signals.enqueue_dependents({"t1", "t2", "t3"})) == ["o1", "o2"]
    assert signals.enqueue_dependents({"t1"}) == []
    assert sorted(m["args"][0] for m in broker.messages()) == ["o1", "o2"]


def test_a_failing_enqueue_is_logged_and_does_not_raise(store_redis, broker, caplog):
    observing("o1", "testapp_item")
    broker.redis.set(UNCONSUMED, "not a list")  # the broker refuses every message (WRONGTYPE)
    with caplog.at_level(logging.ERROR, logger="reactive_celery.signals"):
        assert signals.enqueue_dependents({"testapp_item"}) == []
    (record,) = caplog.records
    assert "could not queue evaluations for observers ['o1']" in record.getMessage()
    assert record.exc_info is None  # one line, no traceback per commit


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_writes_and_notify_queue_at_once(store_redis, broker):
    observing("o1", "testapp_item")
    notify(Item)
    assert [m["args"] for m in broker.messages()] == [["o1"]]
    store_redis.delete("rc:queued:o1")  # its evaluate task started
    Item.objects.create(name="autocommit")
    assert [m["args"] for m in broker.messages()] == [["o1"], ["o1"]]


def test_after_a_failed_enqueue_the_next_change_is_queued(store_redis, broker):
    observers.save("o1", spec="{}", items=[], meta={}, version=1, tables=["t"], creator="")
    broker.redis.set(UNCONSUMED, "not a list")  # the broker refuses the message
    assert signals.enqueue_dependents({"t"}) == []
    broker.redis.delete(UNCONSUMED)  # the broker is back
    # The observer queued for the lost task goes with the next change, not after the flag's TTL.
    assert "o1" in signals.enqueue_dependents({"t"})
    assert [m["args"] for m in broker.messages()] == [["o1"]]


# --- primary keys -----------------------------------------------------------------


def test_saves_and_deletes_carry_their_primary_keys_to_the_commit(
    django_capture_on_commit_callbacks,
):
    with django_capture_on_commit_callbacks() as callbacks:
        a = Item.objects.create(name="a")
        b = Item.objects.create(name="b")
        b_pk = b.pk
        b.delete()  # the receiver reads the pk before delete() clears it
    (callback,) = callbacks
    assert callback.pks == {"testapp_item": {str(a.pk), str(b_pk)}}


def test_an_m2m_change_or_a_plain_notify_marks_the_whole_table(
    django_capture_on_commit_callbacks,
):
    with django_capture_on_commit_callbacks() as callbacks:
        item = Item.objects.create(name="a")
        tag = Tag.objects.create(name="t")
        item.tags.add(tag)
        notify(Item)
        Item.objects.create(name="c")  # after a whole-table notice, rows add nothing
    (callback,) = callbacks
    assert callback.pks == {
        "testapp_item": None,
        "testapp_item_tags": None,
        "testapp_tag": {str(tag.pk)},
    }


def test_notify_takes_primary_keys(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        notify("testapp_item", pks=[3, 5])
        notify(Item, pks=["7"])
    (callback,) = callbacks
    assert callback.pks == {"testapp_item": {"3", "5", "7"}}


def test_notify_refuses_a_string_for_pks(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks, pytest.raises(TypeError, match="list"):
        notify(Item, pks="35")
    assert callbacks == []


def test_more_keys_than_the_cap_mark_the_whole_table(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        notify(Item, pks=range(locks.TOUCHED_CAP + 1))
    (callback,) = callbacks
    assert callback.pks == {"testapp_item": None}


def test_the_commit_records_the_keys_for_each_dependent_observer(
    store_redis, broker, django_capture_on_commit_callbacks
):
    observing("o1", "testapp_item")
    with django_capture_on_commit_callbacks(execute=True):
        item = Item.objects.create(name="a")
    signals.flush()  # outside a request the sender thread runs the script
    assert store_redis.smembers("rc:touched:o1") == {f"testapp_item:{item.pk}"}
    assert [m["args"] for m in broker.messages()] == [["o1"]]
