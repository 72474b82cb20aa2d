"""Pure tests of the diff: applying it to the old list gives the new list."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reactive_celery.diff import apply, diff


def items(keys, version=0):
    return [{"id": k, "v": version} for k in keys]


def test_equal_lists_give_no_changes():
    assert diff(items([1, 2, 3]), items([1, 2, 3]), "id") == []


def test_create_at_front_is_added_at_order_zero_and_shifts_the_rest():
    changes = diff(items([1, 2]), items([3, 1, 2]), "id")
    assert changes[0] == {"msg": "added", "order": 0, "item": {"id": 3, "v": 0}}
    assert [c["msg"] for c in changes] == ["added"]


def test_update_in_place_is_one_changed():
    old = items([1, 2])
    new = [{"id": 1, "v": 0}, {"id": 2, "v": 1}]
    assert diff(old, new, "id") == [{"msg": "changed", "order": 1, "item": {"id": 2, "v": 1}}]


def test_delete_is_removed_with_old_order_and_item():
    changes = diff(items([1, 2, 3]), items([1, 2]), "id")
    assert changes == [{"msg": "removed", "order": 2, "item": {"id": 3, "v": 0}}]


def test_removals_come_first_highest_order_first():
    changes = diff(items([1, 2, 3, 4]), items([2, 5]), "id")
    assert [(c["msg"], c["order"]) for c in changes] == [
        ("removed", 3),
        ("removed", 2),
        ("removed", 0),
        ("added", 1),
    ]


def test_missing_primary_key_is_a_clear_error():
    with pytest.raises(ValueError, match="primary_key="):
        diff([], [{"name": "x"}], "id")


def test_duplicate_primary_key_is_a_clear_error():
    with pytest.raises(ValueError, match="appears twice"):
        diff([], items([1, 1]), "id")


keyed_lists = st.lists(
    st.tuples(st.integers(0, 30), st.integers(0, 2)), unique_by=lambda pair: pair[0], max_size=25
).map(lambda pairs: [{"id": k, "v": v} for k, v in pairs])


@given(keyed_lists, keyed_lists)
def test_applying_the_diff_gives_the_new_list(old, new):
    assert apply(old, diff(old, new, "id"), "id") == new


@given(keyed_lists, st.data())
def test_data_edits_mention_only_the_edited_items(old, data):
    edited = {item["id"] for item in old if data.draw(st.booleans())}
    new = [{"id": i["id"], "v": i["v"] + (i["id"] in edited)} for i in old]
    changes = diff(old, new, "id")
    assert {c["item"]["id"] for c in changes} == edited
    assert all(c["msg"] == "changed" for c in changes)


@given(keyed_lists, st.integers(0, 30))
def test_deleting_one_row_costs_one_removal(old, position):
    new = [item for i, item in enumerate(old) if i != position]
    assert len(diff(old, new, "id")) == (1 if position < len(old) else 0)
