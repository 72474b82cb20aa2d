"""The sweep: remove what dead sockets and crashed processes left in Redis.

A socket that closes cleanly unsubscribes itself. One whose ASGI server died
stops renewing ``sub:<sid>``, which expires after ``SUBSCRIBER_TTL``; the sweep
then takes that subscriber out of its observers, drops observers left without
subscribers (result, replay buffer, dependency entries, poll entry), and
removes dependency and poll entries that name vanished observers.

Beat sends ``reactive_celery.sweep`` every ``SWEEP_INTERVAL`` seconds; tests
and operators may call ``sweep()`` directly. Every step re-checks inside one
Redis script, and an observer is dropped only while its lock is free, so a
sweep never races a subscription or an evaluation in progress.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections import Counter
from collections.abc import Iterator

import redis
from celery import shared_task

from . import coordination, store

__all__ = ["key_pattern", "sweep", "sweep_task"]

logger = logging.getLogger(__name__)

#: Keys handled per pipeline round trip.
BATCH = 500
#: How long the sweep may hold an observer's lock while dropping it (ms).
LOCK_MS = 5000

# KEYS: sub:<sid>, sub:<sid>:obs; ARGV: prefix, sid. Nothing if the subscriber lives.
_FORGET_SUBSCRIBER = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local observers = redis.call('SMEMBERS', KEYS[2])
for _, oid in ipairs(observers) do
  redis.call('SREM', ARGV[1] .. 'obs:' .. oid .. ':subs', ARGV[2])
end
redis.call('DEL', KEYS[2])
return 1
"""

# KEYS: obs:<oid>, obs:<oid>:subs, lock:<oid>, poll; ARGV: prefix, oid, token, lock ms.
# Returns {dead subscribers removed, 1 = locked for dropping / 0 = alive / -1 = busy,
# 1 if a lost poll entry was restored}.
_CHECK_OBSERVER = """
local removed = 0
for _, sid in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if redis.call('EXISTS', ARGV[1] .. 'sub:' .. sid) == 0 then
    redis.call('SREM', KEYS[2], sid)
    removed = removed + 1
  end
end
if redis.call('SCARD', KEYS[2]) > 0 and redis.call('EXISTS', KEYS[1]) == 1 then
  local interval = redis.call('HGET', KEYS[1], 'poll')
  if interval and not redis.call('ZSCORE', KEYS[4], ARGV[2]) then
    -- The schedule expired (beat was down longer than OBSERVER_TTL): poll again.
    local t = redis.call('TIME')
    redis.call('ZADD', KEYS[4], tonumber(t[1]) + tonumber(interval), ARGV[2])
    return {removed, 0, 1}
  end
  return {removed, 0, 0}
end
if redis.call('SET', KEYS[3], ARGV[3], 'NX', 'PX', ARGV[4]) then return {removed, 1, 0} end
return {removed, -1, 0}
"""

# KEYS: a dependency set or the poll zset; ARGV: prefix, 'set' | 'zset'.
_PRUNE_MEMBERS = """
local members
if ARGV[2] == 'zset' then
  members = redis.call('ZRANGE', KEYS[1], 0, -1)
else
  members = redis.call('SMEMBERS', KEYS[1])
end
local removed = 0
for _, oid in ipairs(members) do
  local obs = ARGV[1] .. 'obs:' .. oid
  local gone = redis.call('EXISTS', obs) == 0
  if ARGV[2] == 'zset' and not gone then gone = redis.call('SCARD', obs .. ':subs') == 0 end
  if gone then
    if ARGV[2] == 'zset' then
      redis.call('ZREM', KEYS[1], oid)
    else
      redis.call('SREM', KEYS[1], oid)
    end
    removed = removed + 1
  end
end
return removed
"""


def key_pattern(*parts: str) -> str:
    """A SCAN pattern for keys under the prefix; glob characters in the prefix match literally."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", store.key("")) + ":".join(parts)


def _batches(r: redis.Redis, pattern: str) -> Iterator[list[str]]:
    batch: list[str] = []
    for name in r.scan_iter(match=pattern, count=1000):
        batch.append(name)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _forget_dead_subscribers(r: redis.Redis, report: Counter[str]) -> None:
    script = r.register_script(_FORGET_SUBSCRIBER)
    prefix = store.key("")
    for names in _batches(r, key_pattern("sub", "*", "obs")):
        pipe = r.pipeline(transaction=False)
        for name in names:
            sid = name[len(prefix) :].split(":")[1]
            script(keys=[store.key("sub", sid), name], args=[prefix, sid], client=pipe)
        report["subscribers"] += sum(pipe.execute())


def _observer_ids(r: redis.Redis) -> Iterator[list[str]]:
    prefix = store.key("obs", "")
    for names in _batches(r, key_pattern("obs", "*")):
        yield sorted({name[len(prefix) :].split(":")[0] for name in names})


def _drop_abandoned_observers(r: redis.Redis, report: Counter[str]) -> None:
    script = r.register_script(_CHECK_OBSERVER)
    prefix, poll_key = store.key(""), store.key("poll")
    for oids in _observer_ids(r):
        token = uuid.uuid4().hex
        pipe = r.pipeline(transaction=False)
        for oid in oids:
            keys = [store.key("obs", oid), store.key("obs", oid, "subs"), store.key("lock", oid)]
            script(keys=[*keys, poll_key], args=[prefix, oid, token, LOCK_MS], client=pipe)
        for oid, (removed, state, restored) in zip(oids, pipe.execute(), strict=True):
            report["subscriptions"] += removed
            report["rescheduled"] += restored
            if state == 1:
                try:
                    store.drop_observer(oid)
                    report["observers"] += 1
                finally:
                    coordination.release_or_continue(oid, token, LOCK_MS, keep=False)
                logger.info("Swept observer %s: no live subscribers", oid, extra={"observer": oid})


def _prune(r: redis.Redis, pattern: str, kind: str, report_key: str, report: Counter[str]) -> None:
    script = r.register_script(_PRUNE_MEMBERS)
    prefix = store.key("")
    for names in _batches(r, pattern):
        pipe = r.pipeline(transaction=False)
        for name in names:
            script(keys=[name], args=[prefix, kind], client=pipe)
        report[report_key] += sum(pipe.execute())


def sweep() -> dict[str, int]:
    """Remove expired subscribers and abandoned observers; return what was removed.

    Called by the ``reactive_celery.sweep`` task, or directly.
    """
    r = store.client()
    report: Counter[str] = Counter()
    _forget_dead_subscribers(r, report)
    _drop_abandoned_observers(r, report)
    _prune(r, key_pattern("dep", "*"), "set", "dependencies", report)
    _prune(r, key_pattern("poll"), "zset", "polls", report)
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


@shared_task(name="reactive_celery.sweep", ignore_result=True, serializer="json")
def sweep_task() -> dict[str, int]:
    """Sent by beat every ``SWEEP_INTERVAL`` seconds: run ``sweep()``."""
    return sweep()
