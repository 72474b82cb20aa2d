"""One delivery per ASGI process: the process hub and the messages that steer it.

An observer's group holds one member per ASGI process, the hub's channel, not
one per socket: a diff crosses Redis once per process, is encoded once per
protocol and handed to every local socket that follows the observer.

The hub's channel is derived from any of its sockets' channels (channels_redis
names them ``specific.<process>!<id>``), so the process that handles an HTTP
subscribe (maybe another one) can steer it. Every steering message travels on
the same Redis list as the process's diffs, so it is ordered with them: a
socket follows from the diff after its ``reactive.follow`` on, and a revoked
socket gets nothing after its ``reactive.revoke``.

Steering messages (hub channel)::

    reactive.follow    {observer, channel}   the socket follows the observer
    reactive.unfollow  {observer, channel}   it does not any more
    reactive.revoke    {observer, channel, message}   unfollow, then hand it the stop
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

from . import broadcast
from .conf import reactive_settings
from .exceptions import ConfigurationError
from .protocol import GROUP_DIFF, GROUP_ERROR, GROUP_SYNCED, Frame

__all__ = [
    "FOLLOW",
    "HUB_SUFFIX",
    "REVOKE",
    "UNFOLLOW",
    "Hub",
    "Follower",
    "hub",
    "hub_channel",
    "join",
    "revoke",
    "unfollow",
]

logger = logging.getLogger(__name__)

FOLLOW = "reactive.follow"
UNFOLLOW = "reactive.unfollow"
REVOKE = "reactive.revoke"
#: The local part of every hub's channel name.
HUB_SUFFIX = "reactive-hub"


class Follower(Protocol):
    """What the hub needs of a socket."""

    channel_name: str

    def push(self, oid: str, version: int | None, event: Frame) -> None:
        """Queue a group message's frames for the client, in order, without waiting."""


def hub_channel(channel: str) -> str | None:
    """The hub channel of the process owning ``channel``; None for a non-local channel."""
    process, bang, _ = channel.partition("!")
    if not bang:
        return None
    # On a sharded layer channels_redis sends to a process channel on the shard of its
    # full name but receives on the shard of its process part: pick a local name for
    # which the two agree, the same in every process (the hash and ring are config).
    shard = getattr(broadcast.layer(), "consistent_hash", None)
    name = f"{process}!{HUB_SUFFIX}"
    if shard is None:
        return name
    home = shard(f"{process}!")
    for attempt in range(_HUB_NAME_ATTEMPTS):
        if shard(name) == home:
            return name
        name = f"{process}!{HUB_SUFFIX}-{attempt + 1}"
    raise ConfigurationError(
        "No hub channel name lands on its process's shard of the channel layer."
    )


#: With N shards a name lands home with chance 1/N; 256 tries fail for no real ring.
_HUB_NAME_ATTEMPTS = 256


def join(
    group: str, oid: str, channel: str
) -> tuple[list[tuple[str, Frame]], list[tuple[str, str]]]:
    """The channel sends and group adds that make ``channel`` follow ``oid``'s group."""
    target = hub_channel(channel)
    if target is None:
        return [], [(group, channel)]
    return [(target, {"type": FOLLOW, "observer": oid, "channel": channel})], [(group, target)]


def unfollow(oid: str, channel: str) -> tuple[list[tuple[str, Frame]], list[tuple[str, str]]]:
    """The channel sends and group discards that stop ``channel`` following ``oid``."""
    target = hub_channel(channel)
    if target is None:
        return [], [(broadcast.group_name(oid), channel)]
    return [(target, {"type": UNFOLLOW, "observer": oid, "channel": channel})], []


def revoke(oid: str, channel: str, message: Frame) -> tuple[str, Frame]:
    """The channel send that ends ``channel``'s subscription with the stop ``message``."""
    target = hub_channel(channel)
    if target is None:
        return channel, message
    return target, {"type": REVOKE, "observer": oid, "channel": channel, "message": message}


class Hub:
    """The sockets of one process and event loop, by observer; receives for all of them."""

    def __init__(self, layer: Any, channel: str) -> None:
        self.layer = layer
        self.channel = channel
        self.sockets: dict[str, Follower] = {}
        self.followers: dict[str, dict[str, Follower]] = {}
        # channels_redis keeps a receive queue per channel name, bound to the loop that
        # made it; a hub on a new event loop (tests run several) needs a fresh one.
        buffers = getattr(layer, "receive_buffer", None)
        if isinstance(buffers, dict):
            buffers.pop(channel, None)
        self._tasks = [
            asyncio.ensure_future(self._receive()),
            asyncio.ensure_future(self._beat()),
        ]

    def attach(self, socket: Follower) -> None:
        """Called when a socket opens: steering messages may now name it."""
        self.sockets[socket.channel_name] = socket

    async def detach(self, socket: Follower) -> None:
        """Called when a socket closes: it follows nothing any more."""
        self.sockets.pop(socket.channel_name, None)
        for oid in [oid for oid, local in self.followers.items() if socket.channel_name in local]:
            await self.drop(oid, socket.channel_name)

    async def follow(self, oid: str, socket: Follower) -> None:
        """Make a local socket follow ``oid``; the first one joins the process to the group."""
        self.sockets.setdefault(socket.channel_name, socket)
        local = self.followers.setdefault(oid, {})
        first = not local
        local[socket.channel_name] = socket
        if first:
            await self.layer.group_add(broadcast.group_name(oid), self.channel)

    async def drop(self, oid: str, channel: str) -> None:
        """Stop a local socket following ``oid``; the last one takes the process out."""
        local = self.followers.get(oid)
        if local is None or local.pop(channel, None) is None or local:
            return
        del self.followers[oid]
        with contextlib.suppress(Exception):
            await self.layer.group_discard(broadcast.group_name(oid), self.channel)

    def follows(self, oid: str) -> set[str]:
        """The channels of the local sockets following ``oid``."""
        return set(self.followers.get(oid, ()))

    async def handle(self, message: Frame) -> None:
        """Called for each message on the hub channel, in the order Redis holds them."""
        kind, oid = message.get("type"), message.get("observer", "")
        if kind == FOLLOW:
            socket = self.sockets.get(message["channel"])
            if socket is not None:  # else it closed meanwhile
                await self.follow(oid, socket)
        elif kind == UNFOLLOW:
            await self.drop(oid, message["channel"])
        elif kind == REVOKE:
            socket = self.sockets.get(message["channel"])
            await self.drop(oid, message["channel"])
            if socket is not None:
                socket.push(oid, None, message["message"])
        elif kind in (GROUP_DIFF, GROUP_ERROR, GROUP_SYNCED):
            local = list(self.followers.get(oid, {}).values())
            if kind == GROUP_ERROR:
                for channel in list(self.followers.get(oid, {})):
                    await self.drop(oid, channel)
            version = message.get("version") if kind == GROUP_DIFF else None
            for socket in local:
                socket.push(oid, version, message)
        else:
            logger.warning("Fan-out hub %s: unknown message type %r", self.channel, kind)

    async def close(self) -> None:
        """Stop receiving (the event loop is ending)."""
        for task in self._tasks:
            task.cancel()

    async def _receive(self) -> None:
        while True:
            try:
                message = await self.layer.receive(self.channel)
                await self.handle(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # One bad message or a Redis blip must not stop every socket's pushes.
                logger.warning("Fan-out hub %s: %s: %s", self.channel, type(exc).__name__, exc)
                await asyncio.sleep(1)

    async def _beat(self) -> None:
        # One refresh per process: channels_redis expires memberships by time since group_add.
        while True:
            await asyncio.sleep(reactive_settings.HEARTBEAT_INTERVAL)
            for oid in list(self.followers):
                with contextlib.suppress(Exception):
                    await self.layer.group_add(broadcast.group_name(oid), self.channel)


_HUBS: dict[asyncio.AbstractEventLoop, Hub] = {}


async def hub(layer: Any, channel: str) -> Hub | None:
    """This event loop's hub for sockets named like ``channel``; None for a non-local name."""
    target = hub_channel(channel)
    if target is None:
        return None
    loop = asyncio.get_running_loop()
    current = _HUBS.get(loop)
    if current is None or current.channel != target:
        for old in [old for old in _HUBS if old.is_closed()]:
            del _HUBS[old]
        if current is not None:
            await current.close()
        current = _HUBS[loop] = Hub(layer, target)
    return current
