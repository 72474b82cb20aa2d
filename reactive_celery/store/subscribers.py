"""Subscribers: a live socket's id, its channel and user, and the observers it follows."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

from ..conf import reactive_settings
from ..exceptions import ForeignSubscriber, TooManySockets
from . import keys, observers
from .connection import client

__all__ = [
    "Subscriber",
    "count",
    "followed",
    "follows",
    "followers",
    "get",
    "get_many",
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
    address: str = ""


# KEYS: sub hash, sub obs set, the user's and the address's socket zsets.
# ARGV: channel, user ('' anonymous), address, ttl s, max per user, max per address, sid,
# '1' when the caller has released what an anonymous holder followed.
# -1: held by another user; -2: too many sockets; {-3, observers...}: held by another
# anonymous socket. An id proves nothing for anonymous sockets, so a new one takes
# the id over but never its subscriptions (the caller releases them, then calls again).
# An id whose record expired starts empty too: nothing passes to whoever claims it next.
_REGISTER = """
local current = redis.call('HGET', KEYS[1], 'user')
if current then
  if current ~= ARGV[2] then return -1 end
  if ARGV[2] == '' and redis.call('HGET', KEYS[1], 'channel') ~= ARGV[1] then
    if ARGV[8] ~= '1' then
      local held = redis.call('SMEMBERS', KEYS[2])
      table.insert(held, 1, -3)
      return held
    end
    redis.call('DEL', KEYS[2])
  end
else
  redis.call('DEL', KEYS[2])
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local until_ms = now + tonumber(ARGV[4]) * 1000
local caps = {}
if ARGV[2] ~= '' then caps[#caps + 1] = {KEYS[3], tonumber(ARGV[5])} end
if ARGV[3] ~= '' then caps[#caps + 1] = {KEYS[4], tonumber(ARGV[6])} end
for _, cap in ipairs(caps) do
  redis.call('ZREMRANGEBYSCORE', cap[1], '-inf', now)
  local sid = ARGV[7]
  if not redis.call('ZSCORE', cap[1], sid) and redis.call('ZCARD', cap[1]) >= cap[2] then
    return -2
  end
end
for _, cap in ipairs(caps) do
  redis.call('ZADD', cap[1], until_ms, ARGV[7])
  redis.call('EXPIRE', cap[1], ARGV[4])
end
redis.call('HSET', KEYS[1], 'channel', ARGV[1], 'user', ARGV[2], 'address', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('EXPIRE', KEYS[2], ARGV[4]) end
return redis.call('SMEMBERS', KEYS[2])
"""


def register(sid: str, channel: str, user: str, address: str = "") -> list[str]:
    """Bind a subscriber id to a socket; return observers it already had (a reconnect).

    Raises ``ForeignSubscriber`` when the id is held by another user's socket,
    ``TooManySockets`` past the per-user or per-address cap. An anonymous
    socket taking over another's id starts with no subscriptions.
    """
    ttl = keys.ttl_seconds(reactive_settings.SUBSCRIBER_TTL)
    names = (
        keys.subscriber(sid),
        keys.subscriber_observers(sid),
        keys.sockets_of_user(user),
        keys.sockets_of_address(address),
    )
    limits = (reactive_settings.MAX_SOCKETS_PER_USER, reactive_settings.MAX_SOCKETS_PER_ADDRESS)
    released = "0"
    while True:
        result = client().eval(
            _REGISTER, 4, *names, channel, user, address, ttl, *limits, sid, released
        )
        if result == -1:
            raise ForeignSubscriber("This subscriber id is held by another user's socket.")
        if result == -2:
            raise TooManySockets("Too many sockets are open for this user or address.")
        if not result or result[0] != -3:
            return list(result)
        for oid in result[1:]:
            observers.release(oid, sid)
        released = "1"


def get(sid: str) -> Subscriber | None:
    """The live subscriber with this id, or None."""
    data = cast(dict[str, str], client().hgetall(keys.subscriber(sid)))
    if not data:
        return None
    return Subscriber(
        id=sid, channel=data["channel"], user=data["user"], address=data.get("address", "")
    )


# KEYS: sub hash, sub obs set, the user's and the address's socket zsets. ARGV: channel, sid.
_REMOVE = """
if redis.call('HGET', KEYS[1], 'channel') ~= ARGV[1] then return {} end
local observers = redis.call('SMEMBERS', KEYS[2])
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('ZREM', KEYS[4], ARGV[2])
return observers
"""


def remove(sid: str, channel: str) -> list[str]:
    """Forget a subscriber when its socket closes; return the observers it left.

    Does nothing when another socket has taken the id over since.
    """
    current = get(sid)
    if current is None or current.channel != channel:
        return []
    names = (
        keys.subscriber(sid),
        keys.subscriber_observers(sid),
        keys.sockets_of_user(current.user),
        keys.sockets_of_address(current.address),
    )
    followed = list(client().eval(_REMOVE, 4, *names, channel, sid))
    for oid in followed:
        unsubscribe(oid, sid)
    return followed


def get_many(sids: Iterable[str]) -> list[Subscriber]:
    """The live subscribers among ``sids``, in one round trip."""
    sids = list(sids)
    pipe = client().pipeline(transaction=False)
    for sid in sids:
        pipe.hgetall(keys.subscriber(sid))
    found = []
    for sid, data in zip(sids, pipe.execute(), strict=True):
        if data:
            found.append(Subscriber(sid, data["channel"], data["user"], data.get("address", "")))
    return found


def heartbeat(sid: str, channel: str) -> list[str] | None:
    """Renew a live subscriber and its observers; return its observer ids.

    None when the subscriber is gone (expired, Redis restarted) or was taken
    over by another socket: this socket's subscriptions no longer exist.
    Three round trips whatever the number of observers: heartbeats of every
    socket of a process run in it.
    """
    r = client()
    sub_key, sub_obs = keys.subscriber(sid), keys.subscriber_observers(sid)
    read = r.pipeline(transaction=False)
    read.hgetall(sub_key)
    read.smembers(sub_obs)
    read.time()
    data, members, (seconds, _) = read.execute()
    if not data or data.get("channel") != channel:
        return None
    followed = sorted(cast(set[str], members))
    ttl = keys.ttl_seconds(reactive_settings.SUBSCRIBER_TTL)
    obs_ttl = keys.ttl_seconds(reactive_settings.OBSERVER_TTL)
    tables_of = r.pipeline(transaction=False)
    for oid in followed:
        tables_of.hget(keys.observer(oid), "tables")
    tables = tables_of.execute() if followed else []
    until_ms = (int(seconds) + ttl) * 1000
    pipe = r.pipeline(transaction=False)
    pipe.expire(sub_key, ttl)
    pipe.expire(sub_obs, ttl)
    for owner in (
        keys.sockets_of_user(data.get("user", "")),
        keys.sockets_of_address(data.get("address", "")),
    ):
        pipe.zadd(owner, {sid: until_ms}, xx=True)
        pipe.expire(owner, ttl)
    for oid, table_json in zip(followed, tables, strict=True):
        for name in (keys.observer(oid), keys.observer_subscribers(oid), keys.observer_log(oid)):
            pipe.expire(name, obs_ttl)
        for table in json.loads(table_json or "[]"):
            pipe.expire(keys.dependents(table), obs_ttl)
    pipe.execute()
    return followed


# KEYS: obs subs, sub hash, sub obs. ARGV: sid, oid, observer ttl.
# The subscriber's set takes the lifetime its record has left: the two expire together.
_SUBSCRIBE = """
local left = redis.call('TTL', KEYS[2])
if left < 1 then return 0 end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('EXPIRE', KEYS[3], left)
return 1
"""


def subscribe(oid: str, sid: str) -> bool:
    """Record that subscriber ``sid`` follows observer ``oid``; False if ``sid`` is gone."""
    obs_ttl = keys.ttl_seconds(reactive_settings.OBSERVER_TTL)
    names = (keys.observer_subscribers(oid), keys.subscriber(sid), keys.subscriber_observers(sid))
    return bool(client().eval(_SUBSCRIBE, 3, *names, sid, oid, obs_ttl))


def unsubscribe(oid: str, sid: str) -> bool:
    """End one subscription; drop the observer when it was the last. True if dropped."""
    return observers.release(oid, sid) is not None


def count(sid: str) -> int:
    """How many observers ``sid`` follows."""
    return int(client().scard(keys.subscriber_observers(sid)))


def followed(sid: str) -> set[str]:
    """The observers ``sid`` follows."""
    return cast(set[str], client().smembers(keys.subscriber_observers(sid)))


def follows(sid: str, oid: str) -> bool:
    """Whether ``sid`` follows ``oid``."""
    return bool(client().sismember(keys.subscriber_observers(sid), oid))


def followers(oid: str) -> set[str]:
    """Subscriber ids of an observer."""
    return cast(set[str], client().smembers(keys.observer_subscribers(oid)))
