"""The sweep: remove what dead sockets and crashed processes left in Redis.

A socket that closes cleanly unsubscribes itself. One whose ASGI server died
stops renewing its subscriber key, which expires after ``SUBSCRIBER_TTL``; the
sweep then takes that subscriber out of its observers, drops observers left
without subscribers (result, replay buffer, dependency entries, poll entry),
and removes dependency and poll entries that name vanished observers.

A worker killed with its whole process group (SIGKILL, OOM, a lost machine)
leaves its task unacked in the broker until the visibility timeout (an hour
by default) and the observer's ``starts`` counter and lock behind it.
``requeue_crashed()`` finds such observers once the lock has expired (an
evaluation started and never finished, or a change marked it dirty), marks
each queued and returns it; the ``reactive_celery.sweep`` task sends one
evaluation for each, so the change is delivered within the lock's lifetime
plus one ``SWEEP_INTERVAL``.

Beat sends ``reactive_celery.sweep`` every ``SWEEP_INTERVAL`` seconds; tests
and operators may call ``sweep()`` directly. Every step re-checks inside one
Redis script, and an observer is dropped only while its lock is free, so a
sweep never races a subscription or an evaluation in progress.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Iterator

import redis

from ..conf import queued_ttl, reactive_settings
from . import keys, locks, observers
from .connection import client
from .scripts import Call, run_many

__all__ = ["BATCH", "LOCK_MS", "requeue_crashed", "requeue_lost_dispatches", "sweep"]

logger = logging.getLogger("reactive_celery.sweep")  # the name docs/operations.md gives

#: Keys handled per pipeline round trip.
BATCH = 500
#: How long the sweep may hold an observer's lock while dropping it (ms).
LOCK_MS = 5000

# KEYS: sub:<sid>, sub:<sid>:obs, then the subscriber sets of the observers in ARGV[2..].
# ARGV: sid, observer ids. Nothing if the subscriber lives; -1 if it follows an
# observer not passed (it changed since it was read).
_FORGET_SUBSCRIBER = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local given = {}
for i = 2, #ARGV do given[ARGV[i]] = true end
for _, oid in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if not given[oid] then return -1 end
end
for i = 3, #KEYS do redis.call('SREM', KEYS[i], ARGV[1]) end
redis.call('DEL', KEYS[2])
return 1
"""

# KEYS: obs:<oid>, obs:<oid>:subs, lock:<oid>, poll, then sub:<sid> of each sid in ARGV[4..].
# ARGV: oid, token, lock ms, sids.
# Returns {dead subscribers removed, 1 = locked for dropping / 0 = alive / -1 = busy,
# 1 if a lost poll entry was restored}. Subscribers that joined since the read count as alive.
_CHECK_OBSERVER = """
local removed = 0
for i = 4, #ARGV do
  if redis.call('EXISTS', KEYS[i + 1]) == 0 and redis.call('SREM', KEYS[2], ARGV[i]) == 1 then
    removed = removed + 1
  end
end
if redis.call('SCARD', KEYS[2]) > 0 and redis.call('EXISTS', KEYS[1]) == 1 then
  local interval = redis.call('HGET', KEYS[1], 'poll')
  if interval and not redis.call('ZSCORE', KEYS[4], ARGV[1]) then
    -- The schedule expired (beat was down longer than OBSERVER_TTL): poll again.
    local t = redis.call('TIME')
    redis.call('ZADD', KEYS[4], tonumber(t[1]) + tonumber(interval), ARGV[1])
    return {removed, 0, 1}
  end
  return {removed, 0, 0}
end
if redis.call('SET', KEYS[3], ARGV[2], 'NX', 'PX', ARGV[3]) then return {removed, 1, 0} end
return {removed, -1, 0}
"""

# KEYS: a dependency set or the poll zset, then obs:<oid> and obs:<oid>:subs of each
# oid in ARGV[2..]. ARGV: 'set' | 'zset', oids.
_PRUNE_MEMBERS = """
local removed = 0
for i = 2, #ARGV do
  local oid, base = ARGV[i], i * 2 - 2
  local gone = redis.call('EXISTS', KEYS[base]) == 0
  if ARGV[1] == 'zset' and not gone then gone = redis.call('SCARD', KEYS[base + 1]) == 0 end
  if gone then
    local taken
    if ARGV[1] == 'zset' then
      taken = redis.call('ZREM', KEYS[1], oid)
    else
      taken = redis.call('SREM', KEYS[1], oid)
    end
    removed = removed + taken
  end
end
return removed
"""


# KEYS: obs:<oid>, lock:<oid>, queued:<oid>, starts:<oid>, dirty:<oid>, touched:<oid>.
# ARGV: queued ttl (s). 1: its evaluation died (no lock, no task waiting, yet started or
# dirty); 2: a change was recorded but no task took it (its message was lost: a worker
# killed between taking it from the broker and recording it unacked); either is marked queued.
_REQUEUE_CRASHED = """
if redis.call('EXISTS', KEYS[2]) == 1 or redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
local crashed = redis.call('EXISTS', KEYS[4]) == 1 or redis.call('EXISTS', KEYS[5]) == 1
if not crashed and redis.call('EXISTS', KEYS[6]) == 0 then return 0 end
if redis.call('EXISTS', KEYS[1]) == 0 then
  -- Left by an observer dropped since: nothing to evaluate.
  redis.call('DEL', KEYS[4], KEYS[5], KEYS[6])
  return 0
end
redis.call('SET', KEYS[3], '1', 'EX', ARGV[1])
return crashed and 1 or 2
"""


def _batches(r: redis.Redis, pattern: str) -> Iterator[list[str]]:
    batch: list[str] = []
    for name in r.scan_iter(match=pattern, count=1000):
        batch.append(name)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


_id_in = keys.id_in


def _forget_dead_subscribers(r: redis.Redis, report: Counter[str]) -> None:
    for names in _batches(r, keys.pattern("sub", "*", "obs")):
        sids = [_id_in(name) for name in names]
        read = r.pipeline(transaction=False)
        for sid in sids:
            read.exists(keys.subscriber(sid))
            read.smembers(keys.subscriber_observers(sid))
        found = read.execute()
        dead = {
            sid: sorted(found[2 * index + 1])
            for index, sid in enumerate(sids)
            if not found[2 * index]
        }
        if keys.clustered():
            report["subscribers"] += _forget_on_cluster(r, dead)
            continue
        calls = []
        for sid, followed in dead.items():
            script_keys = [keys.subscriber(sid), keys.subscriber_observers(sid)]
            script_keys += [keys.observer_subscribers(oid) for oid in followed]
            calls.append((script_keys, [sid, *followed]))
        report["subscribers"] += sum(
            1 for done in run_many(r, _FORGET_SUBSCRIBER, calls) if done == 1
        )


# ``_FORGET_SUBSCRIBER``'s subscriber half on a cluster. KEYS: sub:<sid>, sub:<sid>:obs.
# The subscriber came back ({1, observers it follows}) or its set is gone ({0}).
_FORGET_OWN = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  local held = redis.call('SMEMBERS', KEYS[2])
  table.insert(held, 1, 1)
  return held
end
redis.call('DEL', KEYS[2])
return {0}
"""


def _forget_on_cluster(r: redis.Redis, dead: dict[str, list[str]]) -> int:
    """Take dead subscribers off their observers, then drop their sets; the count dropped.

    The observers' side first, the subscriber's last: a crash between leaves the
    subscriber's set, and the next sweep does it again. A subscriber that comes
    back meanwhile (its id registered again, an observer subscribed again) is put
    back on the observers it follows now: ``subscribers.subscribe`` writes the
    subscriber's side before the observer's, so the check after the removal sees
    every subscription whose observer side the removal could have taken.
    """
    if not dead:
        return 0
    pipe = r.pipeline(transaction=False)
    for sid, followed in dead.items():
        for oid in followed:
            pipe.srem(keys.observer_subscribers(oid), sid)
    if len(pipe):
        pipe.execute()
    calls: list[Call] = [
        ([keys.subscriber(sid), keys.subscriber_observers(sid)], []) for sid in dead
    ]
    answers = run_many(r, _FORGET_OWN, calls)
    _put_back(
        r,
        [
            (sid, oid)
            for sid, (back, *now) in zip(dead, answers, strict=True)
            if back == 1
            for oid in set(now) & set(dead[sid])
        ],
    )
    return sum(1 for back, *_ in answers if back == 0)


def _put_back(r: redis.Redis, pairs: list[tuple[str, str]]) -> None:
    """Subscribers found alive after the sweep took them off: (sid, oid) to restore."""
    if not pairs:
        return
    ttl = keys.ttl_seconds(reactive_settings.OBSERVER_TTL)
    pipe = r.pipeline(transaction=False)
    for sid, oid in pairs:
        pipe.sadd(keys.observer_subscribers(oid), sid)
        pipe.expire(keys.observer_subscribers(oid), ttl)
    pipe.execute()


def _observer_ids(r: redis.Redis) -> Iterator[list[str]]:
    for names in _batches(r, keys.pattern("obs", "*")):
        yield sorted({_id_in(name) for name in names})


def _drop_abandoned_observers(r: redis.Redis, report: Counter[str]) -> None:
    for oids in _observer_ids(r):
        token = uuid.uuid4().hex
        read = r.pipeline(transaction=False)
        for oid in oids:
            read.smembers(keys.observer_subscribers(oid))
        members = [sorted(found) for found in read.execute()]
        if keys.clustered():
            states = _check_on_cluster(r, oids, members, token, report)
        else:
            calls = []
            for oid, sids in zip(oids, members, strict=True):
                names = [keys.observer(oid), keys.observer_subscribers(oid), keys.lock(oid)]
                names += [keys.poll(), *(keys.subscriber(sid) for sid in sids)]
                calls.append((names, [oid, token, LOCK_MS, *sids]))
            states = []
            for removed, state, restored in run_many(r, _CHECK_OBSERVER, calls):
                report["subscriptions"] += removed
                report["rescheduled"] += restored
                states.append(state)
        for oid, state in zip(oids, states, strict=True):
            if state == 1:
                try:
                    observers.drop(oid)
                    report["observers"] += 1
                finally:
                    locks.finish(oid, token, keep=False)
                logger.info("Swept observer %s: no live subscribers", oid, extra={"observer": oid})


# ``_CHECK_OBSERVER``'s observer half on a cluster. KEYS: obs:<oid>, obs:<oid>:subs,
# lock:<oid>. ARGV: token, lock ms, the subscribers found dead. Returns {removed,
# 1 = locked for dropping / 0 = alive / -1 = busy, its poll interval or ''}.
_CHECK_OWN = """
local removed = 0
for i = 3, #ARGV do removed = removed + redis.call('SREM', KEYS[2], ARGV[i]) end
if redis.call('SCARD', KEYS[2]) > 0 and redis.call('EXISTS', KEYS[1]) == 1 then
  return {removed, 0, redis.call('HGET', KEYS[1], 'poll') or ''}
end
if redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[2]) then return {removed, 1, ''} end
return {removed, -1, ''}
"""

# KEYS: poll zset. ARGV: pairs of oid, interval. Schedules those the schedule lost.
_RESCHEDULE = """
local t = redis.call('TIME')
local added = 0
for i = 1, #ARGV, 2 do
  added = added + redis.call('ZADD', KEYS[1], 'NX', tonumber(t[1]) + tonumber(ARGV[i + 1]), ARGV[i])
end
return added
"""


def _check_on_cluster(
    r: redis.Redis, oids: list[str], members: list[list[str]], token: str, report: Counter[str]
) -> list[int]:
    """``_CHECK_OBSERVER`` per slot: which subscribers are dead, the observer, the schedule.

    Dead subscribers are read first, then taken off in the observer's script,
    then read again: one that came back meanwhile and follows the observer is
    put back, and an observer about to be dropped for it is kept (its lock given
    back). The lost poll entries are put back last, as the single script does.
    """
    read = r.pipeline(transaction=False)
    for sids in members:
        for sid in sids:
            read.exists(keys.subscriber(sid))
    alive = iter(read.execute() if any(members) else [])
    dead = [[sid for sid in sids if not next(alive)] for sids in members]
    calls = [
        (
            [keys.observer(oid), keys.observer_subscribers(oid), keys.lock(oid)],
            [token, LOCK_MS, *gone],
        )
        for oid, gone in zip(oids, dead, strict=True)
    ]
    answers = run_many(r, _CHECK_OWN, calls)
    recheck = r.pipeline(transaction=False)
    pairs = [(sid, oid) for oid, gone in zip(oids, dead, strict=True) for sid in gone]
    for sid, oid in pairs:
        recheck.sismember(keys.subscriber_observers(sid), oid)
        recheck.exists(keys.subscriber(sid))
    found = recheck.execute() if pairs else []
    back = [pair for i, pair in enumerate(pairs) if found[2 * i] and found[2 * i + 1]]
    _put_back(r, back)
    revived = {oid for _, oid in back}
    states, lost = [], []
    for oid, (removed, state, interval) in zip(oids, answers, strict=True):
        report["subscriptions"] += removed
        if state == 1 and oid in revived:
            locks.finish(oid, token, keep=False)
            state = 0
        if state == 0 and interval:
            lost += [oid, interval]
        states.append(state)
    if lost:
        report["rescheduled"] += int(r.eval(_RESCHEDULE, 1, keys.poll(), *lost))
    return states


def _prune(
    r: redis.Redis, names: list[str], kind: str, report_key: str, report: Counter[str]
) -> None:
    read = r.pipeline(transaction=False)
    for name in names:
        if kind == "zset":
            read.zrange(name, 0, -1)
        else:
            read.smembers(name)
    calls = []
    for name, members in zip(names, read.execute() if names else [], strict=True):
        oids = sorted(members)
        if not oids:
            continue
        if keys.clustered():
            report[report_key] += _prune_on_cluster(r, name, kind, oids)
            continue
        script_keys = [name]
        for oid in oids:
            script_keys += [keys.observer(oid), keys.observer_subscribers(oid)]
        calls.append((script_keys, [kind, *oids]))
    report[report_key] += sum(run_many(r, _PRUNE_MEMBERS, calls))


# ``_PRUNE_MEMBERS``'s observer half on a cluster. KEYS: obs:<oid>, obs:<oid>:subs, lock:<oid>.
# ARGV: 'set' | 'zset', token, lock ms. 1: gone, and locked so that nothing creates it meanwhile.
_PRUNE_OWN = """
local gone = redis.call('EXISTS', KEYS[1]) == 0
if ARGV[1] == 'zset' and not gone then gone = redis.call('SCARD', KEYS[2]) == 0 end
if gone and redis.call('SET', KEYS[3], ARGV[2], 'NX', 'PX', ARGV[3]) then return 1 end
return 0
"""

# KEYS: a dependency set or the poll zset. ARGV: 'set' | 'zset', oids. The count removed.
_REMOVE_MEMBERS = """
local removed = 0
for i = 2, #ARGV do
  if ARGV[1] == 'zset' then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  else
    removed = removed + redis.call('SREM', KEYS[1], ARGV[i])
  end
end
return removed
"""


def _prune_on_cluster(r: redis.Redis, name: str, kind: str, oids: list[str]) -> int:
    """Take vanished observers out of one index key, each under its observer's lock.

    The index and the observer hash apart, so "gone" cannot be checked in the
    script that removes. Subscriptions create an observer and evaluations save it
    under its lock, and ``observers.save`` joins the index before it writes: an
    observer found gone while the sweep holds its lock cannot have joined since.
    """
    token = uuid.uuid4().hex
    calls = [
        (
            [keys.observer(oid), keys.observer_subscribers(oid), keys.lock(oid)],
            [kind, token, LOCK_MS],
        )
        for oid in oids
    ]
    held = [oid for oid, locked in zip(oids, run_many(r, _PRUNE_OWN, calls), strict=True) if locked]
    if not held:
        return 0
    try:
        return int(r.eval(_REMOVE_MEMBERS, 1, name, kind, *held))
    finally:
        for oid in held:
            locks.finish(oid, token, keep=False)


# What the warning says of each kind ``_REQUEUE_CRASHED`` finds.
_LOST = {
    1: "its evaluation never finished (worker lost)",
    2: "a change reached no task (its message was lost)",
}


def requeue_crashed() -> list[str]:
    """Observers whose evaluation died with its worker, or whose task was lost, each
    marked queued; one task each.

    Called by the ``reactive_celery.sweep`` task after ``sweep()``, which sends
    the evaluations. An observer whose lock is held (an evaluation in progress,
    or one whose lock has not expired yet) or that has a task waiting is left alone.
    A change whose task was lost shows as a touched set outliving its queued flag:
    the broker cannot give that message back, only this can.
    """
    r = client()
    candidates: set[str] = set()
    for kind in ("starts", "dirty", "touched"):
        for names in _batches(r, keys.pattern(kind, "*")):
            candidates.update(_id_in(name) for name in names)
    oids = sorted(candidates)
    requeued: list[str] = []
    ttl = queued_ttl()
    for start in range(0, len(oids), BATCH):
        batch = oids[start : start + BATCH]
        calls = []
        for oid in batch:
            names = [keys.observer(oid), keys.lock(oid), keys.queued(oid)]
            names += [keys.starts(oid), keys.dirty(oid), keys.touched(oid)]
            calls.append((names, [ttl]))
        answers = run_many(r, _REQUEUE_CRASHED, calls)
        for oid, found in zip(batch, answers, strict=True):
            if found:
                requeued.append(oid)
                logger.warning(
                    "Requeued observer %s: %s",
                    oid,
                    _LOST[found],
                    extra={"observer": oid},
                )
    return requeued


# KEYS: probe:<table>:tokens, probe:<table>:queued (one table). ARGV: queued ttl (s).
# 1: commits left changes to the table's dispatch and no dispatch task waits for
# them (its message was lost); marked queued.
_REQUEUE_DISPATCH = """
if redis.call('EXISTS', KEYS[2]) == 1 or redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], '1', 'EX', ARGV[1])
return 1
"""


def requeue_lost_dispatches() -> list[str]:
    """Tables whose probe dispatch task was lost, each marked queued; one task each.

    What commits pend for a dispatch outlives its queued flag (``locks.touched_ttl``),
    so a task lost between the broker's pop and its unacked record shows as pended
    tokens with no flag. Until a dispatch decides, the table's precise observers are
    not idle.
    """
    r = client()
    tables: set[str] = set()
    for names in _batches(r, keys.probe_tokens_pattern()):
        for name in names:
            table = keys.table_of_probe_tokens(name)
            if name == keys.probe_tokens(table):  # not a running dispatch's taken keys
                tables.add(table)
    ordered = sorted(tables)
    calls: list[Call] = [
        ([keys.probe_tokens(t), keys.probe_queued(t)], [queued_ttl()]) for t in ordered
    ]
    lost = [
        t for t, done in zip(ordered, run_many(r, _REQUEUE_DISPATCH, calls), strict=True) if done
    ]
    for table in lost:
        logger.warning(
            "Requeued the probe dispatch of %s: its task was lost",
            table,
            extra={"table": table},
        )
    return lost


def sweep() -> dict[str, int]:
    """Remove expired subscribers and abandoned observers; return what was removed.

    Called by the ``reactive_celery.sweep`` task, or directly.
    """
    r = client()
    report: Counter[str] = Counter()
    _forget_dead_subscribers(r, report)
    _drop_abandoned_observers(r, report)
    for names in _batches(r, keys.pattern("dep", "*")):
        _prune(r, names, "set", "dependencies", report)
    for names in _batches(r, keys.pattern("precise", "*")):
        _prune(r, names, "set", "dependencies", report)
    _prune(r, [keys.poll()], "zset", "polls", report)
    removed = {name: count for name, count in report.items() if count}
    if removed:
        logger.info("Sweep removed %s", removed, extra={"swept": removed})
    return {
        name: report[name]
        for name in (
            "subscribers",
            "subscriptions",
            "observers",
            "dependencies",
            "polls",
            "rescheduled",
        )
    }
