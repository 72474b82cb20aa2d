"""Observing lists: creates, updates, deletes, filters, ordering, pagination."""

import pytest

from tests.testapp.models import Item

pytestmark = [pytest.mark.e2e]


def test_create_update_delete_are_pushed(live):
    sock = live.socket()
    answer = live.observe("/api/items/", sock)
    assert answer["items"] == []
    base = answer["version"]
    assert answer["primary_key"] == "id"

    item = Item.objects.create(name="first")
    frame = sock.recv()
    assert frame["msg"] == "added"
    assert frame["order"] == 0
    assert frame["item"]["name"] == "first"
    assert frame["observer"] == answer["observer"]
    assert frame["version"] == base + 1

    item.name = "renamed"
    item.save()
    frame = sock.recv()
    assert (frame["msg"], frame["item"]["name"], frame["version"]) == (
        "changed",
        "renamed",
        base + 2,
    )

    pk = item.pk
    item.delete()
    frame = sock.recv()
    assert (frame["msg"], frame["item"]["id"], frame["version"]) == ("removed", pk, base + 3)


def test_two_creates_in_one_transaction_are_two_added_in_order(live):
    from django.db import transaction

    sock = live.socket()
    base = live.observe("/api/items/", sock)["version"]
    with transaction.atomic():
        a = Item.objects.create(name="a")
        b = Item.objects.create(name="b")
    frames = sock.recv_many(2)
    assert [(f["msg"], f["order"], f["item"]["id"]) for f in frames] == [
        ("added", 0, a.pk),
        ("added", 1, b.pk),
    ]
    assert frames[0]["version"] == frames[1]["version"] == base + 1


def test_the_initial_answer_holds_current_rows(live):
    Item.objects.create(name="x")
    sock = live.socket()
    answer = live.observe("/api/items/", sock)
    assert [item["name"] for item in answer["items"]] == ["x"]


def test_filter_adds_and_removes_items_crossing_it(live):
    hidden = Item.objects.create(name="hidden", enabled=False)
    sock = live.socket()
    answer = live.observe("/api/items/?enabled=True", sock)
    assert answer["items"] == []

    hidden.enabled = True
    hidden.save()
    frame = sock.recv()
    assert (frame["msg"], frame["item"]["id"]) == ("added", hidden.pk)

    hidden.enabled = False
    hidden.save()
    frame = sock.recv()
    assert (frame["msg"], frame["item"]["id"]) == ("removed", hidden.pk)

    # Rows outside the filter are never pushed: the next frame is the sentinel's.
    Item.objects.create(name="outside", enabled=False)
    sentinel = Item.objects.create(name="sentinel", enabled=True)
    frame = sock.recv()
    assert (frame["msg"], frame["item"]["id"]) == ("added", sentinel.pk)


def test_ordering_insert_first_shifts_orders(live):
    Item.objects.create(name="b")
    Item.objects.create(name="c")
    sock = live.socket()
    answer = live.observe("/api/items/?ordering=name", sock)
    assert [i["name"] for i in answer["items"]] == ["b", "c"]

    Item.objects.create(name="a")
    frame = sock.recv()
    assert (frame["msg"], frame["order"], frame["item"]["name"]) == ("added", 0, "a")


def test_ordering_change_moves_an_item(live):
    Item.objects.create(name="b")
    moving = Item.objects.create(name="c")
    sock = live.socket()
    live.observe("/api/items/?ordering=name", sock)
    moving.name = "a"
    moving.save()
    frame = sock.recv()
    assert (frame["msg"], frame["order"], frame["item"]["name"]) == ("changed", 0, "a")


def test_limit_offset_window_pulls_in_the_next_row(live):
    rows = [Item.objects.create(name=f"row{i:02}") for i in range(20)]
    sock = live.socket()
    answer = live.observe("/api/limited/?limit=10", sock)
    assert [i["id"] for i in answer["items"]] == [r.pk for r in rows[:10]]
    assert answer["count"] == 20
    assert "offset=10" in answer["next"]
    assert "observe=" not in answer["next"]  # the subscriber id stays private

    deleted = rows[2].pk
    rows[2].delete()
    frames = sock.recv_many(2)
    assert (frames[0]["msg"], frames[0]["order"], frames[0]["item"]["id"]) == (
        "removed",
        2,
        deleted,
    )
    assert (frames[1]["msg"], frames[1]["order"], frames[1]["item"]["id"]) == (
        "added",
        9,
        rows[10].pk,
    )


def test_page_number_pagination(live):
    rows = [Item.objects.create(name=f"row{i}") for i in range(7)]
    sock = live.socket()
    answer = live.observe("/api/paged/?page=2", sock)
    assert [i["id"] for i in answer["items"]] == [r.pk for r in rows[5:]]
    assert answer["count"] == 7
    new = Item.objects.create(name="row7")
    frame = sock.recv()
    assert (frame["msg"], frame["order"], frame["item"]["id"]) == ("added", 2, new.pk)


def test_retrieve_is_a_one_item_list(live):
    item = Item.objects.create(name="one")
    sock = live.socket()
    answer = live.observe(f"/api/items/{item.pk}/", sock)
    assert [i["name"] for i in answer["items"]] == ["one"]
    Item.objects.create(name="other")  # another row does not change this result
    item.name = "uno"
    item.save()
    frame = sock.recv()
    assert (frame["msg"], frame["item"]["name"]) == ("changed", "uno")
    item.delete()
    frame = sock.recv()
    assert frame["msg"] == "removed"


def test_custom_list_action(live):
    Item.objects.create(name="b")
    sock = live.socket()
    answer = live.observe("/api/items/enabled_names/", sock)
    assert [i["name"] for i in answer["items"]] == ["b"]
    Item.objects.create(name="a")
    frame = sock.recv()
    assert (frame["msg"], frame["order"], frame["item"]["name"]) == ("added", 0, "a")


def test_without_observe_the_view_is_unchanged(live):
    Item.objects.create(name="plain")
    response = live.http().get("/api/items/")
    assert response.status_code == 200
    assert [i["name"] for i in response.json()] == ["plain"]


def test_patch_over_http_on_another_server_is_pushed(live):
    item = Item.objects.create(name="before")
    sock = live.socket()
    live.observe("/api/items/", sock)
    # The write goes through the API of the other ASGI server, as a browser's would.
    response = live.http(port=live.ws_port).patch(f"/api/items/{item.pk}/", json={"name": "after"})
    assert response.status_code == 200, response.text
    frame = sock.recv()
    assert (frame["msg"], frame["item"]["id"], frame["item"]["name"]) == (
        "changed",
        item.pk,
        "after",
    )
