"""Dependencies captured from SQL: nested serializers, m2m, declared models."""

import pytest

from tests.testapp.models import Category, Item, Tag

pytestmark = [pytest.mark.e2e]


def test_change_to_a_nested_related_row_is_pushed(live):
    category = Category.objects.create(name="old")
    item = Item.objects.create(name="x", category=category)
    sock = live.socket()
    answer = live.observe("/api/detailed/", sock)
    assert answer["items"][0]["category"]["name"] == "old"

    category.name = "new"
    category.save()
    frame = sock.recv()
    assert frame["msg"] == "changed"
    assert frame["item"]["id"] == item.pk
    assert frame["item"]["category"]["name"] == "new"


def test_m2m_add_and_remove_are_pushed(live):
    item = Item.objects.create(name="x")
    tag = Tag.objects.create(name="red")
    sock = live.socket()
    live.observe("/api/detailed/", sock)

    item.tags.add(tag)
    frame = sock.recv()
    assert frame["item"]["tags"] == [{"id": tag.pk, "name": "red"}]

    item.tags.remove(tag)
    frame = sock.recv()
    assert frame["item"]["tags"] == []


def test_unrelated_table_queues_no_evaluation(live):
    sock = live.socket()
    answer = live.observe("/api/items/", sock)
    Tag.objects.create(name="unrelated")
    Category.objects.create(name="unrelated")
    item = Item.objects.create(name="sentinel")
    frame = sock.recv()
    assert frame["item"]["id"] == item.pk
    assert live.evaluations(answer["observer"]) == 1


def test_notify_pushes_writes_that_send_no_signal(live):
    from reactive_celery import notify

    item = Item.objects.create(name="before")
    sock = live.socket()
    live.observe("/api/items/", sock)
    Item.objects.filter(pk=item.pk).update(name="after")
    notify(Item)
    frame = sock.recv()
    assert (frame["msg"], frame["item"]["name"]) == ("changed", "after")
