"""Reactive state in Redis: observers, subscribers, dependencies, locks.

Keys (all under ``KEY_PREFIX``, all with a lifetime)::

    obs:<oid>          hash  spec, items, meta, version, tables, creator, evaluations
    obs:<oid>:subs     set   subscriber ids
    obs:<oid>:log      list  the last REPLAY_BUFFER diffs, newest first (JSON)
    sub:<sid>          hash  channel, user
    sub:<sid>:obs      set   observer ids
    dep:<table>        set   observer ids that read the table
    queued:<oid>       flag  an evaluate task is waiting in the broker
    lock:<oid>         token the evaluation in progress
    dirty:<oid>        flag  a change arrived during the evaluation
    retry:<oid>        flag  a contended task scheduled a retry
    starts:<oid>       count evaluations started and not finished (crash cap)
    watch              zset  observers being created, scored by expiry: queued for any table
    poll               zset  polling observer ids, scored by next due time (polling.py)
    stats:*            evaluation count, timings, last errors (stats.py)

Values are JSON or plain strings; nothing is pickled.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis

from .conf import reactive_settings
from .exceptions import ConfigurationError, ForeignSubscriber

__all__ = [
    "Observer",
    "Subscriber",
    "client",
    "count_evaluation",
    "drop_observer",
    "forget_dependency",
    "get_subscriber",
    "heartbeat",
    "is_subscribed",
    "key",
    "load_observer",
    "now_ms",
    "record_diff",
    "register_subscriber",
    "remove_subscriber",
    "replay",
    "reset_client",
    "save_observer",
    "subscribe",
    "subscribers",
    "subscription_count",
    "ttl_seconds",
    "unsubscribe",
]

_client: redis.Redis | None = None


def client() -> redis.Redis:
    """The process-wide Redis client for reactive state."""
    global _client
    if _client is None:
        url = reactive_settings.REDIS_URL
        if not url:
            raise ConfigurationError(
                "No Redis for reactive_celery: set REACTIVE_CELERY['REDIS_URL'] or REDIS_URL."
            )
        _client = redis.Redis.from_url(url, decode_responses=True, health_check_interval=30)
    return _client


def reset_client() -> None:
    """Drop the cached client; the next call connects anew (settings changed)."""
    global _client
    _client = None


def ttl_seconds(value: float) -> int:
    """Whole seconds for EXPIRE; never 0, which would delete the key at once."""
    return max(1, math.ceil(value))


def key(*parts: str) -> str:
    """A key under the configured prefix."""
    return ":".join((reactive_settings.KEY_PREFIX, *parts))


def _observer_keys(oid: str) -> tuple[str, str, str]:
    return key("obs", oid), key("obs", oid, "subs"), key("obs", oid, "log")


def _subscriber_keys(sid: str) -> tuple[str, str]:
    return key("sub", sid), key("sub", sid, "obs")


# --- subscribers -----------------------------------------------------------


@dataclass(frozen=True)
class Subscriber:
    """A live socket: its channel-layer name and the pk of its user ("" if anonymous)."""

    id: str
    channel: str
    user: str


_REGISTER = """
local current = redis.call('HGET', KEYS[1], 'user')
if current and current ~= ARGV[2] then return -1 end
redis.call('HSET', KEYS[1], 'channel', ARGV[1], 'user', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('EXPIRE', KEYS[2], ARGV[3]) end
return redis.call('SMEMBERS', KEYS[2])
"""


def register_subscriber(sid: str, channel: str, user: str) -> list[str]:
    """Bind a subscriber id to a socket; return observers it already had (a reconnect).

    Raises ``ForeignSubscriber`` when the id is held by another user.
    """
    ttl = ttl_seconds(reactive_settings.SUBSCRIBER_TTL)
    result = client().eval(_REGISTER, 2, *_subscriber_keys(sid), channel, user, ttl)
    if result == -1:
        raise ForeignSubscriber("This subscriber id belongs to another user.")
    return list(result)


def get_subscriber(sid: str) -> Subscriber | None:
    """The live subscriber with this id, or None."""
    data = client().hgetall(key("sub", sid))
    if not data:
        return None
    return Subscriber(id=sid, channel=data["channel"], user=data["user"])


_REMOVE_SUBSCRIBER = """
if redis.call('HGET', KEYS[1], 'channel') ~= ARGV[1] then return {} end
local observers = redis.call('SMEMBERS', KEYS[2])
redis.call('DEL', KEYS[1], KEYS[2])
return observers
"""


def remove_subscriber(sid: str, channel: str) -> list[str]:
    """Forget a subscriber when its socket closes; return the observers it left.

    Does nothing when another socket has taken the id over since.
    """
    observers = list(client().eval(_REMOVE_SUBSCRIBER, 2, *_subscriber_keys(sid), channel))
    for oid in observers:
        unsubscribe(oid, sid)
    return observers


def heartbeat(sid: str, channel: str) -> list[str] | None:
    """Renew a live subscriber and its observers; return its observer ids.

    None when the subscriber is gone (expired, Redis restarted) or was taken
    over by another socket: this socket's subscriptions no longer exist.
    """
    r = client()
    sub_key, sub_obs = _subscriber_keys(sid)
    if r.hget(sub_key, "channel") != channel:
        return None
    observers = list(r.smembers(sub_obs))
    ttl = ttl_seconds(reactive_settings.SUBSCRIBER_TTL)
    obs_ttl = ttl_seconds(reactive_settings.OBSERVER_TTL)
    tables_of = r.pipeline(transaction=False)
    for oid in observers:
        tables_of.hget(key("obs", oid), "tables")
    tables = tables_of.execute()
    pipe = r.pipeline(transaction=False)
    pipe.expire(sub_key, ttl)
    pipe.expire(sub_obs, ttl)
    for oid, table_json in zip(observers, tables, strict=True):
        for name in _observer_keys(oid):
            pipe.expire(name, obs_ttl)
        for table in json.loads(table_json or "[]"):
            pipe.expire(key("dep", table), obs_ttl)
    pipe.execute()
    return observers


# --- observers ---------------------------------------------------------------


@dataclass(frozen=True)
class Observer:
    """An observer's stored state."""

    id: str
    spec: str
    items: list[dict[str, Any]]
    meta: dict[str, Any]
    version: int
    tables: list[str]
    creator: str
    evaluations: int


def load_observer(oid: str) -> Observer | None:
    """The stored observer, or None when it does not exist."""
    data = client().hgetall(key("obs", oid))
    if not data or "spec" not in data:
        return None
    return Observer(
        id=oid,
        spec=data["spec"],
        items=json.loads(data.get("items", "[]")),
        meta=json.loads(data.get("meta", "{}")),
        version=int(data.get("version", 0)),
        tables=json.loads(data.get("tables", "[]")),
        creator=data.get("creator", ""),
        evaluations=int(data.get("evaluations", 0)),
    )


def save_observer(
    oid: str,
    *,
    spec: str,
    items: list[dict[str, Any]],
    meta: dict[str, Any],
    version: int,
    tables: Iterable[str],
    creator: str,
    old_tables: Iterable[str] = (),
    evaluated: bool = False,
    must_exist: bool = False,
) -> bool:
    """Write an observer's result and move its dependency entries to ``tables``.

    With ``must_exist`` nothing is written, and False returned, when the
    observer was dropped meanwhile (its last subscriber left during an evaluation).
    """
    tables = sorted(set(tables))
    obs_key = key("obs", oid)

    def write(pipe: Any) -> bool:
        if must_exist and not pipe.exists(obs_key):
            return False
        pipe.multi()
        _queue_save(pipe, oid, spec, items, meta, version, tables, creator, old_tables, evaluated)
        return True

    # WATCH: a drop between the check and the write aborts and re-checks.
    return bool(client().transaction(write, obs_key, value_from_callable=True))


def _queue_save(
    pipe: Any,
    oid: str,
    spec: str,
    items: list[dict[str, Any]],
    meta: dict[str, Any],
    version: int,
    tables: list[str],
    creator: str,
    old_tables: Iterable[str],
    evaluated: bool,
) -> None:
    ttl = ttl_seconds(reactive_settings.OBSERVER_TTL)
    obs_key = key("obs", oid)
    pipe.hset(
        obs_key,
        mapping={
            "spec": spec,
            "items": json.dumps(items, separators=(",", ":")),
            "meta": json.dumps(meta, separators=(",", ":")),
            "version": version,
            "tables": json.dumps(tables),
            "creator": creator,
        },
    )
    if evaluated:
        pipe.hincrby(obs_key, "evaluations", 1)
    pipe.expire(obs_key, ttl)
    for table in set(old_tables) - set(tables):
        pipe.srem(key("dep", table), oid)
    for table in tables:
        pipe.sadd(key("dep", table), oid)
        pipe.expire(key("dep", table), ttl)


def record_diff(oid: str, version: int, primary_key: str, changes: list[dict[str, Any]]) -> None:
    """Keep one evaluation's changes in the observer's bounded replay buffer."""
    log_key = key("obs", oid, "log")
    entry = {"version": version, "primary_key": primary_key, "changes": changes}
    pipe = client().pipeline(transaction=True)
    pipe.lpush(log_key, json.dumps(entry, separators=(",", ":")))
    pipe.ltrim(log_key, 0, int(reactive_settings.REPLAY_BUFFER) - 1)
    pipe.expire(log_key, ttl_seconds(reactive_settings.OBSERVER_TTL))
    pipe.execute()


def replay(oid: str, since: int, current: int) -> list[dict[str, Any]] | None:
    """Diffs after ``since`` up to ``current``, oldest first; None when the buffer falls short."""
    if since > current or since < 0:
        return None
    if since == current:
        return []
    needed = current - since
    raw = client().lrange(key("obs", oid, "log"), 0, needed + 10)
    entries = {e["version"]: e for e in map(json.loads, raw)}
    wanted = range(since + 1, current + 1)
    if any(version not in entries for version in wanted):
        return None
    return [entries[version] for version in wanted]


def count_evaluation(oid: str) -> None:
    """Record an evaluation that changed nothing (for counts and status)."""
    client().hincrby(key("obs", oid), "evaluations", 1)


def subscribe(oid: str, sid: str) -> None:
    """Record that subscriber ``sid`` follows observer ``oid``."""
    sub_ttl = ttl_seconds(reactive_settings.SUBSCRIBER_TTL)
    obs_ttl = ttl_seconds(reactive_settings.OBSERVER_TTL)
    pipe = client().pipeline(transaction=True)
    pipe.sadd(key("obs", oid, "subs"), sid)
    pipe.expire(key("obs", oid, "subs"), obs_ttl)
    pipe.sadd(key("sub", sid, "obs"), oid)
    pipe.expire(key("sub", sid, "obs"), sub_ttl)
    pipe.execute()


def subscription_count(sid: str) -> int:
    """How many observers ``sid`` follows."""
    return int(client().scard(key("sub", sid, "obs")))


def is_subscribed(oid: str, sid: str) -> bool:
    """Whether ``sid`` follows ``oid``."""
    return bool(client().sismember(key("sub", sid, "obs"), oid))


def subscribers(oid: str) -> set[str]:
    """Subscriber ids of an observer."""
    return set(client().smembers(key("obs", oid, "subs")))


_DROP = """
-- KEYS: obs hash, obs subs, obs log, queued, dirty, starts, poll zset
-- ARGV: oid, sid leaving ('' for none), dep key prefix, sub key prefix, '1' to drop anyway
if ARGV[2] ~= '' then
  redis.call('SREM', KEYS[2], ARGV[2])
  redis.call('SREM', ARGV[4] .. ARGV[2] .. ':obs', ARGV[1])
end
if ARGV[5] ~= '1' and redis.call('SCARD', KEYS[2]) > 0 then return false end
local former = redis.call('SMEMBERS', KEYS[2])
for _, sid in ipairs(former) do redis.call('SREM', ARGV[4] .. sid .. ':obs', ARGV[1]) end
local tables = redis.call('HGET', KEYS[1], 'tables')
if tables then
  for _, t in ipairs(cjson.decode(tables)) do redis.call('SREM', ARGV[3] .. t, ARGV[1]) end
end
redis.call('ZREM', KEYS[7], ARGV[1])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
return former
"""


def _drop(oid: str, leaving: str, force: bool) -> list[str] | None:
    # One script: a subscribe can never land between "no subscribers left" and the delete.
    result = client().eval(
        _DROP,
        7,
        key("obs", oid),
        key("obs", oid, "subs"),
        key("obs", oid, "log"),
        key("queued", oid),
        key("dirty", oid),
        key("starts", oid),
        key("poll"),
        oid,
        leaving,
        key("dep", ""),
        key("sub", ""),
        "1" if force else "0",
    )
    return None if result is None else list(result)


def unsubscribe(oid: str, sid: str) -> bool:
    """End one subscription; drop the observer when it was the last. True if dropped."""
    return _drop(oid, sid, force=False) is not None


def drop_observer(oid: str) -> list[str]:
    """Delete an observer's state and dependency entries; return its former subscribers.

    A polling observer stops being polled the moment it is dropped.
    """
    return _drop(oid, "", force=True) or []


def forget_dependency(oid: str, tables: Iterable[str]) -> None:
    """Remove a vanished observer from dependency sets that still name it."""
    pipe = client().pipeline(transaction=False)
    for table in tables:
        pipe.srem(key("dep", table), oid)
    pipe.execute()


def now_ms() -> int:
    """Redis's clock in milliseconds: one clock for every host."""
    seconds, micros = client().time()
    return int(seconds) * 1000 + int(micros) // 1000
