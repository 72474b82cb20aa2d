"""The WebSocket consumer of the seed-compatible protocol: ``ws/<subscriber_id>``.

The browser picks a random subscriber id, opens the socket, then subscribes
over HTTP with ``?observe=<id>``. Each change arrives as one frame::

    {"msg": "added" | "changed" | "removed", "observer": ..., "primary_key": ...,
     "order": ..., "item": {...}, "version": ...}

A stopped observer sends ``{"msg": "error", "observer", "code", "error"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from asgiref.sync import sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from . import broadcast, store
from .conf import reactive_settings
from .exceptions import ForeignSubscriber
from .subscriptions import SUBSCRIBER_ID, user_key

__all__ = ["CLOSE_BAD_ID", "CLOSE_FOREIGN_ID", "SubscriberConsumer"]

logger = logging.getLogger(__name__)

#: Close codes (4000-4999 are the application's own).
CLOSE_BAD_ID = 4400
CLOSE_FOREIGN_ID = 4403


def _call(func: Any, *args: Any) -> Any:
    return sync_to_async(func, thread_sensitive=False)(*args)


class SubscriberConsumer(AsyncWebsocketConsumer):
    """One browser connection; owns one subscriber id for its lifetime."""

    subscriber_id: str | None = None
    _heartbeat: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        """Called on the WebSocket handshake: claim the subscriber id and accept."""
        sid = self.scope["url_route"]["kwargs"].get("subscriber_id", "")
        if not SUBSCRIBER_ID.fullmatch(sid):
            await self.close(code=CLOSE_BAD_ID)
            return
        try:
            observers = await _call(
                store.register_subscriber, sid, self.channel_name, user_key(self.scope.get("user"))
            )
        except ForeignSubscriber:
            await self.close(code=CLOSE_FOREIGN_ID)
            return
        self.subscriber_id = sid
        for oid in observers:
            await self.channel_layer.group_add(broadcast.group_name(oid), self.channel_name)
        await self.accept()
        self._heartbeat = asyncio.ensure_future(self._beat())

    async def disconnect(self, code: int) -> None:
        """Called when the socket closes: end every subscription of this subscriber."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        if self.subscriber_id is None:
            return
        observers = await _call(store.remove_subscriber, self.subscriber_id, self.channel_name)
        for oid in observers:
            await self.channel_layer.group_discard(broadcast.group_name(oid), self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Called for each client frame; this protocol only sends."""
        await self._send(
            {
                "msg": "error",
                "code": "unsupported",
                "error": "This socket only receives; subscribe with GET <endpoint>?observe=<id>.",
            }
        )

    async def reactive_diff(self, event: dict[str, Any]) -> None:
        """Called for a ``reactive.diff`` group message: one frame per changed item."""
        for change in event["changes"]:
            await self._send(
                {
                    "msg": change["msg"],
                    "observer": event["observer"],
                    "primary_key": event["primary_key"],
                    "order": change["order"],
                    "item": change["item"],
                    "version": event["version"],
                }
            )

    async def reactive_error(self, event: dict[str, Any]) -> None:
        """Called when an observer stopped: tell the client why."""
        await self._send(
            {
                "msg": "error",
                "observer": event["observer"],
                "code": event["code"],
                "error": event["message"],
            }
        )
        await self.channel_layer.group_discard(
            broadcast.group_name(event["observer"]), self.channel_name
        )

    async def _send(self, frame: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(frame, separators=(",", ":")))

    async def _beat(self) -> None:
        # Renews the subscriber's lifetime and re-adds group memberships, which
        # channels_redis expires by time since group_add, not by activity.
        interval = reactive_settings.HEARTBEAT_INTERVAL
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(Exception):
                observers = await _call(store.heartbeat, self.subscriber_id, self.channel_name)
                for oid in observers:
                    await self.channel_layer.group_add(broadcast.group_name(oid), self.channel_name)
