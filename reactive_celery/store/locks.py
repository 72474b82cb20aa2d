"""Who evaluates an observer, and when: queued flags, the lock, the dirty flag.

    queue_dependents   a commit queues each dependent observer once
    watch / unwatch    an observer being created is queued for any table
    begin / finish     one evaluation at a time; a change during it reruns it once
    sync / settled     a client waits until the observer reflects its writes
    observer_lock      the same lock, held by a subscribing request

Every flag has a lifetime, so a lost task or a killed worker blocks nothing for long.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ..conf import lock_ttl_ms, queued_ttl, reactive_settings
from ..exceptions import ObserverBusy
from . import keys
from .connection import client

__all__ = [
    "Begun",
    "HeldLock",
    "begin",
    "clear_starts",
    "finish",
    "idle",
    "observer_lock",
    "queue",
    "queue_dependents",
    "settled",
    "sync",
    "unwatch",
    "watch",
]

# KEYS: the tables' dependency sets, then the watch zset (observers being created).
_DEPENDENTS = """
local observers = {}
if #KEYS > 1 then observers = redis.call('SUNION', unpack(KEYS, 1, #KEYS - 1)) end
redis.call('ZREMRANGEBYSCORE', KEYS[#KEYS], '-inf', redis.call('TIME')[1])
local seen = {}
for _, oid in ipairs(observers) do seen[oid] = true end
for _, oid in ipairs(redis.call('ZRANGE', KEYS[#KEYS], 0, -1)) do
  if not seen[oid] then table.insert(observers, oid) end
end
return observers
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


def queue_dependents(tables: Iterable[str]) -> tuple[list[str], list[str]]:
    """Observers that read any of ``tables``, and those of them not already queued.

    The second list is marked queued; the caller enqueues one evaluation for each.
    """
    names = [keys.dependents(t) for t in sorted(set(tables))]
    if not names:
        return [], []
    observers = list(client().eval(_DEPENDENTS, len(names) + 1, *names, keys.watch()))
    return observers, queue(observers)


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
    #: Set when contended and this task is the first to schedule a retry.
    retry_in_ms: int | None = None


# KEYS: queued, lock, dirty, retry, starts. ARGV: token, lock ms, '1' for a retry, starts ttl.
_BEGIN = """
if ARGV[3] ~= '1' then redis.call('DEL', KEYS[1]) end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local starts = redis.call('INCR', KEYS[5])
  redis.call('EXPIRE', KEYS[5], ARGV[4])
  return {1, starts}
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
    acquired, value = client().eval(
        _BEGIN,
        5,
        keys.queued(oid),
        keys.lock(oid),
        keys.dirty(oid),
        keys.retry(oid),
        keys.starts(oid),
        token,
        lock_ttl_ms(),
        "1" if retry else "0",
        keys.ttl_seconds(reactive_settings.OBSERVER_TTL),
    )
    if acquired:
        return Begun(acquired=True, starts=int(value))
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

# KEYS: waiting, obs hash. The version to announce, or -1 when nobody waits.
_SETTLED = """
if redis.call('DEL', KEYS[1]) == 0 then return -1 end
return tonumber(redis.call('HGET', KEYS[2], 'version') or '-1')
"""


def idle(oid: str) -> bool:
    """True when no evaluation of ``oid`` is queued, running or owed: its result is current."""
    return not client().exists(keys.queued(oid), keys.lock(oid), keys.dirty(oid))


def sync(oid: str) -> int | None:
    """The observer's version if it reflects every write committed so far, else None.

    None also records that a client waits: the evaluation that catches up calls
    ``settled`` and announces it. -2: the observer does not exist.
    """
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
