"""The store side of a table's probe dispatch: what commits leave it, what it decides.

    pend      a commit leaves its written primary keys and its idle precise observers
              of a table to the table's dispatch; returns whether to send that task
    take      the dispatch task takes everything pended so far (later commits pend anew)
    read      each candidate's stored result and whether it is busy, one round trip
    queue     the observers the dispatch found concerned (or busy): today's path
    release   the observers it found unconcerned: their probing flag cleared, waiting
              clients told the version they already have

Each script touches the keys of one table or of one observer, all passed in ``KEYS``.
A commit sets ``probing:<oid>`` to its token (``locks.queue_or_probe``); the
dispatch clears it only when it still holds the token the dispatch took, so a
commit that pends the observer again keeps it flagged for the next dispatch.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis import Redis

from ..conf import queued_ttl
from . import keys
from .connection import client
from .locks import ANY, STAMP_TTL, TOUCHED_CAP, touched_ttl
from .scripts import run_many
from .stats import STATS_TTL

__all__ = ["Candidate", "pend", "queue", "read", "release", "take", "token"]

# KEYS: pks, observers, queued flag (one table). ARGV: ttl s, queued ttl s, cap, token,
# the number of pks, the pks, then the observer ids. 1: the caller sends the dispatch.
_PEND = """
local n = tonumber(ARGV[5])
if redis.call('SISMEMBER', KEYS[1], '*') == 0 then
  for i = 6, 5 + n do redis.call('SADD', KEYS[1], ARGV[i]) end
  if redis.call('SCARD', KEYS[1]) > tonumber(ARGV[3]) then
    redis.call('DEL', KEYS[1])
    redis.call('SADD', KEYS[1], '*')
  end
end
for i = 6 + n, #ARGV do redis.call('HSET', KEYS[2], ARGV[i], ARGV[4]) end
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[1])
if redis.call('SET', KEYS[3], '1', 'NX', 'EX', ARGV[2]) then return 1 end
return 0
"""

# KEYS: pks, observers, queued flag, then the task's taken pks and observers (one
# table). The flag goes first, so a commit pending after this sends another
# dispatch. What is taken is renamed, not deleted: a task redelivered after its
# worker died finds it again.
_TAKE = """
if redis.call('EXISTS', KEYS[4], KEYS[5]) == 0 then
  redis.call('DEL', KEYS[3])
  if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('RENAME', KEYS[1], KEYS[4]) end
  if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('RENAME', KEYS[2], KEYS[5]) end
end
return {redis.call('SMEMBERS', KEYS[4]), redis.call('HGETALL', KEYS[5])}
"""

# KEYS: observer hash, lock, queued, dirty. Busy or not, and the stored result, at
# one instant.
_READ = """
local busy = redis.call('EXISTS', KEYS[2], KEYS[3], KEYS[4])
local got = redis.call('HMGET', KEYS[1], 'spec', 'items', 'invalidation')
return {busy, got[1] or '', got[2] or '', got[3] or ''}
"""

# KEYS: touched, queued, probing, committed. ARGV: queued ttl s, touched ttl s, cap,
# the token taken, the commit stamp ('' for none), its ttl s, then the entries. The
# queued flag is set before the probing flag goes, so ``sync`` never sees the
# observer idle in between.
_QUEUE = """
if redis.call('SISMEMBER', KEYS[1], '*') == 0 then
  for i = 7, #ARGV do redis.call('SADD', KEYS[1], ARGV[i]) end
  if redis.call('SCARD', KEYS[1]) > tonumber(ARGV[3]) then
    redis.call('DEL', KEYS[1])
    redis.call('SADD', KEYS[1], '*')
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
if ARGV[5] ~= '' then redis.call('SET', KEYS[4], ARGV[5], 'NX', 'EX', ARGV[6]) end
local fresh = redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1])
if redis.call('GET', KEYS[3]) == ARGV[4] then redis.call('DEL', KEYS[3]) end
if fresh then return 1 end
return 0
"""

# KEYS: probing, queued, lock, dirty, waiting, observer hash. ARGV: the token taken.
# The version to announce to waiting clients, or -1 (none waits, a later commit
# still pends the observer, or an evaluation will announce it).
_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
redis.call('DEL', KEYS[1])
if redis.call('EXISTS', KEYS[2], KEYS[3], KEYS[4]) > 0 then return -1 end
if redis.call('DEL', KEYS[5]) == 0 then return -1 end
return tonumber(redis.call('HGET', KEYS[6], 'version') or '-1')
"""


def token(now: float) -> str:
    """A commit's probing token: its time (the commit stamp of what the dispatch queues)
    and a random part, so that no two commits share one."""
    return f"{now:.6f}-{uuid.uuid4().hex[:12]}"


def _pipelined(r: Redis, script: str, numkeys: int, calls: Sequence[Sequence[Any]]) -> list[Any]:
    """Run ``script`` once per call in one round trip (one per master on a cluster)."""
    return run_many(r, script, [(call[:numkeys], call[numkeys:]) for call in calls])


def _table_keys(table: str) -> tuple[str, str, str]:
    return keys.probe_pks(table), keys.probe_observers(table), keys.probe_queued(table)


def pend(
    probing: Mapping[str, Collection[str]], pks: Mapping[str, Collection[str]], token: str
) -> list[str]:
    """Called on commit after ``locks.queue_or_probe``: leave each table's observers and
    written pks to its dispatch. Returns the tables whose dispatch task to send."""
    tables = [table for table in sorted(probing) if probing[table]]
    ttl = touched_ttl()
    calls = [
        (
            *_table_keys(table),
            *(ttl, queued_ttl(), TOUCHED_CAP, token, len(pks[table])),
            *sorted(pks[table]),
            *probing[table],
        )
        for table in tables
    ]
    fresh = _pipelined(client(), _PEND, 3, calls)
    return [table for table, new in zip(tables, fresh, strict=True) if new]


def take(table: str, task: str) -> tuple[set[str], dict[str, str]]:
    """Called when a dispatch task starts: the pks (``ANY``: too many) and the observers
    (id -> token) pended for ``table`` since the last one took them; for a redelivered
    ``task`` (its id), what it took the first time. ``release`` forgets them."""
    pks, flat = client().eval(_TAKE, 5, *_table_keys(table), *keys.probe_taken(table, task))
    return set(pks), dict(zip(flat[::2], flat[1::2], strict=True))


@dataclass(frozen=True)
class Candidate:
    """One pended observer as the dispatch read it."""

    oid: str
    #: An evaluation is queued, running or owed: it decides, today's path.
    busy: bool
    #: Empty when the observer is gone.
    spec: str
    items: str
    invalidation: str


def read(oids: Sequence[str]) -> list[Candidate]:
    """Each observer's busy state and stored result, one script each, one round trip."""
    calls = [
        (keys.observer(oid), keys.lock(oid), keys.queued(oid), keys.dirty(oid)) for oid in oids
    ]
    found = _pipelined(client(), _READ, 4, calls)
    return [
        Candidate(oid, bool(busy), spec, items, how)
        for oid, (busy, spec, items, how) in zip(oids, found, strict=True)
    ]


def queue(
    owed: Mapping[str, Iterable[str]], tokens: Mapping[str, str], *, stamps: bool
) -> list[str]:
    """Record each observer's touched entries and mark it queued, as a commit would;
    clear its probing flag; with ``stamps``, stamp the commit time its token carries
    (``token``). Returns those marked queued now (one task each)."""
    oids = sorted(owed)
    ttl = queued_ttl()
    calls = []
    for oid in oids:
        entries = list(owed[oid])
        if len(entries) > TOUCHED_CAP:
            entries = [ANY]
        token = tokens.get(oid, "")
        stamp = token.partition("-")[0] if stamps else ""
        calls.append(
            (
                *(keys.touched(oid), keys.queued(oid), keys.probing(oid), keys.committed(oid)),
                *(ttl, touched_ttl(), TOUCHED_CAP, token, stamp, STAMP_TTL, *entries),
            )
        )
    fresh = _pipelined(client(), _QUEUE, 4, calls)
    return [oid for oid, new in zip(oids, fresh, strict=True) if new]


def release(
    oids: Sequence[str],
    tokens: Mapping[str, str],
    *,
    skipped: int,
    queries: int,
    taken: tuple[str, str],
    decided: bool = True,
) -> dict[str, int]:
    """Clear the probing flag of observers the dispatch found unconcerned (or gone); count
    the dispatch (if it ``decided`` for any), its ``queries`` and the ``skipped``
    observers; forget what the task
    (``taken``: table, task id) took. Returns oid -> the version to announce to the
    clients waiting on it."""
    r = client()
    calls = [
        (
            *(keys.probing(oid), keys.queued(oid), keys.lock(oid), keys.dirty(oid)),
            *(keys.waiting(oid), keys.observer(oid), tokens.get(oid, "")),
        )
        for oid in oids
    ]
    versions = _pipelined(r, _RELEASE, 6, calls)
    pipe = r.pipeline(transaction=False)
    for name in keys.probe_taken(*taken):
        pipe.delete(name)  # one key a call: a cluster pipeline refuses multi-key DEL
    for name, count in (
        (keys.stats_dispatches(), 1 if decided else 0),
        (keys.stats_probes(), queries),
        (keys.stats_skipped(), skipped),
    ):
        if count:
            pipe.incrby(name, count)
            pipe.expire(name, STATS_TTL)
    pipe.execute()
    return {oid: int(v) for oid, v in zip(oids, versions, strict=True) if int(v) >= 0}
