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


def schedule(oid: str, interval: float) -> None:
    """Called when a polling observer gains a subscriber: poll it from now on.

    An observer already scheduled keeps its due time, so subscribers joining
    do not delay or speed up its polling.
    """
    ttl = max(1, int(reactive_settings.OBSERVER_TTL))
    client().eval(_SCHEDULE, 2, keys.poll(), keys.observer(oid), repr(float(interval)), oid, ttl)


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
        names = [keys.poll()]
        for oid in due:
            names += [keys.observer(oid), keys.observer_subscribers(oid), keys.queued(oid)]
        claimed.extend(claim_script(keys=names, args=[queued_ttl(), *due]))
        if len(due) < CLAIM_BATCH:
            return claimed
