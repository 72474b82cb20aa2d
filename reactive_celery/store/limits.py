"""Limits every subscribe meets, over HTTP or a socket: its rate, its socket's
subscriptions, its owner's observers.

Sockets per user and per address are checked where those records are written
(``subscribers``); these are checked by every subscribe, over HTTP and over a
socket alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from ..conf import reactive_settings
from . import keys, locks
from .connection import client
from .subscribers import SUBSCRIBE_FUNCTION, Subscriber

__all__ = ["Admission", "admit", "allow_observer"]

# KEYS[1]: the rate counter. ARGV[1]: limit. Sets ``fits``: this request fits the second.
_RATE_FITS = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], 1000) end
local fits = n <= tonumber(ARGV[1])
"""

# KEYS: the rate counter, the sub hash, the sub obs set (all on the subscriber's slot).
# ARGV: rate limit, user, oid, subscriptions per socket. Sets ``sub`` when the
# request is admitted, else returns {-1}: unknown, or another user's; {0}: past the
# rate; {-2}: holds its most subscriptions and not this one.
_ADMISSION = (
    """
local sub = redis.call('HMGET', KEYS[2], 'channel', 'user', 'address')
if not sub[1] or sub[2] ~= ARGV[2] then return {-1} end
"""
    + _RATE_FITS
    + """
if not fits then return {0} end
if redis.call('SCARD', KEYS[3]) >= tonumber(ARGV[4])
    and redis.call('SISMEMBER', KEYS[3], ARGV[3]) == 0 then
  return {-2}
end
"""
)

# {1, channel, address}: may subscribe.
_ADMIT = _ADMISSION + "return {1, sub[1], sub[3] or ''}"

# A function: whether one of the owner's live sockets (zset) already follows the
# observer (its subscribers, a set); walks the smaller of the two.
_FOLLOWED_BY_OWNER_FUNCTION = """
local function followed_by_owner(owner, subscribers)
  if redis.call('ZCARD', owner) <= redis.call('SCARD', subscribers) then
    for _, sid in ipairs(redis.call('ZRANGE', owner, 0, -1)) do
      if redis.call('SISMEMBER', subscribers, sid) == 1 then return true end
    end
  else
    for _, sid in ipairs(redis.call('SMEMBERS', subscribers)) do
      if redis.call('ZSCORE', owner, sid) then return true end
    end
  end
  return false
end
"""

# KEYS: the owner's live sockets, the observer's subscribers. 1 if one of the owner's
# sockets already follows the observer.
_FOLLOWED_BY_OWNER = (
    _FOLLOWED_BY_OWNER_FUNCTION + "return followed_by_owner(KEYS[1], KEYS[2]) and 1 or 0"
)

# ``_ADMIT``, then: whether the owner follows the observer already (its observer cap
# holds), and if so and the observer's result is current, the subscription itself
# (``SUBSCRIBE_FUNCTION``), in one step. KEYS: as ``_ADMIT``, then the owner's
# sockets, the obs subs, the obs hash, then the keys any of which means an
# evaluation is owed. ARGV: as ``_ADMIT``, then sid, observer ttl.
# {1, channel, address, owner follows (0/1), subscribed (0/1)}.
_ADMIT_CURRENT = (
    _FOLLOWED_BY_OWNER_FUNCTION
    + SUBSCRIBE_FUNCTION
    + _ADMISSION
    + """
local owned = followed_by_owner(KEYS[4], KEYS[5])
if not owned or redis.call('EXISTS', KEYS[6]) == 0 then
  return {1, sub[1], sub[3] or '', owned and 1 or 0, 0}
end
for i = 7, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then return {1, sub[1], sub[3] or '', 1, 0} end
end
local subscribed = subscribe(KEYS[5], KEYS[2], KEYS[3], ARGV[5], ARGV[3], ARGV[6])
return {1, sub[1], sub[3] or '', 1, subscribed}
"""
)


@dataclass(frozen=True)
class Admission:
    """What ``admit`` found: the subscriber if it may subscribe, else why not:
    ``"unknown"`` (no such live subscriber, or another user's), ``"rate"`` or
    ``"subscriptions"``. With ``admit(..., address=)``: ``owner_follows``, one of the
    owner's sockets follows the observer already, so ``allow_observer`` holds; and
    ``subscribed``, the observer's result was current and the subscription is made."""

    subscriber: Subscriber | None
    refused: str = ""
    owner_follows: bool = False
    subscribed: bool = False


_REFUSALS = {-1: "unknown", 0: "rate", -2: "subscriptions"}


def admit(sid: str, user: str, oid: str, *, address: str | None = None) -> Admission:
    """The checks a subscribe of ``sid`` (of ``user``) to ``oid`` passes before its view
    runs, in one round trip: the subscriber is live and ``user``'s, this request
    fits ``SUBSCRIBE_RATE`` (counted only for a live subscriber of this user), and
    the socket follows ``oid`` already or holds fewer than ``MAX_SUBSCRIPTIONS``.

    ``address`` (the client's, for an anonymous owner): in the same round trip on
    one server, when the owner follows ``oid`` already and its result is current,
    subscribe as ``subscribers.subscribe`` would. A subscribe to a current observer
    (the usual one: many sockets on one dashboard) then needs no further checks.
    """
    names = [keys.subscribe_rate(sid), keys.subscriber(sid), keys.subscriber_observers(sid)]
    args: list[str | int] = [
        int(reactive_settings.SUBSCRIBE_RATE),
        user,
        oid,
        int(reactive_settings.MAX_SUBSCRIPTIONS),
    ]
    owed = None if address is None else locks.owed_keys(oid)
    if owed is None:
        answer = client().eval(_ADMIT, len(names), *names, *args)
    else:
        names += [
            _owner(user, address or ""),
            keys.observer_subscribers(oid),
            keys.observer(oid),
            *owed,
        ]
        args += [sid, keys.ttl_seconds(reactive_settings.OBSERVER_TTL)]
        answer = client().eval(_ADMIT_CURRENT, len(names), *names, *args)
    verdict = int(answer[0])
    if verdict != 1:
        return Admission(None, _REFUSALS[verdict])
    subscriber = Subscriber(sid, answer[1], user, answer[2])
    if owed is None:
        return Admission(subscriber)
    return Admission(subscriber, "", bool(int(answer[3])), bool(int(answer[4])))


def _owner(user: str, address: str) -> str:
    """The key of the live sockets whose observers count against one owner."""
    return keys.sockets_of_user(user) if user else keys.sockets_of_address(address)


def allow_observer(user: str, address: str, oid: str) -> bool:
    """Whether one more subscription to ``oid`` keeps its owner within ``MAX_OBSERVERS_PER_USER``.

    The owner is the signed-in user, or for anonymous requests the client
    address; its observers are those its live sockets follow, so the count
    needs no state of its own and falls as sockets close.
    """
    r = client()
    owner = _owner(user, address)
    if not keys.clustered() and r.eval(
        _FOLLOWED_BY_OWNER, 2, owner, keys.observer_subscribers(oid)
    ):
        # The usual case (many sockets of one owner on one observer): no union of all of
        # the owner's subscriptions, which grows with its sockets.
        return True
    sids = cast(list[str], r.zrange(owner, 0, -1))
    if not sids:
        return True
    names = [keys.subscriber_observers(sid) for sid in sids]
    if keys.clustered():
        # Each subscriber's set hashes on its own id: read them apart, unite here.
        pipe = r.pipeline(transaction=False)
        for name in names:
            pipe.smembers(name)
        followed = set().union(*pipe.execute())
    else:
        followed = cast(set[str], r.sunion(names))
    return oid in followed or len(followed) < int(reactive_settings.MAX_OBSERVERS_PER_USER)
