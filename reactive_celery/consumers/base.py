"""What both socket protocols share: owning a subscriber id, heartbeats, clean-up."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from .. import broadcast, store
from ..conf import reactive_settings
from ..exceptions import ForeignSubscriber
from ..subscriptions import user_key

__all__ = [
    "CLOSE_BAD_ID",
    "CLOSE_FOREIGN_ID",
    "CLOSE_STATE_LOST",
    "SubscriberSocket",
    "call",
    "encoded_frames",
]

logger = logging.getLogger(__name__)

#: Close codes (4000-4999 are the application's own).
CLOSE_BAD_ID = 4400
CLOSE_FOREIGN_ID = 4403
CLOSE_STATE_LOST = 4408


#: Frames of recent diffs, encoded once per process: channels_redis hands one group
#: message to every local socket, and encoding per socket was most of the fan-out's CPU.
#: (observer, version) names one evaluation's diff, so the key is exact.
_ENCODED: OrderedDict[tuple[str, str, int], list[str]] = OrderedDict()
_ENCODED_LIMIT = 256


def encoded_frames(
    protocol: str, event: dict[str, Any], build: Callable[[dict[str, Any]], list[dict]]
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


def call(func: Any, *args: Any) -> Any:
    """Run a blocking store call off the event loop."""
    return sync_to_async(func, thread_sensitive=False)(*args)


class SubscriberSocket(AsyncWebsocketConsumer):
    """A socket that owns one subscriber id in the store while it is open."""

    subscriber_id: str | None = None
    _heartbeat: asyncio.Task[None] | None = None

    async def claim(self, sid: str) -> bool:
        """Register ``sid`` for this socket and rejoin its groups; False if foreign."""
        try:
            observers = await call(
                store.register_subscriber, sid, self.channel_name, user_key(self.scope.get("user"))
            )
        except ForeignSubscriber:
            return False
        self.subscriber_id = sid
        for oid in observers:
            await self.channel_layer.group_add(broadcast.group_name(oid), self.channel_name)
        self._heartbeat = asyncio.ensure_future(self._beat())
        return True

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
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
        observers = await call(store.remove_subscriber, sid, self.channel_name)
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
            try:
                observers = await call(store.heartbeat, self.subscriber_id, self.channel_name)
            except Exception:
                logger.warning("Heartbeat of subscriber %s failed", self.subscriber_id)
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
