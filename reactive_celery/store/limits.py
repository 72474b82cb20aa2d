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
from . import keys
from .connection import client
from .subscribers import Subscriber

__all__ = ["Admission", "admit", "allow_observer"]

# KEYS[1]: the rate counter. ARGV[1]: limit. Sets ``fits``: this request fits the second.
_RATE_FITS = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], 1000) end
local fits = n <= tonumber(ARGV[1])
"""

# KEYS: the rate counter, the sub hash, the sub obs set (all on the subscriber's slot).
# ARGV: rate limit, user, oid, subscriptions per socket.
# {-1}: unknown, or another user's; {0}: past the rate; {-2}: holds its most
# subscriptions and not this one; {1, channel, address}: may subscribe.
_ADMIT = (
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
return {1, sub[1], sub[3] or ''}
"""
)


@dataclass(frozen=True)
class Admission:
    """What ``admit`` found: the subscriber if it may subscribe, else why not:
    ``"unknown"`` (no such live subscriber, or another user's), ``"rate"`` or
    ``"subscriptions"``."""

    subscriber: Subscriber | None
    refused: str = ""


_REFUSALS = {-1: "unknown", 0: "rate", -2: "subscriptions"}


def admit(sid: str, user: str, oid: str) -> Admission:
    """The checks a subscribe of ``sid`` (of ``user``) to ``oid`` passes before its view
    runs, in one round trip: the subscriber is live and ``user``'s, this request
    fits ``SUBSCRIBE_RATE`` (counted only for a live subscriber of this user), and
    the socket follows ``oid`` already or holds fewer than ``MAX_SUBSCRIPTIONS``."""
    answer = client().eval(
        _ADMIT,
        3,
        keys.subscribe_rate(sid),
        keys.subscriber(sid),
        keys.subscriber_observers(sid),
        int(reactive_settings.SUBSCRIBE_RATE),
        user,
        oid,
        int(reactive_settings.MAX_SUBSCRIPTIONS),
    )
    verdict = int(answer[0])
    if verdict != 1:
        return Admission(None, _REFUSALS[verdict])
    return Admission(Subscriber(sid, answer[1], user, answer[2]))


# KEYS: the owner's live sockets (zset), the observer's subscribers (set). 1 if one of
# the owner's sockets already follows the observer; walks the smaller of the two.
_FOLLOWED_BY_OWNER = """
if redis.call('ZCARD', KEYS[1]) <= redis.call('SCARD', KEYS[2]) then
  for _, sid in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    if redis.call('SISMEMBER', KEYS[2], sid) == 1 then return 1 end
  end
else
  for _, sid in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    if redis.call('ZSCORE', KEYS[1], sid) then return 1 end
  end
end
return 0
"""


def allow_observer(user: str, address: str, oid: str) -> bool:
    """Whether one more subscription to ``oid`` keeps its owner within ``MAX_OBSERVERS_PER_USER``.

    The owner is the signed-in user, or for anonymous requests the client
    address; its observers are those its live sockets follow, so the count
    needs no state of its own and falls as sockets close.
    """
    r = client()
    owner = keys.sockets_of_user(user) if user else keys.sockets_of_address(address)
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
