"""The wire format: message types, frames, error and close codes, id formats.

Three kinds of message, all JSON objects with a ``type`` (docs/protocol.md):

    group message  worker -> ASGI process, over the channel layer: ``reactive.diff``,
                   ``reactive.error`` (the consumer's handler is the type with ``_``)
    seed frame     server -> browser on ``ws/<id>``: one ``msg`` per changed item
    batched frame  both ways on ``ws/reactive/``: requests and their answers, one
                   ``diff`` per evaluation

``reactive.js`` speaks the batched protocol; a test holds its types and codes
against this module.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from .diff import Change, Item

__all__ = [
    "CLOSE_BAD_ID",
    "CLOSE_CODES",
    "CLOSE_FOREIGN_ID",
    "CLOSE_REASONS",
    "CLOSE_SESSION_ENDED",
    "CLOSE_STATE_LOST",
    "CLOSE_TOO_MANY",
    "CLOSE_UNAVAILABLE",
    "CODE_ERRORS",
    "Frame",
    "GROUP_DIFF",
    "GROUP_ERROR",
    "GROUP_SYNCED",
    "MAX_URL",
    "OBSERVER_ID",
    "REQUESTS",
    "REQUEST_ERRORS",
    "SEED_MESSAGES",
    "SERVER_FRAMES",
    "STATUS_ERRORS",
    "STOP_CODES",
    "SUBSCRIBER_ID",
    "TOO_MANY_SUBSCRIPTIONS",
    "apply_batch",
    "batch",
    "batched_diff",
    "batched_diffs",
    "batched_stop",
    "diff_message",
    "request_error",
    "seed_diffs",
    "seed_error",
    "seed_stop",
    "stop_message",
    "synced_message",
]

#: A JSON object on the wire.
Frame = dict[str, Any]

# --- group messages (channel layer) ---------------------------------------------

#: One evaluation's changes, sent to the observer's group.
GROUP_DIFF = "reactive.diff"
#: The observer stopped; its subscriptions end.
GROUP_ERROR = "reactive.error"
#: The observer caught up with every committed write (only sent when a client asked).
GROUP_SYNCED = "reactive.synced"

# --- batched frames ---------------------------------------------------------------

#: Requests a client sends on ``ws/reactive/``.
REQUESTS = frozenset({"subscribe", "unsubscribe", "ping", "sync"})
#: Frames the server sends on ``ws/reactive/``.
SERVER_FRAMES = frozenset(
    {"subscribed", "unsubscribed", "pong", "diff", "error", "synced", "sync_pending"}
)

# --- seed frames ------------------------------------------------------------------

#: The ``msg`` of seed frames: one per changed item, or the observer's stop.
SEED_MESSAGES = frozenset({"added", "changed", "removed", "error"})

# --- codes ------------------------------------------------------------------------

#: Why an observer stopped: an ``error`` frame with an ``observer`` ends the subscription.
STOP_CODES = frozenset({"forbidden", "gone", "timeout", "error", "crashed"})

#: Why one request was refused: an ``error`` frame with the request's ``id``.
REQUEST_ERRORS = frozenset(
    {
        "bad_json",
        "bad_message",
        "unknown_type",
        "bad_url",
        "not_reactive",
        "forbidden",
        "not_found",
        "not_subscribed",
        "too_large",
        "too_many_subscriptions",
        "rate_limited",
        "unavailable",
        "busy",
        "unsupported",
        "depends_on_user",
        "error",
    }
)

#: The request error of a view's HTTP status, when a socket subscribe runs it.
STATUS_ERRORS = {
    400: "bad_message",
    401: "forbidden",
    403: "forbidden",
    404: "not_found",
    409: "depends_on_user",
    429: "rate_limited",
    503: "unavailable",
}

#: The error code of a subscribe refused for ``MAX_SUBSCRIPTIONS`` (HTTP 429).
TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"

#: Request errors more precise than the status's, by the view's error code.
CODE_ERRORS = {
    # The socket's own process is behind on its inbox: retry soon, unlike a dead Redis.
    "reactive_busy": "busy",
    # Unsubscribe first: retrying does not help, unlike a rate.
    TOO_MANY_SUBSCRIPTIONS: "too_many_subscriptions",
}

#: A malformed subscriber id in ``ws/<id>``.
CLOSE_BAD_ID = 4400
#: The socket's session ended (logout, password change, user deactivated or deleted).
CLOSE_SESSION_ENDED = 4401
#: The subscriber id is held by another socket (another user's, or a live anonymous one).
CLOSE_FOREIGN_ID = 4403
#: The socket's subscriber state is gone (expired, Redis lost it): reconnect and resume.
CLOSE_STATE_LOST = 4408
#: Too many sockets for this user or client address.
CLOSE_TOO_MANY = 4429
#: The reactive store or channel layer (Redis) is unreachable: reconnect later.
CLOSE_UNAVAILABLE = 4503
#: The reason sent with each close code.
CLOSE_REASONS = {
    CLOSE_BAD_ID: "Malformed subscriber id.",
    CLOSE_SESSION_ENDED: "The session ended; sign in again.",
    CLOSE_FOREIGN_ID: "This subscriber id is held by another socket.",
    CLOSE_STATE_LOST: "The subscriber's state is gone; reconnect and resubscribe.",
    CLOSE_TOO_MANY: "Too many sockets for this user or address.",
    CLOSE_UNAVAILABLE: "Live updates are unavailable right now; reconnect later.",
}
CLOSE_CODES = frozenset(CLOSE_REASONS)

# --- ids --------------------------------------------------------------------------

#: A subscriber id: a client-chosen (seed) or server-issued random token.
SUBSCRIBER_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
#: An observer id: the sha256 of its spec.
OBSERVER_ID = re.compile(r"[0-9a-f]{64}")
#: The longest ``url`` a subscribe request may name.
MAX_URL = 2048


# --- group message builders -------------------------------------------------------


def diff_message(oid: str, version: int, primary_key: str, changes: list[Change]) -> Frame:
    """The group message of one evaluation's changes."""
    return {
        "type": GROUP_DIFF,
        "observer": oid,
        "version": version,
        "primary_key": primary_key,
        "changes": changes,
    }


def synced_message(oid: str, version: int) -> Frame:
    """The group message: the observer reflects every write committed before it."""
    return {"type": GROUP_SYNCED, "observer": oid, "version": version}


def stop_message(oid: str, code: str, message: str) -> Frame:
    """The group message telling subscribers their observer stopped."""
    return {"type": GROUP_ERROR, "observer": oid, "code": code, "message": message}


# --- seed frames ------------------------------------------------------------------


def seed_diffs(event: Frame) -> list[Frame]:
    """The seed frames of a ``reactive.diff`` message: one per changed item."""
    return [
        {
            "msg": change["msg"],
            "observer": event["observer"],
            "primary_key": event["primary_key"],
            "order": change["order"],
            "item": change["item"],
            "version": event["version"],
        }
        for change in event["changes"]
    ]


def seed_stop(event: Frame) -> Frame:
    """The seed frame of a ``reactive.error`` message."""
    return {
        "msg": "error",
        "observer": event["observer"],
        "code": event["code"],
        "error": event["message"],
    }


def seed_error(code: str, message: str) -> Frame:
    """The seed frame answering a client frame the seed protocol does not take."""
    return {"msg": "error", "code": code, "error": message}


# --- batched frames ---------------------------------------------------------------


def batch(changes: Sequence[Change], primary_key: str) -> dict[str, list[Any]]:
    """The batched form of ``diff``'s changes: removed keys, then upserts.

    ``moved`` entries carry the key only: the client already holds the data.
    """
    result: dict[str, list[Any]] = {"removed": [], "added": [], "changed": [], "moved": []}
    for change in changes:
        if change["msg"] == "removed":
            result["removed"].append(change["item"][primary_key])
        elif change.get("moved"):
            result["moved"].append({"order": change["order"], "pk": change["item"][primary_key]})
        else:
            result[change["msg"]].append({"order": change["order"], "item": change["item"]})
    return result


def apply_batch(items: Sequence[Item], frame: Frame, primary_key: str) -> list[Item]:
    """Apply a batched diff as docs/protocol.md says; the reference for clients."""
    removed = set(frame["removed"])
    result = [item for item in items if item[primary_key] not in removed]
    held = {item[primary_key]: item for item in result}
    upserts = [(e["order"], e["item"]) for e in frame["added"] + frame["changed"]]
    upserts += [(e["order"], held[e["pk"]]) for e in frame["moved"]]
    for order, item in sorted(upserts, key=lambda pair: pair[0]):
        key = item[primary_key]
        result = [current for current in result if current[primary_key] != key]
        result.insert(order, item)
    return result


def batched_diff(oid: str, version: int, primary_key: str, changes: list[Change]) -> Frame:
    """The batched ``diff`` frame of one evaluation's changes."""
    return {"type": "diff", "observer": oid, "version": version, **batch(changes, primary_key)}


def batched_diffs(event: Frame) -> list[Frame]:
    """The batched frames of a ``reactive.diff`` message: one ``diff``."""
    oid, version = event["observer"], event["version"]
    return [batched_diff(oid, version, event["primary_key"], event["changes"])]


def batched_stop(event: Frame) -> Frame:
    """The batched frame of a ``reactive.error`` message: the subscription ends."""
    return {
        "type": "error",
        "observer": event["observer"],
        "code": event["code"],
        "message": event["message"],
    }


def request_error(code: str, message: str) -> Frame:
    """The batched ``error`` frame refusing one request."""
    return {"type": "error", "code": code, "message": message}
