"""What both socket protocols share: owning a subscriber id, heartbeats, clean-up,
identity checks over time, and the handlers of the group messages."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

import redis
from asgiref.sync import sync_to_async
from asgiref.typing import ASGIReceiveCallable, ASGISendCallable
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser

from .. import broadcast, fanout, metrics
from ..conf import reactive_settings
from ..exceptions import ForeignSubscriber, TooManySockets
from ..identity import Identity, current_user, identify, user_group
from ..protocol import (
    CLOSE_FOREIGN_ID,
    CLOSE_REASONS,
    CLOSE_SESSION_ENDED,
    CLOSE_STATE_LOST,
    CLOSE_TOO_MANY,
    CLOSE_UNAVAILABLE,
    GROUP_DIFF,
    GROUP_ERROR,
    Frame,
)
from ..store import subscribers
from .outbox import Outbox

__all__ = ["SubscriberSocket", "call", "encoded_frames"]

logger = logging.getLogger(__name__)

_P = ParamSpec("_P")
_R = TypeVar("_R")


#: Frames of recent diffs, encoded once per process: channels_redis hands one group
#: message to every local socket, and encoding per socket was most of the fan-out's CPU.
#: (observer, version) names one evaluation's diff, so the key is exact.
_ENCODED: OrderedDict[tuple[str, str, int], list[str]] = OrderedDict()
_ENCODED_LIMIT = 256


def encoded_frames(
    protocol: str, event: dict[str, Any], build: Callable[[Frame], list[Frame]]
) -> list[str]:
    """The JSON texts of ``build(event)``, shared by the sockets of this process."""
    cache_key = (protocol, event["observer"], event["version"])
    texts = _ENCODED.get(cache_key)
    if texts is None:
        texts = [json.dumps(frame, separators=(",", ":")) for frame in build(event)]
        _ENCODED[cache_key] = texts
        if len(_ENCODED) > _ENCODED_LIMIT:
            _ENCODED.popitem(last=False)
    return texts


def call(func: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> Awaitable[_R]:
    """Run a blocking store call off the event loop."""
    return sync_to_async(func, thread_sensitive=False)(*args, **kwargs)


class SubscriberSocket(AsyncWebsocketConsumer):
    """A socket that owns one subscriber id in the store while it is open.

    Its identity is checked again on every heartbeat and whenever its user
    changes or logs out; one that no longer holds ends every subscription and
    closes. Subclasses name their protocol and how a group message becomes frames.
    """

    #: Names this protocol's frames in the per-process encoding cache.
    protocol_name = ""
    subscriber_id: str | None = None
    identity = Identity(user="", session_key=None)
    _heartbeat: asyncio.Task[None] | None = None
    _writer: asyncio.Task[None] | None = None
    _hub: fanout.Hub | None = None
    outbox: Outbox | None = None
    _accepted = False
    _ended = False

    @staticmethod
    def diff_frames(event: Frame) -> list[Frame]:
        """The frames of a ``reactive.diff`` group message."""
        raise NotImplementedError

    @staticmethod
    def stop_frame(event: Frame) -> Frame:
        """The frame of a ``reactive.error`` group message."""
        raise NotImplementedError

    def frames(self, event: Frame) -> list[str]:
        """The JSON texts a group message becomes on this protocol (none: not for it)."""
        if event["type"] == GROUP_DIFF:
            return encoded_frames(self.protocol_name, event, self.diff_frames)
        if event["type"] == GROUP_ERROR:
            return [json.dumps(self.stop_frame(event), separators=(",", ":"))]
        return []

    def push(self, oid: str, version: int | None, event: Frame) -> None:
        """Called by the hub: queue a group message's frames behind this socket's others."""
        if self._ended or self.outbox is None:
            return
        self.outbox.put(oid, version, self.frames(event))

    async def reactive_diff(self, event: Frame) -> None:
        """Called for a ``reactive.diff`` sent to this socket's own channel: forward it."""
        self.push(event["observer"], event["version"], event)

    async def reactive_error(self, event: Frame) -> None:
        """Called when an observer stopped: tell the client why; the subscription ends."""
        if self._ended:
            return
        await self.leave(event["observer"])
        self.push(event["observer"], None, event)

    async def reactive_session_ended(self, event: Frame) -> None:
        """Called when a session of this socket's user was logged out."""
        if event.get("session") == self.identity.session_key:
            await self.end(CLOSE_SESSION_ENDED, "The session was logged out.")

    async def reactive_user_changed(self, event: Frame) -> None:
        """Called when this socket's user was saved or deleted: check the session again."""
        await self.check_identity()

    async def claim(self, sid: str) -> int | None:
        """Register ``sid`` for this socket and rejoin its groups.

        The socket's identity is its session's, or its ticket's if it named one.
        Returns None, or the close code to refuse the socket with.
        """
        self._hub = await fanout.hub(self.channel_layer, self.channel_name)
        if self._hub is not None:
            # Before the store names this socket: a subscribe may steer the hub at once.
            self._hub.attach(self)
        self.outbox = Outbox()
        self._writer = asyncio.ensure_future(self._write(self.outbox))
        identity = identify(self.scope)
        if identity is None:
            return CLOSE_SESSION_ENDED  # a ticket that is forged or expired
        self.identity = identity
        if identity.ticket is not None:
            # A session was checked by the auth middleware at connect; a ticket is checked here.
            try:
                user = await database_sync_to_async(current_user, thread_sensitive=False)(identity)
            except Exception as exc:
                logger.warning("Could not check the ticket of a socket, refusing it: %s", exc)
                return CLOSE_UNAVAILABLE
            if user is None:
                return CLOSE_SESSION_ENDED
        address = (self.scope.get("client") or ("",))[0] or ""
        try:
            observers = await call(
                subscribers.register, sid, self.channel_name, self.identity.user, address
            )
        except ForeignSubscriber:
            return CLOSE_FOREIGN_ID
        except TooManySockets:
            return CLOSE_TOO_MANY
        except (redis.RedisError, OSError) as exc:
            logger.warning("Socket refused, the reactive store is unreachable: %s", exc)
            return CLOSE_UNAVAILABLE
        self.subscriber_id = sid
        await self._follow(observers)
        self._heartbeat = asyncio.ensure_future(self._beat())
        return None

    async def refuse(self, code: int) -> None:
        """Accept, then close with ``code``: a browser sees close codes, never HTTP statuses."""
        await self.accept()
        await self.close(code=code, reason=CLOSE_REASONS.get(code, ""))

    async def accept(self, subprotocol: str | None = None, headers: Any = None) -> None:
        """Accept the handshake (remembered, so a failure later can still close cleanly)."""
        await super().accept(subprotocol, headers)
        self._accepted = True
        metrics.socket_opened()

    async def check_identity(self) -> AbstractBaseUser | AnonymousUser | None:
        """The socket's user as its session (or ticket) gives it now; if not, end the socket."""
        if self.identity.anonymous:
            # Nothing to read: no thread hop for the many anonymous sockets of a page.
            return AnonymousUser()
        try:
            user = await database_sync_to_async(current_user, thread_sensitive=False)(self.identity)
        except Exception as exc:
            logger.warning("Could not check the session of a socket, closing it: %s", exc)
            await self.end(CLOSE_UNAVAILABLE, CLOSE_REASONS[CLOSE_UNAVAILABLE])
            return None
        if user is None:
            await self.end(CLOSE_SESSION_ENDED, CLOSE_REASONS[CLOSE_SESSION_ENDED])
        return user

    async def end(self, code: int, reason: str) -> None:
        """Close the socket with ``code`` and end its subscriptions now, not at disconnect."""
        if self._ended:
            return
        self._ended = True
        with contextlib.suppress(Exception):
            await self.close(code=code, reason=reason)
        await self.disconnect(code)

    async def __call__(
        self, scope: Any, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        """Run the consumer; whatever ends it, the subscriber's state goes with it."""
        try:
            await super().__call__(scope, receive, send)
        except (redis.RedisError, OSError) as exc:
            # The channel layer lost Redis: close with a code the client understands,
            # log one line rather than a traceback per socket.
            logger.warning("Socket closed, the channel layer is unreachable: %s", exc)
            metrics.layer_error()
            if self._accepted and not self._ended:
                self._ended = True
                with contextlib.suppress(Exception):
                    await self.base_send(
                        {
                            "type": "websocket.close",
                            "code": CLOSE_UNAVAILABLE,
                            "reason": CLOSE_REASONS[CLOSE_UNAVAILABLE],
                        }
                    )
        finally:
            # A handler that raised ends the consumer without websocket.disconnect.
            with contextlib.suppress(Exception):
                await self.disconnect(1011)
            metrics.socket_closed(self._accepted)

    async def disconnect(self, code: int) -> None:
        """Called when the socket closes: end every subscription of this subscriber."""
        for task in (self._heartbeat, self._writer):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        if self._hub is not None:
            await self._hub.detach(self)
        sid, self.subscriber_id = self.subscriber_id, None
        if sid is None:
            return
        try:
            observers = await call(subscribers.remove, sid, self.channel_name)
        except (redis.RedisError, OSError) as exc:
            # The subscriber expires and the sweep removes what it left.
            logger.warning("Subscriber %s left state behind: %s", sid, exc)
            observers = []
        with contextlib.suppress(Exception):
            for group in self._groups(observers if self._hub is None else []):
                await self.channel_layer.group_discard(group, self.channel_name)

    async def leave(self, oid: str) -> None:
        """Stop receiving an observer's pushes on this socket."""
        if self._hub is not None:
            await self._hub.drop(oid, self.channel_name)
        # A socket may also be a member itself (added by a server from before the hub).
        await self.channel_layer.group_discard(broadcast.group_name(oid), self.channel_name)

    async def _follow(self, observers: list[str]) -> None:
        # Observers through the process hub; the user's group (closes, identity) per socket.
        if self._hub is None:
            for group in self._groups(observers):
                await self.channel_layer.group_add(group, self.channel_name)
            return
        for oid in observers:
            await self._hub.follow(oid, self)
        for group in self._groups([]):
            await self.channel_layer.group_add(group, self.channel_name)

    async def _send_text(self, text: str) -> None:
        await self.send(text_data=text)
        metrics.frame_sent(self.protocol_name)

    async def _write(self, outbox: Outbox) -> None:
        try:
            await outbox.drain(self._send_text)
        except Exception as exc:
            # The connection went away mid-send; disconnect cleans up. No traceback per socket.
            logger.info("Socket %s stopped sending: %s", self.subscriber_id, exc)

    async def send_json(self, frame: dict[str, Any]) -> None:
        """Send one JSON frame."""
        await self.send(text_data=json.dumps(frame, separators=(",", ":")))
        metrics.frame_sent(self.protocol_name)

    def _groups(self, observers: list[str]) -> list[str]:
        groups = [broadcast.group_name(oid) for oid in observers]
        if not self.identity.anonymous:
            groups.append(user_group(self.identity.user))
        return groups

    async def _beat(self) -> None:
        # Renews the subscriber's lifetime and re-adds group memberships, which
        # channels_redis expires by time since group_add, not by activity.
        interval = reactive_settings.HEARTBEAT_INTERVAL
        while True:
            await asyncio.sleep(interval)
            sid = self.subscriber_id
            if sid is None or await self.check_identity() is None:
                return  # the socket is closing
            try:
                observers = await call(subscribers.heartbeat, sid, self.channel_name)
            except (redis.RedisError, OSError) as exc:
                logger.warning("Heartbeat of subscriber %s failed, closing it: %s", sid, exc)
                await self.end(CLOSE_UNAVAILABLE, CLOSE_REASONS[CLOSE_UNAVAILABLE])
                return
            if observers is None:
                # Our state is gone (expired or Redis lost it): the client must
                # reconnect and resubscribe, which its version check turns into a resume.
                self.subscriber_id = None
                await self.end(CLOSE_STATE_LOST, CLOSE_REASONS[CLOSE_STATE_LOST])
                return
            with contextlib.suppress(Exception):
                await self._follow(observers)
