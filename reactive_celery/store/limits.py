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
