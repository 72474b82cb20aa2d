"""Every Redis key reactive_celery writes, one builder each.

All keys start with ``KEY_PREFIX`` and all have a lifetime::

    obs:<oid>          hash  spec, items, meta, version, tables, declared, creator,
                             evaluations, poll (its interval)
    obs:<oid>:subs     set   subscriber ids
    obs:<oid>:log      list  the last REPLAY_BUFFER diffs, newest first (JSON)
    sub:<sid>          hash  channel, user, address
    sub:<sid>:obs      set   observer ids (never outlives sub:<sid>)
    rate:<sid>         count subscribe requests in the current second
    sockets:user:<pk>  zset  live subscriber ids of a user, scored by expiry (ms)
    sockets:addr:<ip>  zset  live subscriber ids of a client address, scored by expiry (ms)
    dep:<table>        set   observer ids that read the table (index)
    queued:<oid>       flag  an evaluate task is waiting in the broker
    committed:<oid>    time  the earliest commit not yet evaluated (metrics only)
    lock:<oid>         token the evaluation in progress
    dirty:<oid>        flag  a change arrived during the evaluation
    retry:<oid>        flag  a contended task scheduled a retry
    waiting:<oid>      flag  a client waits to hear that the observer caught up
    starts:<oid>       count evaluations started and not finished (crash cap)
    touched:<oid>      set   "<table>:<pk>" or "<table>:*" changed since the last evaluation
    precise:<table>    set   observer ids classified precise on the table (index)
    probe:<table>:pks  set   primary keys written, waiting for the table's dispatch (index)
    probe:<table>:tokens hash first / last token of the commits waiting for it (index)
    probe:<table>:pending token the last commit left to the dispatch; cleared by the
                             dispatch that took it (index)
    probe:<table>:waiting set observers whose clients wait for that dispatch (index)
    probe:<table>:queued flag the table's dispatch task waits in the broker (index)
    probe:<table>:taken:<task>:pks / :tokens   what a running dispatch took (kept for a
                             redelivery of its task should its worker die) (index)
    watch              zset  observers being created, scored by expiry: queued for any table (index)
    poll               zset  polling observer ids, scored by next due time (index)
    stats:evaluations  count evaluations finished
    stats:timings      list  recent evaluation times in ms
    stats:errors       list  recent stopped observers (JSON)
    stats:skipped      count changes that precise invalidation found to concern no result
    stats:dispatches   count probe dispatches that decided for observers
    stats:probes       count probe queries those dispatches ran

Lua scripts get every key they touch from these builders through ``KEYS``,
never from a prefix inside the script. Values are JSON or plain strings.

When ``REDIS_URL`` names a cluster (``redis+cluster://``) the observer or
subscriber id in a key becomes a hash tag (``obs:{<oid>}:subs``), so the keys
of one observer, or of one subscriber, share a slot and a script over them
runs on one node. The index (``dep:<table>``, ``precise:<table>``, the
``probe:<table>:*`` keys, ``watch``, ``poll``) shares the tag ``{index}``
(``dep:{index}:<table>``): a commit's lookup of its tables, the watched
observers and what it leaves to the tables' dispatches stay one atomic
script, and the poll claim one script over the schedule. The index holds
ids and pending primary keys only, so one slot of it is small; results,
replay buffers and subscribers spread over the masters.
``sockets:*`` and ``stats:*`` keys each hash on their own. On one server or
behind Sentinel the names stay as above: a deployment that moves to a
cluster starts from an empty store anyway.

No script touches keys of two slots. Where an operation spans slots (an
observer and the index, a subscriber and its observers, a subscriber and its
socket caps) the cluster path runs one script per slot, in an order whose
crash leaves only entries that the sweep or a lifetime removes; each
function says why its order is safe (docs/deployment.md has the table).
On one server the single script, and its round trips, stay.
"""

from __future__ import annotations

import math
import re

from ..conf import reactive_settings

__all__ = [
    "INDEX_TAG",
    "clustered",
    "committed",
    "dependents",
    "dirty",
    "id_in",
    "lock",
    "observer",
    "observer_log",
    "observer_state",
    "observer_subscribers",
    "pattern",
    "poll",
    "prefix",
    "precise",
    "probe_pending",
    "probe_pks",
    "probe_queued",
    "probe_taken",
    "probe_tokens",
    "probe_tokens_pattern",
    "probe_waiting",
    "queued",
    "retry",
    "sockets_of_address",
    "sockets_of_user",
    "starts",
    "stats_dispatches",
    "stats_errors",
    "stats_evaluations",
    "stats_probes",
    "stats_skipped",
    "stats_timings",
    "subscribe_rate",
    "subscriber",
    "subscriber_observers",
    "table_of_probe_tokens",
    "touched",
    "ttl_seconds",
    "waiting",
    "watch",
]


def ttl_seconds(value: float) -> int:
    """Whole seconds for EXPIRE; never 0, which would delete the key at once."""
    return max(1, math.ceil(value))


def prefix() -> str:
    """What every key starts with, separator included."""
    return f"{reactive_settings.KEY_PREFIX}:"


def _key(*parts: str) -> str:
    return prefix() + ":".join(parts)


def clustered() -> bool:
    """Whether ``REDIS_URL`` names a Redis Cluster, so per-id keys carry hash tags."""
    url = reactive_settings.REDIS_URL
    return isinstance(url, str) and url.startswith("redis+cluster://")


def _tag(id_: str) -> str:
    # Braces make Redis Cluster hash only the id: every key of one id lands in one slot.
    return f"{{{id_}}}" if clustered() else id_


#: The hash tag of the index keys on a cluster: they share one slot.
INDEX_TAG = "{index}"


def _index(*parts: str) -> str:
    # dep:{index}:<table>: the first braces decide the slot, the table name follows.
    return _key(parts[0], INDEX_TAG, *parts[1:]) if clustered() else _key(*parts)


def observer(oid: str) -> str:
    """The observer's hash: spec, result, version, tables, creator."""
    return _key("obs", _tag(oid))


def observer_subscribers(oid: str) -> str:
    """The set of subscriber ids following the observer."""
    return _key("obs", _tag(oid), "subs")


def observer_log(oid: str) -> str:
    """The observer's replay buffer of recent diffs."""
    return _key("obs", _tag(oid), "log")


def subscriber(sid: str) -> str:
    """The subscriber's hash: its socket's channel and user."""
    return _key("sub", _tag(sid))


def subscriber_observers(sid: str) -> str:
    """The set of observer ids the subscriber follows."""
    return _key("sub", _tag(sid), "obs")


def subscribe_rate(sid: str) -> str:
    """Subscribe requests of a subscriber in the current second."""
    return _key("rate", _tag(sid))


def sockets_of_user(user: str) -> str:
    """Live subscriber ids of a signed-in user."""
    return _key("sockets", "user", user)


def sockets_of_address(address: str) -> str:
    """Live subscriber ids of a client address."""
    return _key("sockets", "addr", address)


def dependents(table: str) -> str:
    """The set of observer ids that read ``table``."""
    return _index("dep", table)


def queued(oid: str) -> str:
    """Set while an evaluate task for the observer waits in the broker."""
    return _key("queued", _tag(oid))


def committed(oid: str) -> str:
    """The time of the earliest commit the observer's next evaluation delivers (metrics)."""
    return _key("committed", _tag(oid))


def lock(oid: str) -> str:
    """The token of the evaluation (or subscription) holding the observer."""
    return _key("lock", _tag(oid))


def dirty(oid: str) -> str:
    """Set when a change arrived while the observer's lock was held."""
    return _key("dirty", _tag(oid))


def retry(oid: str) -> str:
    """Set while a contended task's retry is scheduled."""
    return _key("retry", _tag(oid))


def waiting(oid: str) -> str:
    """Set while a client waits to hear that the observer caught up with its writes."""
    return _key("waiting", _tag(oid))


def starts(oid: str) -> str:
    """Evaluations started and not finished (the crash cap)."""
    return _key("starts", _tag(oid))


def touched(oid: str) -> str:
    """What changed since the observer's evaluation began: table:pk entries, or table:*."""
    return _key("touched", _tag(oid))


def precise(table: str) -> str:
    """The observers classified precise on ``table``: a commit leaves them to its dispatch."""
    return _index("precise", table)


def probe_pks(table: str) -> str:
    """Primary keys of ``table`` written since its dispatch last took them."""
    return _index("probe", table, "pks")


def probe_tokens(table: str) -> str:
    """The first and the last token of the commits waiting for ``table``'s dispatch."""
    return _index("probe", table, "tokens")


def probe_pending(table: str) -> str:
    """The last commit's token left to ``table``'s dispatch; the dispatch that took it clears it."""
    return _index("probe", table, "pending")


def probe_waiting(table: str) -> str:
    """Observers whose clients wait (``sync``) for ``table``'s dispatch to decide."""
    return _index("probe", table, "waiting")


def probe_queued(table: str) -> str:
    """Set while a dispatch task for ``table`` waits in the broker."""
    return _index("probe", table, "queued")


def probe_taken(table: str, task: str) -> tuple[str, str]:
    """The pks and the tokens a dispatch task took for ``table``, until it is done."""
    return (
        _index("probe", table, "taken", task, "pks"),
        _index("probe", table, "taken", task, "tokens"),
    )


def probe_tokens_pattern() -> str:
    """A SCAN pattern matching every table's ``probe_tokens`` key."""
    parts = ("probe", INDEX_TAG, "*", "tokens") if clustered() else ("probe", "*", "tokens")
    return pattern(*parts)


def table_of_probe_tokens(name: str) -> str:
    """The table in a ``probe_tokens`` key."""
    return name[len(prefix()) :].split(":")[2 if clustered() else 1]


def watch() -> str:
    """Observers being created, queued for a write to any table."""
    return _index("watch")


def poll() -> str:
    """The polling schedule: observer id -> Redis time it is next due."""
    return _index("poll")


def stats_evaluations() -> str:
    """Evaluations finished since the key was created."""
    return _key("stats", "evaluations")


def stats_skipped() -> str:
    """Evaluations precise invalidation left out: the change concerned no result."""
    return _key("stats", "skipped")


def stats_dispatches() -> str:
    """Probe dispatches that decided for at least one observer."""
    return _key("stats", "dispatches")


def stats_probes() -> str:
    """Probe queries run by dispatches (one per ``PROBE_CHUNK`` observers probed)."""
    return _key("stats", "probes")


def stats_timings() -> str:
    """Recent evaluation times in milliseconds, newest first."""
    return _key("stats", "timings")


def stats_errors() -> str:
    """Recent stopped observers (JSON), newest first."""
    return _key("stats", "errors")


def observer_state(oid: str) -> tuple[str, ...]:
    """The keys that go when an observer is dropped (dependency and poll entries aside)."""
    return (
        observer(oid),
        observer_subscribers(oid),
        observer_log(oid),
        queued(oid),
        dirty(oid),
        starts(oid),
    )


def pattern(*parts: str) -> str:
    """A SCAN pattern under the prefix; glob characters in the prefix match literally."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", prefix()) + ":".join(parts)


def id_in(name: str) -> str:
    """The id in a per-id key ``<prefix>kind:<id>[:suffix]``, without a cluster's braces."""
    return name[len(prefix()) :].split(":")[1].strip("{}")
