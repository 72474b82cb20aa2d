"""Who evaluates an observer, and when: queued flags, the lock, the dirty flag.

    queue_dependents   a commit queues each dependent observer once and records what it
                       touched (``touched:<oid>``: table:pk, or table:* for a whole table)
    watch / unwatch    an observer being created is queued for any table
    begin / finish     one evaluation at a time; a change during it reruns it once;
                       begin and rerun take the touched set with the lock, atomically
    sync / settled     a client waits until the observer reflects its writes
    observer_lock      the same lock, held by a subscribing request

Every flag has a lifetime, so a lost task or a killed worker blocks nothing for long.
"""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..conf import lock_ttl_ms, queued_ttl, reactive_settings
from ..exceptions import ObserverBusy
from . import keys
from .connection import client
from .scripts import run_many

__all__ = [
    "ANY",
    "STAMP_TTL",
    "TOUCHED_CAP",
    "Begun",
    "HeldLock",
    "Queued",
    "Rerun",
    "begin",
    "clear_starts",
    "finish",
    "idle",
    "observer_lock",
    "owed_keys",
    "precise_table",
    "queue",
    "queue_dependents",
    "queue_or_probe",
    "rerun",
    "settled",
    "sync",
    "sync_after_dispatch",
    "touch",
    "touched_ttl",
    "unwatch",
    "watch",
]

#: A touched entry that stands for every row of every table: evaluate in full.
ANY = "*"

#: Entries kept per observer in its touched set; past it the set collapses to ``ANY``.
TOUCHED_CAP = 1000

# Adds ARGV[first..last] to the set ``key`` unless it already stands for everything
# (``ANY``); past ``cap`` members it collapses to ``ANY``. Touched sets and a table's
# pending pks follow this one rule.
_ADD_CAPPED = """
local function add_capped(key, first, last, cap)
  if redis.call('SISMEMBER', key, '*') == 1 then return end
  for i = first, last do redis.call('SADD', key, ARGV[i]) end
  if redis.call('SCARD', key) > tonumber(cap) then
    redis.call('DEL', key)
    redis.call('SADD', key, '*')
  end
end
"""

# KEYS: the n tables' dependency sets, their ``precise`` sets, the watch zset (observers
# being created), then for each of the m tables whose rows are known: probe pks, tokens,
# pending, queued. ARGV: n, m, token, touched ttl s, queued ttl s, cap, then per known
# table its 1-based index, its number of pks and the pks.
# An observer that read, of the written tables, only a known one on which it is precise
# is left to that table's dispatch (its pks and the token pended, the dispatch sent once
# until it takes them): nothing of it is read or written here, so a commit costs the same
# for 1 or 1,000 such observers. Returns {the others: oid, then the 1-based indexes of
# the tables it read joined by ',' ('*': all), the indexes (1..m) of the known tables
# whose dispatch task to send}.
_COMMIT = (
    _ADD_CAPPED
    + """
local n, m = tonumber(ARGV[1]), tonumber(ARGV[2])
local found, order = {}, {}
for i = 1, n do
  for _, oid in ipairs(redis.call('SMEMBERS', KEYS[i])) do
    if not found[oid] then found[oid] = {}; table.insert(order, oid) end
    table.insert(found[oid], i)
  end
end
local watch = KEYS[2 * n + 1]
redis.call('ZREMRANGEBYSCORE', watch, '-inf', redis.call('TIME')[1])
local known, spans, at = {}, {}, 7
for j = 1, m do
  local i, count = tonumber(ARGV[at]), tonumber(ARGV[at + 1])
  known[i] = j; spans[j] = {at + 2, at + 1 + count}; at = at + 2 + count
end
local out, pend = {}, {}
for _, oid in ipairs(order) do
  local read = found[oid]
  local j = nil
  if #read == 1 then j = known[read[1]] end
  if j and redis.call('SISMEMBER', KEYS[n + read[1]], oid) == 1 then
    pend[j] = pend[j] or {}
    table.insert(pend[j], oid)
  else
    table.insert(out, oid); table.insert(out, table.concat(read, ','))
  end
end
for j, oids in pairs(pend) do
  if #oids == 1 then
    -- A dispatch would cost a task to decide one observer, which its own
    -- evaluation decides as cheaply (invalidation.affects): queue it.
    table.insert(out, oids[1]); table.insert(out, tostring(found[oids[1]][1]))
    pend[j] = nil
  end
end
for _, oid in ipairs(redis.call('ZRANGE', watch, 0, -1)) do
  if not found[oid] then table.insert(out, oid); table.insert(out, '*') end
end
local sends = {}
for j = 1, m do
  if pend[j] then
    local base = 2 * n + 1 + 4 * (j - 1)
    local pks, tokens = KEYS[base + 1], KEYS[base + 2]
    add_capped(pks, spans[j][1], spans[j][2], ARGV[6])
    redis.call('HSETNX', tokens, 'first', ARGV[3])
    redis.call('HSET', tokens, 'last', ARGV[3])
    redis.call('EXPIRE', pks, ARGV[4])
    redis.call('EXPIRE', tokens, ARGV[4])
    redis.call('SET', KEYS[base + 3], ARGV[3], 'EX', ARGV[4])
    if redis.call('SET', KEYS[base + 4], '1', 'NX', 'EX', ARGV[5]) then
      table.insert(sends, j)
    end
  end
end
return {out, sends}
"""
)

# KEYS: touched, queued, committed. ARGV: queued ttl s, touched ttl s, cap, commit stamp
# ('' for none), its ttl s, then the entries.
# Recorded before the queued flag in one script, so the task that clears the flag
# (``begin``) always finds what its change touched. Returns 1 (queued now) or 0 (was
# queued).
_TOUCH_AND_QUEUE = (
    _ADD_CAPPED
    + """
add_capped(KEYS[1], 6, #ARGV, ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[2])
if ARGV[4] ~= '' then redis.call('SET', KEYS[3], ARGV[4], 'NX', 'EX', ARGV[5]) end
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then return 1 end
return 0
"""
)


def queue(oids: Iterable[str]) -> list[str]:
    """Mark observers queued; return those that were not already (one task each)."""
    oids = list(oids)
    if not oids:
        return []
    pipe = client().pipeline(transaction=False)
    ttl = queued_ttl()
    for oid in oids:
        pipe.set(keys.queued(oid), "1", nx=True, ex=ttl)
    return [oid for oid, fresh in zip(oids, pipe.execute(), strict=True) if fresh]


def touched_ttl() -> int:
    """Lifetime of a touched set (and of what a commit pends for a probe dispatch)."""
    # Outlives the queued flag and the lock: it is read by whoever takes either. Past
    # them by a sweep interval, so a sweep finds the change of a task that was lost.
    held = max(queued_ttl(), lock_ttl_ms() / 1000)
    return keys.ttl_seconds(held + float(reactive_settings.SWEEP_INTERVAL) + 5)


def queue_dependents(
    tables: Iterable[str], pks: Mapping[str, Collection[str]] | None = None
) -> tuple[list[str], list[str]]:
    """Observers that read any of ``tables``, and those of them not already queued.

    ``pks`` gives, for some of the tables, the primary keys (as strings) written;
    the other tables changed as a whole. Each dependent observer's touched set
    records what it read of the change; the second list is marked queued, and
    the caller enqueues one evaluation for each.
    """
    found = queue_or_probe(tables, pks, token="")
    return found.dependents, found.fresh


#: Seconds a commit stamp waits for an evaluation (``metrics.COMMIT_STAMP_TTL``).
STAMP_TTL = 3600


@dataclass(frozen=True)
class Queued:
    """What a commit's ``queue_or_probe`` did."""

    #: The observers it touched: every one that read a written table, but those it
    #: left to a dispatch.
    dependents: list[str]
    #: Marked queued now: the caller sends one evaluate task each.
    fresh: list[str]
    #: The tables whose probe dispatch task the caller sends (``tasks.enqueue_dispatch``).
    dispatches: list[str] = field(default_factory=list)


def queue_or_probe(
    tables: Iterable[str],
    pks: Mapping[str, Collection[str]] | None = None,
    *,
    token: str,
    stamp: str = "",
) -> Queued:
    """``queue_dependents``, leaving some observers to their table's probe dispatch.

    With a ``token`` (one per commit), an observer that read no written table
    but one whose primary keys are known, and is classified precise on it
    (``keys.precise``), is neither read nor touched: the table's pks and the
    token are pended for its dispatch, in the same script as the lookup. The
    one such observer of a table is touched and queued instead: its evaluation
    decides it with the same probe (``invalidation.affects``), a task sooner. Without
    a token (``PRECISE_INVALIDATION`` off) this is ``queue_dependents``.
    ``stamp``: the commit's time for the metrics (``keys.committed``), kept if
    earlier than the one waiting, in the script that queues.
    """
    ordered = sorted(set(tables))
    if not ordered:
        return Queued([], [])
    pks = pks or {}
    known = [(i, t) for i, t in enumerate(ordered, 1) if token and pks.get(t)]
    names = [keys.dependents(t) for t in ordered] + [keys.precise(t) for t in ordered]
    names.append(keys.watch())
    args: list[Any] = [len(ordered), len(known), token, touched_ttl(), queued_ttl(), TOUCHED_CAP]
    for index, table in known:
        names += [keys.probe_pks(table), keys.probe_tokens(table)]
        names += [keys.probe_pending(table), keys.probe_queued(table)]
        args += [index, len(pks[table]), *sorted(pks[table])]
    flat, sends = client().eval(_COMMIT, len(names), *names, *args)
    dispatches = [known[int(j) - 1][1] for j in sends]
    found = list(zip(flat[::2], flat[1::2], strict=True))
    if not found:
        return Queued([], [], dispatches)
    owed = {
        oid: [ANY] if indexes == ANY else _entries(ordered, indexes, pks) for oid, indexes in found
    }
    return Queued(list(owed), touch(owed, stamp=stamp), dispatches)


def touch(owed: Mapping[str, Collection[str]], *, stamp: str = "") -> list[str]:
    """Record what changed for each observer (``touched``; past ``TOUCHED_CAP``
    entries, ``ANY``) and mark it queued: one script each, one round trip (one per
    master on a cluster), by its SHA. ``stamp``: the commit's time for the metrics
    ('' for none). Returns those marked queued now: the caller sends one task each."""
    ttl, touched_for = queued_ttl(), touched_ttl()
    calls = []
    for oid, entries in owed.items():
        listed = [ANY] if len(entries) > TOUCHED_CAP else list(entries)
        calls.append(
            (
                [keys.touched(oid), keys.queued(oid), keys.committed(oid)],
                [ttl, touched_for, TOUCHED_CAP, stamp, STAMP_TTL, *listed],
            )
        )
    codes = run_many(client(), _TOUCH_AND_QUEUE, calls)
    return [oid for oid, code in zip(owed, codes, strict=True) if code == 1]


def _entries(tables: list[str], indexes: str, pks: Mapping[str, Collection[str]]) -> list[str]:
    entries: list[str] = []
    for index in indexes.split(","):
        table = tables[int(index) - 1]
        written = pks.get(table)
        entries += [f"{table}:{ANY}"] if written is None else [f"{table}:{pk}" for pk in written]
    return entries


def watch(oid: str, seconds: float) -> None:
    """Treat ``oid`` as reading every table until ``unwatch``, for at most ``seconds``.

    Called while a subscription creates or refreshes an observer: a write that
    commits before its dependencies are stored must still reach it.
    """
    r = client()
    until = int(r.time()[0]) + keys.ttl_seconds(seconds)
    pipe = r.pipeline(transaction=True)
    pipe.zadd(keys.watch(), {oid: until})
    pipe.expire(keys.watch(), keys.ttl_seconds(seconds) * 2)
    pipe.execute()


def unwatch(oid: str) -> None:
    """End ``watch``; the observer's stored dependencies take over."""
    client().zrem(keys.watch(), oid)


@dataclass(frozen=True)
class Begun:
    """What ``begin`` found: the lock taken (with the start count), or its holder's ms left."""

    acquired: bool
    starts: int = 0
    #: The touched entries taken with the lock (empty: nothing recorded, evaluate in full).
    touched: tuple[str, ...] = ()
    #: Set when contended and this task is the first to schedule a retry.
    retry_in_ms: int | None = None


# KEYS: queued, lock, dirty, retry, starts, touched.
# ARGV: token, lock ms, '1' for a retry, starts ttl.
_BEGIN = """
if ARGV[3] ~= '1' then redis.call('DEL', KEYS[1]) end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local starts = redis.call('INCR', KEYS[5])
  redis.call('EXPIRE', KEYS[5], ARGV[4])
  local touched = redis.call('SMEMBERS', KEYS[6])
  redis.call('DEL', KEYS[6])
  return {1, starts, unpack(touched)}
end
if ARGV[3] ~= '1' then redis.call('SET', KEYS[3], '1', 'PX', ARGV[2]) end
local remaining = redis.call('PTTL', KEYS[2])
local claim = remaining > 0 and remaining or 1
if redis.call('SET', KEYS[4], '1', 'NX', 'PX', claim) then return {0, remaining} end
return {0, -3}
"""


def begin(oid: str, token: str, *, retry: bool = False) -> Begun:
    """Start an evaluate task: take the observer's lock, or mark it dirty for its holder.

    A task that is not a retry first clears the queued flag, so later changes
    queue a new one. ``retry`` (a contended task's follow-up) carries no change
    of its own and never marks the observer dirty: that would keep a live holder
    rerunning for as long as retries arrive. Counting starts under the lock lets
    the crash cap survive a killed worker.
    """
    acquired, value, *touched = client().eval(
        _BEGIN,
        6,
        keys.queued(oid),
        keys.lock(oid),
        keys.dirty(oid),
        keys.retry(oid),
        keys.starts(oid),
        keys.touched(oid),
        token,
        lock_ttl_ms(),
        "1" if retry else "0",
        keys.ttl_seconds(reactive_settings.OBSERVER_TTL),
    )
    if acquired:
        return Begun(acquired=True, starts=int(value), touched=tuple(touched))
    return Begun(acquired=False, retry_in_ms=None if value == -3 else max(int(value), 0))


_FINISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local changed = redis.call('DEL', KEYS[2]) == 1
if changed and ARGV[3] == '1' then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
redis.call('DEL', KEYS[1])
return changed and 1 or 0
"""


def finish(oid: str, token: str, *, keep: bool = True) -> int:
    """End an evaluation: 1 if a change arrived meanwhile and the lock is kept for a rerun.

    0: released; -1: the lock was no longer ours. With ``keep=False`` the lock is
    always released and 1 still reports the pending change.
    """
    return int(
        client().eval(
            _FINISH,
            2,
            keys.lock(oid),
            keys.dirty(oid),
            token,
            lock_ttl_ms(),
            "1" if keep else "0",
        )
    )


# KEYS: lock, dirty, touched. ARGV: token, lock ms.
# KEYS: lock, dirty, touched, waiting, obs hash, starts. ARGV: token, lock ttl ms.
# {1, touched...}: kept for a rerun. {0 or -1, settled}: released (or no longer
# ours) and, as ``settled`` and ``clear_starts`` then would, the evaluation ended.
_RERUN = """
local function ended()
  redis.call('DEL', KEYS[6])
  if redis.call('DEL', KEYS[4]) == 0 then return -1 end
  return tonumber(redis.call('HGET', KEYS[5], 'version') or '-1')
end
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {-1, ended()} end
if redis.call('DEL', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[1])
  return {0, ended()}
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local touched = redis.call('SMEMBERS', KEYS[3])
redis.call('DEL', KEYS[3])
return {1, unpack(touched)}
"""


@dataclass(frozen=True)
class Rerun:
    """What ``rerun`` found: the entries to rerun for, or the end of the evaluation."""

    #: The touched entries to rerun for; None: released (nothing arrived) or no longer ours.
    touched: tuple[str, ...] | None
    #: Once ended: the version to announce to clients waiting for it (``settled``), if any.
    settled: int | None = None


def rerun(oid: str, token: str) -> Rerun:
    """``finish`` for a holder that reruns.

    The entries are taken with the dirty flag, so every change that marked it
    dirty is among them. When nothing arrived, the lock is released and the
    evaluation ended in the same script: ``settled`` and ``clear_starts``.
    """
    names = [keys.lock(oid), keys.dirty(oid), keys.touched(oid)]
    names += [keys.waiting(oid), keys.observer(oid), keys.starts(oid)]
    code, *rest = client().eval(_RERUN, len(names), *names, token, lock_ttl_ms())
    if int(code) == 1:
        return Rerun(tuple(rest))
    version = int(rest[0])
    return Rerun(None, None if version < 0 else version)


# KEYS: queued, lock, dirty, waiting, obs hash. ARGV: waiting ttl s.
# The observer has caught up with every committed write when no evaluation is queued,
# running or owed: then its version; else the client waits (-1) for ``settled``.
_SYNC = """
if redis.call('EXISTS', KEYS[1], KEYS[2], KEYS[3]) > 0 then
  redis.call('SET', KEYS[4], '1', 'EX', ARGV[1])
  return -1
end
return tonumber(redis.call('HGET', KEYS[5], 'version') or '-2')
"""

# KEYS: the table's probe pending token, its waiting set. ARGV: oid, ttl s.
# 1: a dispatch of the table has commits to decide; the observer's clients wait for it.
_WAIT_FOR_DISPATCH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return 1
"""

# KEYS: waiting, obs hash. The version to announce, or -1 when nobody waits.
_SETTLED = """
if redis.call('DEL', KEYS[1]) == 0 then return -1 end
return tonumber(redis.call('HGET', KEYS[2], 'version') or '-1')
"""


def precise_table(oid: str) -> str:
    """The table a dispatch decides the observer on ('' if none), from its classification."""
    try:
        return _classified_table(oid)
    except LookupError:
        return ""  # not classified yet: nothing was left to a dispatch


# A classification never changes, so a found one is kept; an unclassified observer
# raises, which lru_cache does not keep.
@functools.lru_cache(maxsize=100_000)
def _classified_table(oid: str) -> str:
    raw = client().hget(keys.observer(oid), "invalidation")
    try:
        how = json.loads(raw) if raw else None
    except ValueError:
        how = None
    if not isinstance(how, dict):
        raise LookupError(oid)
    return str(how.get("table") or "") if not how.get("reason") else ""


def owed_keys(oid: str, *, holding: bool = False) -> list[str] | None:
    """The keys any of which means ``oid``'s result is not current (``idle`` as a list),
    for a script that checks them atomically with more; None on a cluster, where the
    table's token and the observer's flags hash apart. ``holding``: as for ``idle``."""
    if keys.clustered():
        return None
    table = precise_table(oid)
    pending = [keys.probe_pending(table)] if table else []
    lock = [] if holding else [keys.lock(oid)]
    return [*pending, keys.queued(oid), keys.dirty(oid), *lock]


def idle(oid: str, *, holding: bool = False, stored: bool = False) -> bool:
    """True when no evaluation of ``oid`` is queued, running, owed or being decided by a
    probe dispatch: its result is current. ``holding``: the caller holds the lock, so
    nothing runs; only what is owed counts. ``stored``: the result must also exist.
    One round trip on a single server once the observer's classification is known."""
    r = client()
    flags = [keys.queued(oid), keys.dirty(oid)]
    if not holding:
        flags.append(keys.lock(oid))
    table = precise_table(oid)
    pending = keys.probe_pending(table) if table else ""
    # The table's token before the flags, as in ``sync``: a dispatch queues what it
    # finds concerned before it clears the token. A pipeline keeps that order on one
    # server; a cluster's runs each node's part apart, so there it takes two.
    if pending and keys.clustered():
        if r.exists(pending):
            return False
        pending = ""
    pipe = r.pipeline(transaction=False)
    if pending:
        pipe.exists(pending)
    pipe.exists(*flags)
    if stored:
        pipe.exists(keys.observer(oid))
    found = pipe.execute()
    if stored and not found.pop():
        return False
    return not any(found)


def sync(oid: str) -> int | None:
    """The observer's version if it reflects every write committed so far, else None.

    None also records that a client waits: the evaluation that catches up calls
    ``settled`` and announces it, or the dispatch deciding for the observer's table
    (``sync_after_dispatch``). -2: the observer does not exist.
    """
    table = precise_table(oid)
    if table:
        # The table's dispatch first: it queues what it finds concerned before it clears
        # its pending token, so once the token is gone the observer's own flags tell.
        waits = client().eval(
            _WAIT_FOR_DISPATCH,
            2,
            keys.probe_pending(table),
            keys.probe_waiting(table),
            oid,
            touched_ttl(),
        )
        if int(waits):
            return None
    return sync_after_dispatch(oid)


def sync_after_dispatch(oid: str) -> int | None:
    """``sync`` without the table's dispatch: called by a dispatch, once it decided, for
    the observers whose clients waited for it."""
    version = int(
        client().eval(
            _SYNC,
            5,
            keys.queued(oid),
            keys.lock(oid),
            keys.dirty(oid),
            keys.waiting(oid),
            keys.observer(oid),
            queued_ttl(),
        )
    )
    return None if version == -1 else version


def settled(oid: str) -> int | None:
    """Called once the observer's lock is released with nothing owed: the version to
    announce to the clients waiting for it, or None when none waits."""
    version = int(client().eval(_SETTLED, 2, keys.waiting(oid), keys.observer(oid)))
    return None if version < 0 else version


def clear_starts(oid: str) -> None:
    """An evaluation finished (well or with a handled error)."""
    client().delete(keys.starts(oid))


@dataclass
class HeldLock:
    """The lock held by ``observer_lock``."""

    oid: str
    token: str
    changed_meanwhile: bool = False


@contextmanager
def observer_lock(oid: str, wait: float | None = None) -> Iterator[HeldLock]:
    """Hold the observer's lock, waiting up to ``wait`` seconds (``LOCK_WAIT``); past it
    ``ObserverBusy``.

    On exit the lock is released and ``changed_meanwhile`` on the yielded state
    says whether a change arrived while it was held (the caller re-queues).
    """
    token = uuid.uuid4().hex
    ttl_ms = lock_ttl_ms()
    deadline = time.monotonic() + (reactive_settings.LOCK_WAIT if wait is None else wait)
    lock_key = keys.lock(oid)
    r = client()
    while not r.set(lock_key, token, nx=True, px=ttl_ms):
        if time.monotonic() > deadline:
            raise ObserverBusy("The observer is busy with a long evaluation; try again shortly.")
        time.sleep(0.005)
    state = HeldLock(oid, token)
    try:
        yield state
    finally:
        state.changed_meanwhile = finish(oid, token, keep=False) == 1
