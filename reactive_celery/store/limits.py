"""Limits every subscribe meets, over HTTP or a socket: its rate, its owner's observers.

Subscriptions per socket and sockets per user and per address are checked
where those records are written (``subscribers``); these two are checked by
every subscribe, over HTTP and over a socket alike.
"""

from __future__ import annotations

from typing import cast

from ..conf import reactive_settings
from . import keys
from .connection import client

__all__ = ["allow_observer", "allow_subscribe"]

# KEYS: the rate counter. ARGV: limit. 1 if this request fits the current second.
_RATE = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], 1000) end
return n <= tonumber(ARGV[1]) and 1 or 0
"""


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


def allow_subscribe(sid: str) -> bool:
    """Count one subscribe request of ``sid``; False past ``SUBSCRIBE_RATE`` this second."""
    limit = int(reactive_settings.SUBSCRIBE_RATE)
    return bool(client().eval(_RATE, 1, keys.subscribe_rate(sid), limit))


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
