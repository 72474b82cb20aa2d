"""Who evaluates an observer, and when: queued flags, the lock, the dirty flag.

    queue_dependents   a commit queues each dependent observer once
    watch / unwatch    an observer being created is queued for any table
    acquire_or_mark_dirty / release_or_continue
                       one evaluation at a time; a change during it reruns it once
    observer_lock      the same lock, held by a subscribing request

Keys are described in ``store``; every one has a lifetime.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from .conf import reactive_settings
from .exceptions import ObserverError
from .store import client, key, ttl_seconds

__all__ = [
    "acquire_or_mark_dirty",
    "claim_retry",
    "clear_queued",
    "clear_starts",
    "count_start",
    "observer_lock",
    "queue_dependents",
    "release_or_continue",
    "unwatch",
    "watch",
]


_QUEUE_DEPENDENTS = """
-- KEYS: the tables' dependency sets, then the watch zset (observers being created)
local observers = {}
if #KEYS > 1 then observers = redis.call('SUNION', unpack(KEYS, 1, #KEYS - 1)) end
redis.call('ZREMRANGEBYSCORE', KEYS[#KEYS], '-inf', redis.call('TIME')[1])
local seen = {}
for _, oid in ipairs(observers) do seen[oid] = true end
for _, oid in ipairs(redis.call('ZRANGE', KEYS[#KEYS], 0, -1)) do
  if not seen[oid] then table.insert(observers, oid) end
end
local queued = {}
for _, oid in ipairs(observers) do
  if redis.call('SET', ARGV[1] .. oid, '1', 'NX', 'EX', ARGV[2]) then
    table.insert(queued, oid)
  end
end
return {observers, queued}
"""


def queue_dependents(tables: Iterable[str]) -> tuple[list[str], list[str]]:
    """Observers that read any of ``tables``, and those of them not already queued.

    The second list is marked queued; the caller enqueues one evaluation for each.
    """
    names = [key("dep", t) for t in sorted(set(tables))]
    if not names:
        return [], []
    names.append(key("watch"))
    # A task lost with its broker (a Redis restart) must not block its observer for long.
    ttl = ttl_seconds(max(30, 2 * reactive_settings.EVALUATION_TIME_LIMIT))
    observers, queued = client().eval(_QUEUE_DEPENDENTS, len(names), *names, key("queued", ""), ttl)
    return list(observers), list(queued)


def watch(oid: str, seconds: float) -> None:
    """Treat ``oid`` as reading every table until ``unwatch``, for at most ``seconds``.

    Called while a subscription creates or refreshes an observer: a write that
    commits before its dependencies are stored must still reach it.
    """
    r = client()
    until = int(r.time()[0]) + ttl_seconds(seconds)
    pipe = r.pipeline(transaction=True)
    pipe.zadd(key("watch"), {oid: until})
    pipe.expire(key("watch"), ttl_seconds(seconds) * 2)
    pipe.execute()


def unwatch(oid: str) -> None:
    """End ``watch``; the observer's stored dependencies take over."""
    client().zrem(key("watch"), oid)


def clear_queued(oid: str) -> None:
    """Called when an evaluate task starts: later changes must queue a new one."""
    client().delete(key("queued", oid))


_ACQUIRE_OR_MARK_DIRTY = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return -2 end
if ARGV[3] == '1' then redis.call('SET', KEYS[2], '1', 'PX', ARGV[2]) end
return redis.call('PTTL', KEYS[1])
"""


def acquire_or_mark_dirty(oid: str, token: str, ttl_ms: int, mark: bool = True) -> int:
    """Take the observer's lock (-2) or mark it dirty and return the lock's ms to live.

    ``mark=False`` (a retry that carries no change of its own) leaves the flag alone.
    """
    return int(
        client().eval(
            _ACQUIRE_OR_MARK_DIRTY,
            2,
            key("lock", oid),
            key("dirty", oid),
            token,
            ttl_ms,
            "1" if mark else "0",
        )
    )


_RELEASE_OR_CONTINUE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
if redis.call('DEL', KEYS[2]) == 1 and ARGV[3] == '1' then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
redis.call('DEL', KEYS[1])
return 0
"""


def release_or_continue(oid: str, token: str, ttl_ms: int, keep: bool = True) -> int:
    """End an evaluation: 1 if a change arrived meanwhile and the lock is kept for a rerun.

    0: released; -1: the lock was no longer ours. With ``keep=False`` the lock is
    always released and 1 still reports the pending change.
    """
    return int(
        client().eval(
            _RELEASE_OR_CONTINUE,
            2,
            key("lock", oid),
            key("dirty", oid),
            token,
            ttl_ms,
            "1" if keep else "0",
        )
    )


def claim_retry(oid: str, ttl_ms: int) -> bool:
    """True for the first contended task to schedule a retry within ``ttl_ms``."""
    return bool(client().set(key("retry", oid), "1", nx=True, px=max(ttl_ms, 1)))


def count_start(oid: str) -> int:
    """Count an evaluation start; the count survives a killed worker (redelivery cap)."""
    pipe = client().pipeline(transaction=True)
    pipe.incr(key("starts", oid))
    pipe.expire(key("starts", oid), ttl_seconds(reactive_settings.OBSERVER_TTL))
    return int(pipe.execute()[0])


def clear_starts(oid: str) -> None:
    """An evaluation finished (well or with a handled error)."""
    client().delete(key("starts", oid))


class _LockState:
    """The lock held by ``observer_lock``."""

    def __init__(self, oid: str, token: str, ttl_ms: int) -> None:
        self.oid = oid
        self.token = token
        self.ttl_ms = ttl_ms
        self.changed_meanwhile = False


@contextmanager
def observer_lock(oid: str) -> Iterator[_LockState]:
    """Hold the observer's lock, waiting up to ``LOCK_WAIT``.

    On exit the lock is released and ``changed_meanwhile`` on the yielded state
    says whether a change arrived while it was held (the caller re-queues).
    """
    token = uuid.uuid4().hex
    ttl_ms = int((reactive_settings.EVALUATION_TIME_LIMIT + 5) * 1000)
    deadline = time.monotonic() + reactive_settings.LOCK_WAIT
    lock_key = key("lock", oid)
    r = client()
    while not r.set(lock_key, token, nx=True, px=ttl_ms):
        if time.monotonic() > deadline:
            raise ObserverError("The observer is busy with a long evaluation; try again shortly.")
        time.sleep(0.005)
    state = _LockState(oid, token, ttl_ms)
    try:
        yield state
    finally:
        state.changed_meanwhile = release_or_continue(oid, token, ttl_ms, keep=False) == 1
