"""Subscribers: a live socket's id, its channel and user, and the observers it follows."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from ..conf import reactive_settings
from ..exceptions import ForeignSubscriber, TooManySockets
from . import keys, locks, observers
from .connection import client
from .scripts import run_many

__all__ = [
    "SUBSCRIBE_FUNCTION",
    "Subscriber",
    "count",
    "followed",
    "follows",
    "followers",
    "get",
    "get_many",
    "heartbeat",
    "observer_and_live",
    "register",
    "remove",
    "subscribe",
    "subscribe_if_current",
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
_CLAIM_ID = """
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
"""

_CAPS = """
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
"""

_WRITE = """
redis.call('HSET', KEYS[1], 'channel', ARGV[1], 'user', ARGV[2], 'address', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('EXPIRE', KEYS[2], ARGV[4]) end
return redis.call('SMEMBERS', KEYS[2])
"""

_REGISTER = _CLAIM_ID + _CAPS + _WRITE

# On a cluster the caps run apart (``_CAP``): KEYS: sub hash, sub obs set; ARGV as above.
_REGISTER_OWN = _CLAIM_ID + _WRITE


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
        if keys.clustered():
            result = _register_on_cluster(names, channel, user, address, ttl, limits, sid, released)
        else:
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


# One cap of ``_REGISTER`` on a cluster, where each socket zset hashes apart.
# KEYS: the zset. ARGV: sid, ttl s, max. -2: full; 1: added; 0: was there (renewed).
_CAP = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not held and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return -2 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]) * 1000, ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return held and 0 or 1
"""


def _register_on_cluster(
    names: tuple[str, ...],
    channel: str,
    user: str,
    address: str,
    ttl: int,
    limits: tuple[int, int],
    sid: str,
    released: str,
) -> Any:
    """``_REGISTER`` as the socket caps first, then the subscriber's own script.

    A place under each cap is taken first and given back when the cap of the
    other, or the id's owner, refuses; a crash between leaves a place scored by
    its expiry, which the next register of that user or address drops. The
    subscriber's script is ``_REGISTER`` without the caps.
    """
    r = client()
    caps = [(names[2], limits[0])] if user else []
    caps += [(names[3], limits[1])] if address else []
    taken = run_many(r, _CAP, [([name], [sid, ttl, limit]) for name, limit in caps])
    result: Any = -2
    if -2 not in taken:
        own = (channel, user, address, ttl, *limits, sid, released)
        result = r.eval(_REGISTER_OWN, 2, *names[:2], *own)
    if result == -2 or result == -1 or (result and result[0] == -3):
        undo = r.pipeline(transaction=False)
        for (name, _), added in zip(caps, taken, strict=True):
            if added == 1:
                undo.zrem(name, sid)
        if len(undo):
            undo.execute()
    return result


def get(sid: str) -> Subscriber | None:
    """The live subscriber with this id, or None."""
    data = cast(dict[str, str], client().hgetall(keys.subscriber(sid)))
    if not data:
        return None
    return Subscriber(
        id=sid, channel=data["channel"], user=data["user"], address=data.get("address", "")
    )


def observer_and_live(oid: str, sid: str) -> tuple[observers.Observer | None, bool]:
    """The stored observer ``oid`` and whether subscriber ``sid`` is live, in one round trip."""
    pipe = client().pipeline(transaction=False)
    pipe.hgetall(keys.observer(oid))
    pipe.exists(keys.subscriber(sid))
    data, live = pipe.execute()
    return observers.from_hash(oid, data), bool(live)


# KEYS: sub hash, sub obs set, the user's and the address's socket zsets. ARGV: channel, sid.
_REMOVE = """
if redis.call('HGET', KEYS[1], 'channel') ~= ARGV[1] then return {} end
local observers = redis.call('SMEMBERS', KEYS[2])
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('ZREM', KEYS[4], ARGV[2])
return observers
"""


# ``_REMOVE`` on a cluster without the socket zsets, which hash apart.
_REMOVE_OWN = """
if redis.call('HGET', KEYS[1], 'channel') ~= ARGV[1] then return false end
local observers = redis.call('SMEMBERS', KEYS[2])
redis.call('DEL', KEYS[1], KEYS[2])
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
    if keys.clustered():
        # The record goes first, then its places under the caps: a crash between
        # leaves places scored by their expiry, dropped by the next register.
        answer = client().eval(_REMOVE_OWN, 2, *names[:2], channel)
        followed = [] if answer is None else list(answer)
        if answer is not None:
            pipe = client().pipeline(transaction=False)
            pipe.zrem(names[2], sid)
            pipe.zrem(names[3], sid)
            pipe.execute()
    else:
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
    if keys.clustered():
        # A cluster pipeline refuses TIME, which has no key to route by.
        data, members = read.execute()
        seconds, _ = r.time()
    else:
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
            pipe.expire(keys.precise(table), obs_ttl)
    pipe.execute()
    return followed


# A function: record that sid follows oid, 1; 0 if the subscriber's record is gone.
# The subscriber's set takes the lifetime its record has left: the two expire together.
SUBSCRIBE_FUNCTION = """
local function subscribe(obs_subs, sub_hash, sub_obs, sid, oid, obs_ttl)
  local left = redis.call('TTL', sub_hash)
  if left < 1 then return 0 end
  redis.call('SADD', obs_subs, sid)
  redis.call('EXPIRE', obs_subs, obs_ttl)
  redis.call('SADD', sub_obs, oid)
  redis.call('EXPIRE', sub_obs, left)
  return 1
end
"""

# KEYS: obs subs, sub hash, sub obs. ARGV: sid, oid, observer ttl.
_SUBSCRIBE = (
    SUBSCRIBE_FUNCTION + "return subscribe(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3])"
)


# ``_SUBSCRIBE``'s subscriber half on a cluster. KEYS: sub hash, sub obs. ARGV: oid.
_SUBSCRIBE_OWN = """
local left = redis.call('TTL', KEYS[1])
if left < 1 then return 0 end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[2], left)
return 1
"""


def subscribe(oid: str, sid: str) -> bool:
    """Record that subscriber ``sid`` follows observer ``oid``; False if ``sid`` is gone."""
    obs_ttl = keys.ttl_seconds(reactive_settings.OBSERVER_TTL)
    names = (keys.observer_subscribers(oid), keys.subscriber(sid), keys.subscriber_observers(sid))
    if not keys.clustered():
        return bool(client().eval(_SUBSCRIBE, 3, *names, sid, oid, obs_ttl))
    # The subscriber's side first, then the observer's. A crash between leaves the
    # subscriber naming an observer that does not list it: harmless, as after the
    # observer's expiry, and the request that subscribed failed. The other order
    # could leave an observer listing a subscriber that never learns of it, and
    # the sweep's repair (it re-adds subscribers that came back) relies on this one.
    r = client()
    if not r.eval(_SUBSCRIBE_OWN, 2, *names[1:], oid):
        return False
    pipe = r.pipeline(transaction=False)
    pipe.sadd(names[0], sid)
    pipe.expire(names[0], obs_ttl)
    pipe.execute()
    return True


# KEYS: as ``_SUBSCRIBE``, then the obs hash and the keys any of which means an
# evaluation is owed. ARGV: as ``_SUBSCRIBE``. -1: the result is missing or not current.
_SUBSCRIBE_IF_CURRENT = (
    SUBSCRIBE_FUNCTION
    + """
if redis.call('EXISTS', KEYS[4]) == 0 then return -1 end
for i = 5, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then return -1 end
end
return subscribe(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3])
"""
)


def subscribe_if_current(oid: str, sid: str, *, holding: bool = False) -> bool | None:
    """``subscribe`` if ``oid``'s stored result is current (``locks.idle`` with
    ``stored``); None if it is not, and nothing is recorded. One round trip on one
    server, where the check and the subscription are one script."""
    owed = locks.owed_keys(oid, holding=holding)
    if owed is None:
        if not locks.idle(oid, holding=holding, stored=True):
            return None
        return subscribe(oid, sid)
    names = [
        keys.observer_subscribers(oid),
        keys.subscriber(sid),
        keys.subscriber_observers(sid),
        keys.observer(oid),
        *owed,
    ]
    obs_ttl = keys.ttl_seconds(reactive_settings.OBSERVER_TTL)
    answer = int(client().eval(_SUBSCRIBE_IF_CURRENT, len(names), *names, sid, oid, obs_ttl))
    return None if answer < 0 else bool(answer)


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
