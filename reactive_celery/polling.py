"""Polling observers: a schedule in Redis that ``celery beat`` drains once a second.

    @reactive(poll_interval=5)            # re-evaluated every 5 s while subscribed
    class ClockViewSet(viewsets.ViewSet): ...

Keys (under ``KEY_PREFIX``)::

    poll               zset  observer id -> Redis time (s) it is next due
    obs:<oid>  "poll"  field its interval in seconds

A subscription puts the observer in ``poll``; dropping the observer (last
subscriber gone, sweep, error) takes it out. The ``reactive_celery.poll`` task,
sent by beat every second, claims the due observers in one script that also
moves each to its next due time, so two beats, a restarted beat or a backlog of
poll tasks never evaluate an observer more often than its interval. Times come
from Redis's clock, so hosts with skewed clocks agree.
"""

from __future__ import annotations

import logging
import math

from celery import shared_task

from . import store
from .conf import reactive_settings

__all__ = ["claim_due", "poll", "schedule"]

logger = logging.getLogger(__name__)

#: Observers claimed per script call; a poll task loops until none are left.
CLAIM_BATCH = 500

_SCHEDULE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('HSET', KEYS[2], 'poll', ARGV[1])
redis.call('ZADD', KEYS[1], 'NX', now + tonumber(ARGV[1]), ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
"""

# Due observers move to max(due + interval, now + interval): a steady rate that
# never bursts to catch up after beat was down. Observers that lost their state
# or their last subscriber leave the schedule instead.
_CLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local prefix = ARGV[1]
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, ARGV[3])
local claimed = {}
for i = 1, #due, 2 do
  local oid = due[i]
  local obs = prefix .. 'obs:' .. oid
  local raw = redis.call('HGET', obs, 'poll')
  local interval = raw and tonumber(raw) or 0
  if interval <= 0 or redis.call('SCARD', obs .. ':subs') == 0 then
    redis.call('ZREM', KEYS[1], oid)
  else
    local next_due = tonumber(due[i + 1]) + interval
    if next_due <= now then next_due = now + interval end
    redis.call('ZADD', KEYS[1], next_due, oid)
    if redis.call('SET', prefix .. 'queued:' .. oid, '1', 'NX', 'EX', ARGV[4]) then
      table.insert(claimed, oid)
    end
  end
end
-- Renewed on every call, so a schedule with long intervals outlives its quiet times.
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return {claimed, #due / 2}
"""


def schedule(oid: str, interval: float) -> None:
    """Called when a polling observer gains a subscriber: poll it from now on.

    An observer already scheduled keeps its due time, so subscribers joining
    do not delay or speed up its polling.
    """
    ttl = max(1, int(reactive_settings.OBSERVER_TTL))
    store.client().eval(
        _SCHEDULE, 2, store.key("poll"), store.key("obs", oid), repr(float(interval)), oid, ttl
    )


def claim_due() -> list[str]:
    """Take every due polling observer and move it to its next due time.

    Returns the claimed ids not already queued for evaluation; the caller
    enqueues one evaluation for each.
    """
    ttl = max(1, int(reactive_settings.OBSERVER_TTL))
    # As for writes: a task lost with its broker must not block the observer for long.
    queued_ttl = max(30, math.ceil(2 * reactive_settings.EVALUATION_TIME_LIMIT))
    claimed: list[str] = []
    while True:
        batch, seen = store.client().eval(
            _CLAIM, 1, store.key("poll"), store.key(""), ttl, CLAIM_BATCH, queued_ttl
        )
        claimed.extend(batch)
        if int(seen) < CLAIM_BATCH:
            return claimed


@shared_task(name="reactive_celery.poll", ignore_result=True, serializer="json")
def poll() -> int:
    """Sent by beat every second: enqueue ``evaluate`` for each due polling observer."""
    from .tasks import enqueue_evaluation

    claimed = claim_due()
    for oid in claimed:
        enqueue_evaluation(oid)
    if claimed:
        logger.debug("Polled %d observers", len(claimed), extra={"observers": len(claimed)})
    return len(claimed)
