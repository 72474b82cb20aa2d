"""An observer's stored state: its result, version, dependencies and replay buffer."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from redis import Redis

from ..conf import reactive_settings
from . import keys, stats
from .connection import client

__all__ = [
    "Observer",
    "drop",
    "from_hash",
    "load",
    "mark_precise",
    "note",
    "release",
    "replay",
    "save",
]


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


@dataclass(frozen=True)
class Observer:
    """An observer's stored state."""

    id: str
    spec: str
    items: list[dict[str, Any]]
    meta: dict[str, Any]
    version: int
    tables: list[str]
    #: The tables of ``dependencies=``, kept so that workers need not find the view's options.
    declared: list[str]
    creator: str
    evaluations: int
    #: How a change decides this observer (``invalidation.Invalidation`` as JSON), or "".
    invalidation: str = ""


def load(oid: str) -> Observer | None:
    """The stored observer, or None when it does not exist."""
    return from_hash(oid, cast(dict[str, str], client().hgetall(keys.observer(oid))))


def from_hash(oid: str, data: dict[str, str]) -> Observer | None:
    """The observer an ``HGETALL`` of its hash read, or None for a missing one."""
    if not data or "spec" not in data:
        return None
    return Observer(
        id=oid,
        spec=data["spec"],
        items=json.loads(data.get("items", "[]")),
        meta=json.loads(data.get("meta", "{}")),
        version=int(data.get("version", 0)),
        tables=json.loads(data.get("tables", "[]")),
        declared=json.loads(data.get("declared", "[]")),
        creator=data.get("creator", ""),
        evaluations=int(data.get("evaluations", 0)),
        invalidation=data.get("invalidation", ""),
    )


# KEYS: the observer hash, its replay log, the stats count and timings, then the
# dependency sets to leave, then those to join. ARGV: see ``save``.
# Returns 0 when ``must_exist`` and the observer was dropped meanwhile (nothing
# written but the statistics), else 1.
_SAVE = """
local must_exist, ttl, evaluated, oid = ARGV[1] == '1', ARGV[2], ARGV[3] == '1', ARGV[4]
local diff, buffer, elapsed, kept, stats_ttl = ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local nleave, njoin = tonumber(ARGV[10]), tonumber(ARGV[11])
if elapsed ~= '' then
  redis.call('INCR', KEYS[3])
  redis.call('LPUSH', KEYS[4], elapsed)
  redis.call('LTRIM', KEYS[4], 0, kept - 1)
  redis.call('EXPIRE', KEYS[3], stats_ttl)
  redis.call('EXPIRE', KEYS[4], stats_ttl)
end
if must_exist and redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'spec', ARGV[12], 'items', ARGV[13], 'meta', ARGV[14],
  'version', ARGV[15], 'tables', ARGV[16], 'declared', ARGV[17], 'creator', ARGV[18])
if evaluated then redis.call('HINCRBY', KEYS[1], 'evaluations', 1) end
redis.call('EXPIRE', KEYS[1], ttl)
for i = 5, 4 + nleave do redis.call('SREM', KEYS[i], oid) end
for i = 5 + nleave, 4 + nleave + njoin do
  redis.call('SADD', KEYS[i], oid)
  redis.call('EXPIRE', KEYS[i], ttl)
end
if diff ~= '' then
  redis.call('LPUSH', KEYS[2], diff)
  redis.call('LTRIM', KEYS[2], 0, buffer - 1)
  redis.call('EXPIRE', KEYS[2], ttl)
end
return 1
"""


def save(
    oid: str,
    *,
    spec: str,
    items: list[dict[str, Any]],
    meta: dict[str, Any],
    version: int,
    tables: Iterable[str],
    creator: str,
    declared: Iterable[str] = (),
    old_tables: Iterable[str] = (),
    evaluated: bool = False,
    must_exist: bool = False,
    diff: dict[str, Any] | None = None,
    elapsed: float | None = None,
) -> bool:
    """Write an observer's result and move its dependency entries to ``tables``.

    ``diff`` (version, primary_key, changes) goes into the replay buffer in the
    same script. With ``must_exist`` nothing is written, and False
    returned, when the observer was dropped meanwhile (its last subscriber left
    during an evaluation). ``elapsed`` (seconds) is the evaluation's time, kept in
    the statistics as ``stats.record_evaluation`` would: one round trip for both.
    """
    tables = sorted(set(tables))
    leave = sorted(set(old_tables) - set(tables))
    names = [
        keys.observer(oid),
        keys.observer_log(oid),
        keys.stats_evaluations(),
        keys.stats_timings(),
        *(keys.dependents(table) for table in leave),
        *(keys.dependents(table) for table in tables),
    ]
    args = [
        "1" if must_exist else "0",
        keys.ttl_seconds(reactive_settings.OBSERVER_TTL),
        "1" if evaluated else "0",
        oid,
        "" if diff is None else _dumps(diff),
        int(reactive_settings.REPLAY_BUFFER),
        "" if elapsed is None else f"{elapsed * 1000:.3f}",
        stats.TIMINGS_KEPT,
        stats.STATS_TTL,
        len(leave),
        len(tables),
        spec,
        _dumps(items),
        _dumps(meta),
        version,
        json.dumps(tables),
        json.dumps(sorted(set(declared))),
        creator,
    ]
    if keys.clustered():
        return _save_on_cluster(oid, names, args, tables, leave, must_exist=must_exist)
    # One script: a drop cannot land between the existence check and the write.
    return bool(client().register_script(_SAVE)(keys=names, args=args))


# The index's half of ``_SAVE`` on a cluster. KEYS: dependency sets. ARGV: oid, ttl, '1' to join.
_INDEX_MOVE = """
for i = 1, #KEYS do
  if ARGV[3] == '1' then
    redis.call('SADD', KEYS[i], ARGV[1])
    redis.call('EXPIRE', KEYS[i], ARGV[2])
  else
    redis.call('SREM', KEYS[i], ARGV[1])
  end
end
"""


def _save_on_cluster(
    oid: str,
    names: list[str],
    args: list[Any],
    tables: list[str],
    leave: list[str],
    *,
    must_exist: bool,
) -> bool:
    """``save`` in one script per slot: join the new tables, write the observer, leave the old.

    Join before the write and leave after it: at every moment the index holds
    the old tables and the new, so a commit's lookup (one atomic script over
    the index) finds the observer whichever step it lands between. A crash
    between steps leaves only extra index entries: an extra evaluation, and
    the sweep prunes entries of observers that are gone. When the observer was
    dropped meanwhile (``must_exist``) the joins are taken back at once: only an
    evaluation passes ``must_exist``, under the observer's lock, so no
    subscription can have created the observer again and joined in between.
    """
    r = client()
    ttl = args[1]
    joined = [keys.dependents(table) for table in tables]
    # The stats keys hash apart from the observer's: counted here, not by its script.
    counts, timings = names[2], names[3]
    elapsed, kept, stats_ttl = args[6], args[7], args[8]
    # Cluster pipelines refuse EVAL: the index's script goes by itself.
    if joined:
        r.eval(_INDEX_MOVE, len(joined), *joined, oid, ttl, "1")
    pipe = r.pipeline(transaction=False)
    if elapsed != "":
        pipe.incr(counts)
        pipe.lpush(timings, elapsed)
        pipe.ltrim(timings, 0, kept - 1)
        pipe.expire(counts, stats_ttl)
        pipe.expire(timings, stats_ttl)
    if len(pipe):
        pipe.execute()
    own = [*args[:6], "", *args[7:9], 0, 0, *args[11:]]
    saved = bool(r.register_script(_SAVE)(keys=names[:2], args=own))
    if not saved and joined:
        r.eval(_INDEX_MOVE, len(joined), *joined, oid, ttl, "0")
    elif saved and leave:
        left = [keys.dependents(table) for table in leave]
        r.eval(_INDEX_MOVE, len(left), *left, oid, ttl, "0")
    return saved


# KEYS: the observer's hash. ARGV: field, value, '1' to overwrite.
_NOTE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[3] == '1' then return redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
"""


def note(oid: str, field: str, value: str, *, overwrite: bool = False) -> None:
    """Set one more field of an existing observer (never creating a hash without a lifetime)."""
    client().eval(_NOTE, 1, keys.observer(oid), field, value, "1" if overwrite else "0")


def mark_precise(oid: str, table: str) -> None:
    """Put a classified observer in ``table``'s precise set: commits leave it to the
    table's dispatch (``locks.queue_or_probe``). Called after its classification is
    stored, which ``locks.sync`` reads to find the table."""
    pipe = client().pipeline(transaction=False)
    pipe.sadd(keys.precise(table), oid)
    pipe.expire(keys.precise(table), keys.ttl_seconds(reactive_settings.OBSERVER_TTL))
    pipe.execute()


def replay(oid: str, since: int, current: int) -> list[dict[str, Any]] | None:
    """Diffs after ``since`` up to ``current``, oldest first; None when the buffer falls short."""
    if since > current or since < 0:
        return None
    if since == current:
        return []
    needed = current - since
    raw = client().lrange(keys.observer_log(oid), 0, needed + 10)
    entries = {e["version"]: e for e in map(json.loads, raw)}
    wanted = range(since + 1, current + 1)
    if any(version not in entries for version in wanted):
        return None
    return [entries[version] for version in wanted]


# KEYS: the observer's state keys (6), the poll zset, then the leaving subscriber's
# observer set and the observer sets of ARGV's subscribers, then the dependency sets
# of ARGV's tables and their precise sets. ARGV: oid, leaving sid ('' for none), '1' to drop anyway,
# the number of subscribers passed, then those sids, then the tables.
# Returns false when the observer keeps subscribers, -1 when the keys passed do not
# cover what it holds now (the caller reads again), else its former subscribers.
_RELEASE = """
local oid, leaving, force, nsubs = ARGV[1], ARGV[2], ARGV[3] == '1', tonumber(ARGV[4])
local given_subs, given_tables = {}, {}
for i = 1, nsubs do given_subs[ARGV[4 + i]] = 8 + i end
for i = 5 + nsubs, #ARGV do given_tables[ARGV[i]] = 4 + i end
local former = {}
for _, sid in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if sid ~= leaving then table.insert(former, sid) end
end
if not force and #former > 0 then
  if leaving ~= '' then
    redis.call('SREM', KEYS[2], leaving)
    redis.call('SREM', KEYS[8], oid)
  end
  return false
end
local tables = redis.call('HGET', KEYS[1], 'tables')
tables = tables and cjson.decode(tables) or {}
for _, sid in ipairs(former) do if not given_subs[sid] then return -1 end end
for _, t in ipairs(tables) do if not given_tables[t] then return -1 end end
if leaving ~= '' then redis.call('SREM', KEYS[8], oid) end
for _, sid in ipairs(former) do redis.call('SREM', KEYS[given_subs[sid]], oid) end
local ntables = #ARGV - 4 - nsubs
for _, t in ipairs(tables) do
  redis.call('SREM', KEYS[given_tables[t]], oid)
  redis.call('SREM', KEYS[given_tables[t] + ntables], oid)
end
redis.call('ZREM', KEYS[7], oid)
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
return former
"""


def release(oid: str, leaving: str = "", *, force: bool = False) -> list[str] | None:
    """Take ``leaving`` off the observer; drop the observer if none is left (or ``force``).

    Returns its former subscribers when it was dropped, else None. One script:
    a subscribe can never land between "no subscribers left" and the delete.
    """
    r = client()
    if keys.clustered():
        return _release_on_cluster(r, oid, leaving, force=force)
    script = r.register_script(_RELEASE)
    while True:
        pipe = r.pipeline(transaction=False)
        pipe.smembers(keys.observer_subscribers(oid))
        pipe.hget(keys.observer(oid), "tables")
        members, tables_json = pipe.execute()
        sids = sorted(set(members) - {leaving})
        tables = sorted(json.loads(tables_json or "[]"))
        names = [
            *keys.observer_state(oid),
            keys.poll(),
            keys.subscriber_observers(leaving) if leaving else keys.observer_subscribers(oid),
            *(keys.subscriber_observers(sid) for sid in sids),
            *(keys.dependents(table) for table in tables),
            *(keys.precise(table) for table in tables),
        ]
        args = [oid, leaving, "1" if force else "0", len(sids), *sids, *tables]
        result = script(keys=names, args=args)
        if result != -1:
            return None if result is None else list(result)


# ``_RELEASE``'s observer half on a cluster. KEYS: the observer's state keys (6).
# ARGV: leaving sid ('' for none), '1' to drop anyway. False when it keeps subscribers,
# else {former subscribers, tables}.
_RELEASE_OWN = """
local leaving, force = ARGV[1], ARGV[2] == '1'
local former = {}
for _, sid in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if sid ~= leaving then table.insert(former, sid) end
end
if not force and #former > 0 then
  if leaving ~= '' then redis.call('SREM', KEYS[2], leaving) end
  return false
end
local tables = redis.call('HGET', KEYS[1], 'tables')
tables = tables and cjson.decode(tables) or {}
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
return {former, tables}
"""


def _release_on_cluster(r: Redis, oid: str, leaving: str, *, force: bool) -> list[str] | None:
    """``release`` as the observer's script, then the entries elsewhere that name it.

    The observer's slot decides, atomically, whether it is dropped, as the
    single script does. The entries in other slots go after: a crash between
    leaves the index and the poll schedule naming a vanished observer (the
    sweep prunes them) and subscriber sets naming it (harmless: they expire
    with the subscriber, as after the observer's own expiry).
    """
    answer = r.eval(_RELEASE_OWN, 6, *keys.observer_state(oid), leaving, "1" if force else "0")
    pipe = r.pipeline(transaction=False)
    if leaving:
        pipe.srem(keys.subscriber_observers(leaving), oid)
    if not answer:
        pipe.execute()
        return None
    former, tables = list(answer[0]), list(answer[1])
    for sid in former:
        pipe.srem(keys.subscriber_observers(sid), oid)
    pipe.zrem(keys.poll(), oid)
    pipe.execute()
    if tables:
        # Cluster pipelines refuse EVAL: the index's script goes by itself.
        index = [*(keys.dependents(t) for t in tables), *(keys.precise(t) for t in tables)]
        r.eval(_INDEX_MOVE, len(index), *index, oid, 1, "0")
    return former


def drop(oid: str) -> list[str]:
    """Delete an observer's state and dependency entries; return its former subscribers.

    A polling observer stops being polled the moment it is dropped.
    """
    return release(oid, force=True) or []
