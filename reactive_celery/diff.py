"""Differences between two ordered results, keyed by primary key.

``diff(old, new)`` returns changes in the seed's shape::

    {"msg": "removed" | "added" | "changed", "order": int, "item": {...}}

Removals come first, highest old order first; then additions and changes by
ascending new order. Applying them one by one (``apply``) turns ``old`` into
``new``. A ``changed`` that only moves the item carries ``"moved": True``.
An item the client already holds at its new position, with the same
data, is not mentioned: deleting one row of a page costs one ``removed``.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

__all__ = ["Change", "Item", "apply", "diff", "index_by_key"]

#: One row of a result, as the serializer gave it.
Item = dict[str, Any]
#: One step of a diff: ``{"msg", "order", "item"}`` (and ``"moved"``).
Change = dict[str, Any]


def index_by_key(items: Sequence[Item], primary_key: str) -> dict[Hashable, int]:
    """Map each item's key to its position; raise ``ValueError`` on a missing or repeated key."""
    index: dict[Hashable, int] = {}
    for order, item in enumerate(items):
        try:
            key = item[primary_key]
        except (KeyError, TypeError):
            raise ValueError(
                f"Item at position {order} has no primary key field {primary_key!r}; "
                f"pass primary_key= to @reactive or include the field in the serializer."
            ) from None
        if key in index:
            raise ValueError(f"Primary key {key!r} appears twice in the result.")
        index[key] = order
    return index


def diff(old: Sequence[Item], new: Sequence[Item], primary_key: str) -> list[Change]:
    """Changes that turn ``old`` into ``new``; empty when they are equal.

    Clients apply changes one at a time (the seed's clients do), so the diff
    replays that: after removals it walks ``new`` in order and mentions an item
    only when the client's list would not already hold it at that position.
    """
    old_index = index_by_key(old, primary_key)
    new_index = index_by_key(new, primary_key)
    changes: list[Change] = [
        {"msg": "removed", "order": order, "item": old[order]}
        for order in range(len(old) - 1, -1, -1)
        if old[order][primary_key] not in new_index
    ]
    current = [item for item in old if item[primary_key] in new_index]
    for order, item in enumerate(new):
        key = item[primary_key]
        if order < len(current) and current[order][primary_key] == key:
            if current[order] != item:
                changes.append({"msg": "changed", "order": order, "item": item})
                current[order] = item
            continue
        if key in old_index:
            position = next(
                i for i in range(order + 1, len(current)) if current[i][primary_key] == key
            )
            moved = current.pop(position) == item
            change = {"msg": "changed", "order": order, "item": item}
            if moved:
                change["moved"] = True
            changes.append(change)
        else:
            changes.append({"msg": "added", "order": order, "item": item})
        current.insert(order, item)
    return changes


def apply(items: Sequence[Item], changes: Sequence[Change], primary_key: str) -> list[Item]:
    """Apply changes one at a time, as a client does; the reference for clients."""
    result = list(items)
    for change in changes:
        key = change["item"][primary_key]
        current = next((i for i, item in enumerate(result) if item[primary_key] == key), None)
        if change["msg"] in ("removed", "changed") and current is not None:
            del result[current]
        if change["msg"] in ("added", "changed"):
            result.insert(change["order"], change["item"])
    return result
