"""The seed-compatible protocol: ``ws/<subscriber_id>``, subscriptions over HTTP.

The browser picks a random subscriber id, opens the socket, then subscribes
over HTTP with ``?observe=<id>``. Each change arrives as one frame::

    {"msg": "added" | "changed" | "removed", "observer": ..., "primary_key": ...,
     "order": ..., "item": {...}, "version": ...}

A stopped observer sends ``{"msg": "error", "observer", "code", "error"}``.
"""

from __future__ import annotations

from .. import protocol
from ..protocol import CLOSE_BAD_ID, SUBSCRIBER_ID
from .base import SubscriberSocket

__all__ = ["SubscriberConsumer"]


class SubscriberConsumer(SubscriberSocket):
    """One browser connection of the seed protocol; its id comes from the URL."""

    protocol_name = "seed"
    diff_frames = staticmethod(protocol.seed_diffs)
    stop_frame = staticmethod(protocol.seed_stop)

    async def connect(self) -> None:
        """Called on the WebSocket handshake: claim the subscriber id and accept."""
        sid = self.scope["url_route"]["kwargs"].get("subscriber_id", "")
        if not SUBSCRIBER_ID.fullmatch(sid):
            await self.refuse(CLOSE_BAD_ID)
            return
        # Registered before the handshake completes: a GET ?observe= sent the moment
        # the socket opens must find its subscriber.
        refused = await self.claim(sid)
        if refused is not None:
            await self.refuse(refused)
            return
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Called for each client frame; this protocol only sends."""
        await self.send_json(
            protocol.seed_error(
                "unsupported",
                "This socket only receives; subscribe with GET <endpoint>?observe=<id>.",
            )
        )
