"""The seed-compatible protocol: ``ws/<subscriber_id>``, subscriptions over HTTP.

The browser picks a random subscriber id, opens the socket, then subscribes
over HTTP with ``?observe=<id>``. Each change arrives as one frame::

    {"msg": "added" | "changed" | "removed", "observer": ..., "primary_key": ...,
     "order": ..., "item": {...}, "version": ...}

A stopped observer sends ``{"msg": "error", "observer", "code", "error"}``.
"""

from __future__ import annotations

from typing import Any

from ..subscriptions import SUBSCRIBER_ID
from .base import CLOSE_BAD_ID, CLOSE_FOREIGN_ID, SubscriberSocket, encoded_frames

__all__ = ["SubscriberConsumer"]


def _item_frames(event: dict[str, Any]) -> list[dict]:
    return [
        {
            "msg": change["msg"],
            "observer": event["observer"],
            "primary_key": event["primary_key"],
            "order": change["order"],
            "item": change["item"],
            "version": event["version"],
        }
        for change in event["changes"]
    ]


class SubscriberConsumer(SubscriberSocket):
    """One browser connection of the seed protocol; its id comes from the URL."""

    async def connect(self) -> None:
        """Called on the WebSocket handshake: claim the subscriber id and accept."""
        sid = self.scope["url_route"]["kwargs"].get("subscriber_id", "")
        # Accept, then close with a code: a browser sees close codes, never HTTP statuses.
        await self.accept()
        if not SUBSCRIBER_ID.fullmatch(sid):
            await self.close(code=CLOSE_BAD_ID)
        elif not await self.claim(sid):
            await self.close(code=CLOSE_FOREIGN_ID)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Called for each client frame; this protocol only sends."""
        await self.send_json(
            {
                "msg": "error",
                "code": "unsupported",
                "error": "This socket only receives; subscribe with GET <endpoint>?observe=<id>.",
            }
        )

    async def reactive_diff(self, event: dict[str, Any]) -> None:
        """Called for a ``reactive.diff`` group message: one frame per changed item."""
        for text in encoded_frames("seed", event, _item_frames):
            await self.send(text_data=text)

    async def reactive_error(self, event: dict[str, Any]) -> None:
        """Called when an observer stopped: tell the client why."""
        await self.send_json(
            {
                "msg": "error",
                "observer": event["observer"],
                "code": event["code"],
                "error": event["message"],
            }
        )
        await self.leave(event["observer"])
