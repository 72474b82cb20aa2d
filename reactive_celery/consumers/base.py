"""What both socket protocols share: owning a subscriber id, heartbeats, clean-up,
and the handlers of the group messages (``reactive.diff``, ``reactive.error``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from asgiref.typing import ASGIReceiveCallable, ASGISendCallable
from channels.generic.websocket import AsyncWebsocketConsumer

from .. import broadcast
from ..conf import reactive_settings
from ..exceptions import ForeignSubscriber
from ..protocol import CLOSE_STATE_LOST, Frame
from ..store import subscribers
from ..subscriptions import user_key

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

    Subclasses name their protocol and how a group message becomes frames.
    """

    #: Names this protocol's frames in the per-process encoding cache.
    protocol_name = ""
    subscriber_id: str | None = None
    _heartbeat: asyncio.Task[None] | None = None

    @staticmethod
    def diff_frames(event: Frame) -> list[Frame]:
        """The frames of a ``reactive.diff`` group message."""
        raise NotImplementedError

    @staticmethod
    def stop_frame(event: Frame) -> Frame:
        """The frame of a ``reactive.error`` group message."""
        raise NotImplementedError

    async def reactive_diff(self, event: Frame) -> None:
        """Called for a ``reactive.diff`` group message: forward its frames."""
        for text in encoded_frames(self.protocol_name, event, self.diff_frames):
            await self.send(text_data=text)

    async def reactive_error(self, event: Frame) -> None:
        """Called when an observer stopped: tell the client why; the subscription ends."""
        await self.send_json(self.stop_frame(event))
        await self.leave(event["observer"])

    async def claim(self, sid: str) -> bool:
        """Register ``sid`` for this socket and rejoin its groups; False if foreign."""
        try:
            observers = await call(
                subscribers.register, sid, self.channel_name, user_key(self.scope.get("user"))
            )
        except ForeignSubscriber:
            return False
        self.subscriber_id = sid
        for oid in observers:
            await self.channel_layer.group_add(broadcast.group_name(oid), self.channel_name)
        self._heartbeat = asyncio.ensure_future(self._beat())
        return True

    async def __call__(
        self, scope: Any, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        """Run the consumer; whatever ends it, the subscriber's state goes with it."""
        try:
            await super().__call__(scope, receive, send)
        finally:
            # A handler that raised ends the consumer without websocket.disconnect.
            with contextlib.suppress(Exception):
                await self.disconnect(1011)

    async def disconnect(self, code: int) -> None:
        """Called when the socket closes: end every subscription of this subscriber."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        sid, self.subscriber_id = self.subscriber_id, None
        if sid is None:
            return
        observers = await call(subscribers.remove, sid, self.channel_name)
        for oid in observers:
            await self.leave(oid)

    async def leave(self, oid: str) -> None:
        """Stop receiving an observer's pushes on this socket."""
        await self.channel_layer.group_discard(broadcast.group_name(oid), self.channel_name)

    async def send_json(self, frame: dict[str, Any]) -> None:
        """Send one JSON frame."""
        await self.send(text_data=json.dumps(frame, separators=(",", ":")))

    async def _beat(self) -> None:
        # Renews the subscriber's lifetime and re-adds group memberships, which
        # channels_redis expires by time since group_add, not by activity.
        interval = reactive_settings.HEARTBEAT_INTERVAL
        while True:
            await asyncio.sleep(interval)
            sid = self.subscriber_id
            if sid is None:
                return  # the socket is closing
            try:
                observers = await call(subscribers.heartbeat, sid, self.channel_name)
            except Exception:
                logger.warning("Heartbeat of subscriber %s failed", sid)
                continue
            if observers is None:
                # Our state is gone (expired or Redis lost it): the client must
                # reconnect and resubscribe, which its version check turns into a resume.
                self.subscriber_id = None
                await self.close(code=CLOSE_STATE_LOST)
                return
            for oid in observers:
                with contextlib.suppress(Exception):
                    await self.channel_layer.group_add(broadcast.group_name(oid), self.channel_name)
