"""The store side of a table's probe dispatch: what commits leave it, what it decides.

    take      the dispatch task takes the pks and tokens commits pended so far (later
              commits pend anew) and the table's precise observers, its candidates
    read      each candidate's stored result and whether it is busy, one round trip
    release   the dispatch is done: its pending token cleared (unless a later commit
              left another), the observers whose clients waited on it returned

A commit pends (``locks.queue_or_probe``, in its lookup script): the table's
written pks, the commit's token as the table's ``pending`` token and as the
last (and, if none waits, the first) of ``tokens``. Until the dispatch that
took the last token clears it, ``locks.sync`` and ``locks.idle`` hold every
precise observer of the table as not caught up. Every key here is in the
index's slot.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.cluster import RedisCluster

from . import keys
from .connection import client
from .scripts import run_many
from .stats import STATS_TTL

__all__ = ["READ_CHUNK", "Candidate", "Taken", "read", "release", "take", "token"]

# KEYS: pks, tokens, queued flag, precise set, dependency set, then the task's taken pks
# and tokens (one table). The flag goes first, so a commit pending after this sends
# another dispatch. What is taken is renamed, not deleted: a task redelivered after its
# worker died finds it again. The candidates: precise observers still in the index.
_TAKE = """
if redis.call('EXISTS', KEYS[6], KEYS[7]) == 0 then
  redis.call('DEL', KEYS[3])
  if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('RENAME', KEYS[1], KEYS[6]) end
  if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('RENAME', KEYS[2], KEYS[7]) end
end
return {
  redis.call('SMEMBERS', KEYS[6]),
  redis.call('HGETALL', KEYS[7]),
  redis.call('SINTER', KEYS[4], KEYS[5]),
}
"""

# KEYS: observer hash, lock, queued, dirty. ARGV: the version whose result the caller
# holds already ('' if none). Busy or not, the version and, unless it is the caller's,
# the stored result, at one instant.
_READ = """
local busy = redis.call('EXISTS', KEYS[2], KEYS[3], KEYS[4])
local version = redis.call('HGET', KEYS[1], 'version')
if version and version == ARGV[1] then return {busy, version, '', '', ''} end
local got = redis.call('HMGET', KEYS[1], 'spec', 'items', 'invalidation')
return {busy, version or '', got[1] or '', got[2] or '', got[3] or ''}
"""

# The same for every observer whose four keys follow in KEYS, its held version in ARGV:
# one call on a single server, where keys of many slots may meet in one script.
_READ_MANY = """
local found = {}
for i = 1, #KEYS, 4 do
  local busy = redis.call('EXISTS', KEYS[i + 1], KEYS[i + 2], KEYS[i + 3])
  local version = redis.call('HGET', KEYS[i], 'version')
  if version and version == ARGV[(i + 3) / 4] then
    found[#found + 1] = {busy, version, '', '', ''}
  else
    local got = redis.call('HMGET', KEYS[i], 'spec', 'items', 'invalidation')
    found[#found + 1] = {busy, version or '', got[1] or '', got[2] or '', got[3] or ''}
  end
end
return found
"""

#: Observers one ``_READ_MANY`` call reads: bounds the time Redis spends in one script.
READ_CHUNK = 500

# KEYS: pending token, waiting set, taken pks, taken tokens (one table). ARGV: the last
# token taken. Clears the pending token only if no later commit replaced it, and only
# then hands over the waiting observers: a later commit's dispatch answers them.
_RELEASE = """
redis.call('DEL', KEYS[3], KEYS[4])
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {} end
redis.call('DEL', KEYS[1])
local waited = redis.call('SMEMBERS', KEYS[2])
redis.call('DEL', KEYS[2])
return waited
"""


def token(now: float) -> str:
    """A commit's token: its time (the commit stamp of what the dispatch queues)
    and a random part, so that no two commits share one."""
    return f"{now:.6f}-{uuid.uuid4().hex[:12]}"


def _pipelined(r: Redis, script: str, numkeys: int, calls: Sequence[Sequence[Any]]) -> list[Any]:
    """Run ``script`` once per call in one round trip (one per master on a cluster)."""
    return run_many(r, script, [(call[:numkeys], call[numkeys:]) for call in calls])


@dataclass(frozen=True)
class Taken:
    """What a dispatch task took for its table."""

    #: The pks written (``ANY``: more than the cap); empty when nothing was pended.
    pks: set[str]
    #: The first commit's token (its time stamps what is queued) and the last one's.
    first: str
    last: str
    #: The table's precise observers.
    candidates: list[str]


def take(table: str, task: str) -> Taken:
    """Called when a dispatch task starts: what commits pended for ``table`` since the
    last one took it; for a redelivered ``task`` (its id), what it took the first time.
    ``release`` forgets it."""
    pks, flat, candidates = client().eval(
        _TAKE,
        7,
        keys.probe_pks(table),
        keys.probe_tokens(table),
        keys.probe_queued(table),
        keys.precise(table),
        keys.dependents(table),
        *keys.probe_taken(table, task),
    )
    tokens = dict(zip(flat[::2], flat[1::2], strict=True))
    return Taken(set(pks), tokens.get("first", ""), tokens.get("last", ""), sorted(candidates))


@dataclass(frozen=True)
class Candidate:
    """One pended observer as the dispatch read it."""

    oid: str
    #: An evaluation is queued, running or owed: it decides, today's path.
    busy: bool
    #: The stored result's version; empty when the observer is gone.
    version: str
    #: Empty when the observer is gone, or ``unchanged``.
    spec: str
    items: str
    invalidation: str

    @property
    def unchanged(self) -> bool:
        """The result is still at the version the reader said it held: not read again."""
        return bool(self.version) and not self.spec


def read(oids: Sequence[str], held: Mapping[str, str] | None = None) -> list[Candidate]:
    """Each observer's busy state and stored result, in one round trip per 500.

    ``held``: the version of each observer whose spec and result the caller keeps
    from an earlier read; an observer still at it comes back ``unchanged``, without
    them (most of a table's observers did not change since the last dispatch).

    On a cluster, one script per observer (its keys share its slot), pipelined per
    master; on one server, one script per ``READ_CHUNK`` observers (a round trip
    each): a hundred separate replies cost redis-py more than the reads cost Redis.
    """
    held = held or {}
    calls = [
        (keys.observer(oid), keys.lock(oid), keys.queued(oid), keys.dirty(oid), held.get(oid, ""))
        for oid in oids
    ]
    r = client()
    if isinstance(r, RedisCluster):
        found = _pipelined(r, _READ, 4, calls)
    else:
        # A Script in a pipeline asks SCRIPT EXISTS first: one call per chunk instead.
        many = r.register_script(_READ_MANY)
        found = []
        for start in range(0, len(calls), READ_CHUNK):
            chunk = calls[start : start + READ_CHUNK]
            found += many(
                keys=[key for call in chunk for key in call[:4]], args=[call[4] for call in chunk]
            )
    return [
        Candidate(oid, bool(busy), version, spec, items, how)
        for oid, (busy, version, spec, items, how) in zip(oids, found, strict=True)
    ]


def release(
    table: str,
    task: str,
    last: str,
    *,
    skipped: int,
    queries: int,
    decided: bool = True,
) -> list[str]:
    """The dispatch task ``task`` is done with ``table`` (``last``: the last token it
    took): forget what it took, clear the table's pending token unless a later commit
    left another, count the dispatch (if it ``decided`` for any), its ``queries`` and
    the ``skipped`` observers. Returns the observers whose clients waited for it."""
    r = client()
    waited = r.eval(
        _RELEASE,
        4,
        keys.probe_pending(table),
        keys.probe_waiting(table),
        *keys.probe_taken(table, task),
        last,
    )
    pipe = r.pipeline(transaction=False)
    for name, count in (
        (keys.stats_dispatches(), 1 if decided else 0),
        (keys.stats_probes(), queries),
        (keys.stats_skipped(), skipped),
    ):
        if count:
            pipe.incrby(name, count)
            pipe.expire(name, STATS_TTL)
    if len(pipe):
        pipe.execute()
    return sorted(waited)
