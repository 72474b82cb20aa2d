"""The polling schedule: a zset in Redis that ``celery beat`` drains once a second.

A subscription puts a polling observer in the schedule; dropping the observer
(last subscriber gone, sweep, error) takes it out. The poll task claims the
due observers in one script that also moves each to its next due time, so two
beats, a restarted beat or a backlog of poll tasks never evaluate an observer
more often than its interval. Times come from Redis's clock, so hosts with
skewed clocks agree.
"""

from __future__ import annotations

from ..conf import queued_ttl, reactive_settings
from . import keys
from .connection import client

__all__ = ["CLAIM_BATCH", "claim_due", "schedule"]

#: Observers claimed per script call; a claim loops until none are left.
CLAIM_BATCH = 500

# KEYS: poll zset, obs hash. ARGV: interval, oid, zset ttl.
_SCHEDULE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('HSET', KEYS[2], 'poll', ARGV[1])
redis.call('ZADD', KEYS[1], 'NX', now + tonumber(ARGV[1]), ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
"""

# ``_SCHEDULE``'s schedule half on a cluster. KEYS: poll zset. ARGV: interval, oid, zset ttl.
_SCHEDULE_INDEX = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZADD', KEYS[1], 'NX', now + tonumber(ARGV[1]), ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
"""

# KEYS: poll zset. ARGV: batch size, zset ttl.
# Renews the zset on every call, so a schedule with long intervals outlives its quiet times.
_DUE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[1])
"""

# KEYS: poll zset, then obs hash, obs subs, queued flag of each oid in ARGV[2..].
# ARGV: queued ttl, oids.
# Due observers move to max(due + interval, now + interval): a steady rate that
# never bursts to catch up after beat was down. Observers that lost their state
# or their last subscriber leave the schedule instead. One no longer due was
# claimed by another poll task since it was read.
_CLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local claimed = {}
for i = 2, #ARGV do
  local oid, base = ARGV[i], 2 + (i - 2) * 3
  local due = redis.call('ZSCORE', KEYS[1], oid)
  if due and tonumber(due) <= now then
    local raw = redis.call('HGET', KEYS[base], 'poll')
    local interval = raw and tonumber(raw) or 0
    if interval <= 0 or redis.call('SCARD', KEYS[base + 1]) == 0 then
      redis.call('ZREM', KEYS[1], oid)
    else
      local next_due = tonumber(due) + interval
      if next_due <= now then next_due = now + interval end
      redis.call('ZADD', KEYS[1], next_due, oid)
      if redis.call('SET', KEYS[base + 2], '1', 'NX', 'EX', ARGV[1]) then
        table.insert(claimed, oid)
      end
    end
  end
end
return claimed
"""


# ``_CLAIM`` on a cluster, the schedule's half. KEYS: poll zset.
# ARGV: then per due oid: oid, its interval ('0': leave the schedule). Returns the oids moved.
_CLAIM_INDEX = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local moved = {}
for i = 1, #ARGV, 2 do
  local oid, interval = ARGV[i], tonumber(ARGV[i + 1])
  local due = redis.call('ZSCORE', KEYS[1], oid)
  if due and tonumber(due) <= now then
    if interval <= 0 then
      redis.call('ZREM', KEYS[1], oid)
    else
      local next_due = tonumber(due) + interval
      if next_due <= now then next_due = now + interval end
      redis.call('ZADD', KEYS[1], next_due, oid)
      table.insert(moved, oid)
    end
  end
end
return moved
"""


def schedule(oid: str, interval: float) -> None:
    """Called when a polling observer gains a subscriber: poll it from now on.

    An observer already scheduled keeps its due time, so subscribers joining
    do not delay or speed up its polling.
    """
    ttl = max(1, int(reactive_settings.OBSERVER_TTL))
    interval_arg = repr(float(interval))
    if not keys.clustered():
        client().eval(_SCHEDULE, 2, keys.poll(), keys.observer(oid), interval_arg, oid, ttl)
        return
    # The schedule and the observer hash apart. The interval first: an observer left
    # with one and no schedule entry (a crash between) is put back by the sweep.
    r = client()
    r.hset(keys.observer(oid), "poll", interval_arg)
    r.eval(_SCHEDULE_INDEX, 1, keys.poll(), interval_arg, oid, ttl)


def claim_due() -> list[str]:
    """Take every due polling observer and move it to its next due time.

    Returns the claimed ids not already queued for evaluation; the caller
    enqueues one evaluation for each.
    """
    r = client()
    due_script, claim_script = r.register_script(_DUE), r.register_script(_CLAIM)
    ttl = max(1, int(reactive_settings.OBSERVER_TTL))
    claimed: list[str] = []
    while True:
        due = list(due_script(keys=[keys.poll()], args=[CLAIM_BATCH, ttl]))
        if not due:
            return claimed
        if keys.clustered():
            claimed.extend(_claim_on_cluster(due))
            if len(due) < CLAIM_BATCH:
                return claimed
            continue
        names = [keys.poll()]
        for oid in due:
            names += [keys.observer(oid), keys.observer_subscribers(oid), keys.queued(oid)]
        claimed.extend(claim_script(keys=names, args=[queued_ttl(), *due]))
        if len(due) < CLAIM_BATCH:
            return claimed


def _claim_on_cluster(due: list[str]) -> list[str]:
    """``_CLAIM`` in three steps: read the observers, move them in the schedule, flag them.

    The move is one script over the schedule, so two beats still never claim one
    observer twice per interval. What it read of the observers may be stale: one
    that gained its first subscriber since leaves the schedule, and the sweep puts
    it back (it restores lost entries of polled observers with subscribers); a
    crash after the move skips one poll of those observers.
    """
    r = client()
    read = r.pipeline(transaction=False)
    for oid in due:
        read.hget(keys.observer(oid), "poll")
        read.scard(keys.observer_subscribers(oid))
    found = read.execute()
    args: list[str] = []
    for index, oid in enumerate(due):
        raw, subscribed = found[2 * index], found[2 * index + 1]
        args += [oid, raw if raw and subscribed else "0"]
    moved = list(r.eval(_CLAIM_INDEX, 1, keys.poll(), *args))
    flag = r.pipeline(transaction=False)
    for oid in moved:
        flag.set(keys.queued(oid), "1", nx=True, ex=queued_ttl())
    return [oid for oid, fresh in zip(moved, flag.execute() if moved else [], strict=True) if fresh]
