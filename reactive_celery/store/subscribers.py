"""Subscribers: a live socket's id, its channel and user, and the observers it follows."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import cast

from ..conf import reactive_settings
from ..exceptions import ForeignSubscriber
from . import keys, observers
from .connection import client

__all__ = [
    "Subscriber",
    "count",
    "follows",
    "followers",
    "get",
    "heartbeat",
    "register",
    "remove",
    "subscribe",
    "unsubscribe",
]


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


def register(sid: str, channel: str, user: str) -> list[str]:
    """Bind a subscriber id to a socket; return observers it already had (a reconnect).

    Raises ``ForeignSubscriber`` when the id is held by another user.
    """
    ttl = keys.ttl_seconds(reactive_settings.SUBSCRIBER_TTL)
    names = (keys.subscriber(sid), keys.subscriber_observers(sid))
    result = client().eval(_REGISTER, 2, *names, channel, user, ttl)
    if result == -1:
        raise ForeignSubscriber("This subscriber id belongs to another user.")
    return list(result)


def get(sid: str) -> Subscriber | None:
    """The live subscriber with this id, or None."""
    data = cast(dict[str, str], client().hgetall(keys.subscriber(sid)))
    if not data:
        return None
    return Subscriber(id=sid, channel=data["channel"], user=data["user"])


_REMOVE = """
if redis.call('HGET', KEYS[1], 'channel') ~= ARGV[1] then return {} end
local observers = redis.call('SMEMBERS', KEYS[2])
redis.call('DEL', KEYS[1], KEYS[2])
return observers
"""


def remove(sid: str, channel: str) -> list[str]:
    """Forget a subscriber when its socket closes; return the observers it left.

    Does nothing when another socket has taken the id over since.
    """
    names = (keys.subscriber(sid), keys.subscriber_observers(sid))
    followed = list(client().eval(_REMOVE, 2, *names, channel))
    for oid in followed:
        unsubscribe(oid, sid)
    return followed


def heartbeat(sid: str, channel: str) -> list[str] | None:
    """Renew a live subscriber and its observers; return its observer ids.

    None when the subscriber is gone (expired, Redis restarted) or was taken
    over by another socket: this socket's subscriptions no longer exist.
    """
    r = client()
    sub_key, sub_obs = keys.subscriber(sid), keys.subscriber_observers(sid)
    if r.hget(sub_key, "channel") != channel:
        return None
    followed = cast(list[str], list(r.smembers(sub_obs)))
    ttl = keys.ttl_seconds(reactive_settings.SUBSCRIBER_TTL)
    obs_ttl = keys.ttl_seconds(reactive_settings.OBSERVER_TTL)
    tables_of = r.pipeline(transaction=False)
    for oid in followed:
        tables_of.hget(keys.observer(oid), "tables")
    tables = tables_of.execute()
    pipe = r.pipeline(transaction=False)
    pipe.expire(sub_key, ttl)
    pipe.expire(sub_obs, ttl)
    for oid, table_json in zip(followed, tables, strict=True):
        for name in (keys.observer(oid), keys.observer_subscribers(oid), keys.observer_log(oid)):
            pipe.expire(name, obs_ttl)
        for table in json.loads(table_json or "[]"):
            pipe.expire(keys.dependents(table), obs_ttl)
    pipe.execute()
    return followed


def subscribe(oid: str, sid: str) -> None:
    """Record that subscriber ``sid`` follows observer ``oid``."""
    sub_ttl = keys.ttl_seconds(reactive_settings.SUBSCRIBER_TTL)
    obs_ttl = keys.ttl_seconds(reactive_settings.OBSERVER_TTL)
    pipe = client().pipeline(transaction=True)
    pipe.sadd(keys.observer_subscribers(oid), sid)
    pipe.expire(keys.observer_subscribers(oid), obs_ttl)
    pipe.sadd(keys.subscriber_observers(sid), oid)
    pipe.expire(keys.subscriber_observers(sid), sub_ttl)
    pipe.execute()


def unsubscribe(oid: str, sid: str) -> bool:
    """End one subscription; drop the observer when it was the last. True if dropped."""
    return observers.release(oid, sid) is not None


def count(sid: str) -> int:
    """How many observers ``sid`` follows."""
    return int(client().scard(keys.subscriber_observers(sid)))


def follows(sid: str, oid: str) -> bool:
    """Whether ``sid`` follows ``oid``."""
    return bool(client().sismember(keys.subscriber_observers(sid), oid))


def followers(oid: str) -> set[str]:
    """Subscriber ids of an observer."""
    return cast(set[str], client().smembers(keys.observer_subscribers(oid)))
