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

import time
import uuid
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from redis import Redis

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
    "begin",
    "clear_starts",
    "finish",
    "idle",
    "observer_lock",
    "queue",
    "queue_dependents",
    "queue_or_probe",
    "rerun",
    "settled",
    "sync",
    "touched_ttl",
    "unwatch",
    "watch",
]

#: A touched entry that stands for every row of every table: evaluate in full.
ANY = "*"

#: Entries kept per observer in its touched set; past it the set collapses to ``ANY``.
TOUCHED_CAP = 1000

# KEYS: the tables' dependency sets, then the watch zset (observers being created).
# Returns oid, then the 1-based indexes of the tables it read joined by ',' ('*': all).
_DEPENDENTS = """
local found, order = {}, {}
for i = 1, #KEYS - 1 do
  for _, oid in ipairs(redis.call('SMEMBERS', KEYS[i])) do
    if not found[oid] then found[oid] = {}; table.insert(order, oid) end
    table.insert(found[oid], tostring(i))
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[#KEYS], '-inf', redis.call('TIME')[1])
local out = {}
for _, oid in ipairs(order) do
  table.insert(out, oid); table.insert(out, table.concat(found[oid], ','))
end
for _, oid in ipairs(redis.call('ZRANGE', KEYS[#KEYS], 0, -1)) do
  if not found[oid] then table.insert(out, oid); table.insert(out, '*') end
end
return out
"""

# KEYS: touched, queued, observer hash, lock, dirty, probing, committed.
# ARGV: queued ttl s, touched ttl s, cap, probe table ('' for none), token, commit stamp
# ('' for none), its ttl s, then the entries.
# Recorded before the queued flag in one script, so the task that clears the flag
# (``begin``) always finds what its change touched. Returns 1 (queued now), 0 (was
# queued), or 2: idle and precise on the probe table, so left to the table's dispatch
# (``probing`` set to the token; nothing else written, the dispatch stamps it).
_TOUCH_AND_QUEUE = """
if ARGV[4] ~= '' and redis.call('EXISTS', KEYS[2], KEYS[4], KEYS[5]) == 0 then
  local found = redis.call('HGET', KEYS[3], 'invalidation')
  local ok, how = pcall(cjson.decode, found or '')
  if ok and type(how) == 'table' and how.table == ARGV[4] and (how.reason or '') == '' then
    redis.call('SET', KEYS[6], ARGV[5], 'EX', ARGV[1])
    return 2
  end
end
if redis.call('SISMEMBER', KEYS[1], '*') == 0 then
  for i = 8, #ARGV do redis.call('SADD', KEYS[1], ARGV[i]) end
  if redis.call('SCARD', KEYS[1]) > tonumber(ARGV[3]) then
    redis.call('DEL', KEYS[1])
    redis.call('SADD', KEYS[1], '*')
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
if ARGV[6] ~= '' then redis.call('SET', KEYS[7], ARGV[6], 'NX', 'EX', ARGV[7]) end
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then return 1 end
return 0
"""


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

    #: Every observer that read a written table.
    dependents: list[str]
    #: Marked queued now: the caller sends one evaluate task each.
    fresh: list[str]
    #: Table -> the observers left to its probe dispatch (``store.probes.pend``).
    probing: dict[str, list[str]]


def queue_or_probe(
    tables: Iterable[str],
    pks: Mapping[str, Collection[str]] | None = None,
    *,
    token: str,
    stamp: str = "",
) -> Queued:
    """``queue_dependents``, leaving some observers to their table's probe dispatch.

    With a ``token`` (one per commit), an observer that read no written table
    but one whose primary keys are known, is idle (not queued, locked or dirty)
    and is classified precise on that table is neither touched nor queued: its
    ``probing`` flag takes the token and the caller pends it for the dispatch.
    Without one (``PRECISE_INVALIDATION`` off) this is ``queue_dependents``.
    ``stamp``: the commit's time for the metrics (``keys.committed``), kept if earlier
    than the one waiting, in the same script.
    """
    ordered = sorted(set(tables))
    if not ordered:
        return Queued([], [], {})
    pks = pks or {}
    names = [keys.dependents(t) for t in ordered]
    r = client()
    flat = list(r.eval(_DEPENDENTS, len(names) + 1, *names, keys.watch()))
    found = list(zip(flat[::2], flat[1::2], strict=True))
    if not found:
        return Queued([], [], {})
    ttl, touched_for = queued_ttl(), touched_ttl()
    calls, probe_tables = [], []
    for oid, indexes in found:
        entries = [ANY] if indexes == ANY else _entries(ordered, indexes, pks)
        if len(entries) > TOUCHED_CAP:
            entries = [ANY]
        table = _probe_table(ordered, indexes, pks) if token else ""
        probe_tables.append(table)
        calls.append(
            (
                *(keys.touched(oid), keys.queued(oid), keys.observer(oid)),
                *(keys.lock(oid), keys.dirty(oid), keys.probing(oid), keys.committed(oid)),
                *(ttl, touched_for, TOUCHED_CAP, table, token, stamp, STAMP_TTL, *entries),
            )
        )
    codes = _touch_and_queue(r, calls)
    observers = [oid for oid, _ in found]
    probing: dict[str, list[str]] = {}
    for oid, table, code in zip(observers, probe_tables, codes, strict=True):
        if code == 2:
            probing.setdefault(table, []).append(oid)
    fresh = [oid for oid, code in zip(observers, codes, strict=True) if code == 1]
    return Queued(observers, fresh, probing)


def _probe_table(tables: list[str], indexes: str, pks: Mapping[str, Collection[str]]) -> str:
    """The one written table an observer read, when its rows are known; else ''."""
    if indexes == ANY or "," in indexes:
        return ""
    table = tables[int(indexes) - 1]
    return table if pks.get(table) else ""


#: ``_TOUCH_AND_QUEUE``'s KEYS per call: touched, queued, observer, lock, dirty,
#: probing, committed.
_TOUCH_KEYS = 7


def _touch_and_queue(r: Redis, calls: list[tuple[Any, ...]]) -> list[Any]:
    """Run ``_TOUCH_AND_QUEUE`` once per call in one round trip (one per master on a
    cluster), by its SHA: no SCRIPT EXISTS before every commit."""
    return run_many(r, _TOUCH_AND_QUEUE, [(c[:_TOUCH_KEYS], c[_TOUCH_KEYS:]) for c in calls])


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
_RERUN = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {-1} end
if redis.call('DEL', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[1])
  return {0}
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local touched = redis.call('SMEMBERS', KEYS[3])
redis.call('DEL', KEYS[3])
return {1, unpack(touched)}
"""


def rerun(oid: str, token: str) -> tuple[str, ...] | None:
    """``finish`` for a holder that reruns: the touched entries to rerun for, or None.

    None: released (nothing arrived) or no longer ours. The entries are taken
    with the dirty flag, so every change that marked it dirty is among them.
    """
    code, *touched = client().eval(
        _RERUN, 3, keys.lock(oid), keys.dirty(oid), keys.touched(oid), token, lock_ttl_ms()
    )
    return tuple(touched) if int(code) == 1 else None


# KEYS: queued, lock, dirty, waiting, obs hash, probing. ARGV: waiting ttl s.
# The observer has caught up with every committed write when no evaluation is queued,
# running, owed or being decided by a dispatch: then its version; else the client
# waits (-1) for ``settled``.
_SYNC = """
if redis.call('EXISTS', KEYS[1], KEYS[2], KEYS[3], KEYS[6]) > 0 then
  redis.call('SET', KEYS[4], '1', 'EX', ARGV[1])
  return -1
end
return tonumber(redis.call('HGET', KEYS[5], 'version') or '-2')
"""

# KEYS: waiting, obs hash. The version to announce, or -1 when nobody waits.
_SETTLED = """
if redis.call('DEL', KEYS[1]) == 0 then return -1 end
return tonumber(redis.call('HGET', KEYS[2], 'version') or '-1')
"""


def idle(oid: str) -> bool:
    """True when no evaluation of ``oid`` is queued, running, owed or being decided by a
    probe dispatch: its result is current."""
    return not client().exists(keys.queued(oid), keys.lock(oid), keys.dirty(oid), keys.probing(oid))


def sync(oid: str) -> int | None:
    """The observer's version if it reflects every write committed so far, else None.

    None also records that a client waits: the evaluation that catches up calls
    ``settled`` and announces it. -2: the observer does not exist.
    """
    version = int(
        client().eval(
            _SYNC,
            6,
            keys.queued(oid),
            keys.lock(oid),
            keys.dirty(oid),
            keys.waiting(oid),
            keys.observer(oid),
            keys.probing(oid),
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
def observer_lock(oid: str) -> Iterator[HeldLock]:
    """Hold the observer's lock, waiting up to ``LOCK_WAIT``.

    On exit the lock is released and ``changed_meanwhile`` on the yielded state
    says whether a change arrived while it was held (the caller re-queues).
    """
    token = uuid.uuid4().hex
    ttl_ms = lock_ttl_ms()
    deadline = time.monotonic() + reactive_settings.LOCK_WAIT
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
