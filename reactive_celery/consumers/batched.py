"""The batched protocol: ``ws/reactive/``, subscriptions over the socket itself.

One frame per evaluation; requests and answers as in docs/protocol.md. Every
refused request gets an ``error`` frame with a code and changes nothing.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from typing import Any

from channels.db import database_sync_to_async

from .. import store
from ..conf import reactive_settings
from ..diff import batch
from ..url_subscribe import SubscribeRefused, subscribe_url
from .base import CLOSE_FOREIGN_ID, SubscriberSocket, call, encoded_frames

__all__ = ["BatchedConsumer", "diff_frame"]

logger = logging.getLogger(__name__)

_OBSERVER_ID = re.compile(r"[0-9a-f]{64}")
_MAX_URL = 2048


def diff_frame(oid: str, version: int, primary_key: str, changes: list[dict[str, Any]]) -> dict:
    """The batched ``diff`` frame of one evaluation's changes."""
    return {"type": "diff", "observer": oid, "version": version, **batch(changes, primary_key)}


def _diff_frames(event: dict[str, Any]) -> list[dict]:
    return [diff_frame(event["observer"], event["version"], event["primary_key"], event["changes"])]


class Refused(Exception):
    """A request this socket refuses; becomes one ``error`` frame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class BatchedConsumer(SubscriberSocket):
    """One browser connection of the batched protocol; the server picks its subscriber id."""

    async def connect(self) -> None:
        """Called on the WebSocket handshake: register a fresh subscriber id and accept."""
        self._tokens = float(reactive_settings.SUBSCRIBE_RATE)
        self._refilled = time.monotonic()
        if not await self.claim(secrets.token_urlsafe(18)):
            await self.close(code=CLOSE_FOREIGN_ID)
            return
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Called for each client frame: one request, one answer."""
        request_id = None
        try:
            message = self._parse(text_data, bytes_data)
            request_id = message.get("id")
            handler = {
                "subscribe": self._subscribe,
                "unsubscribe": self._unsubscribe,
                "ping": self._ping,
            }.get(message["type"])
            if handler is None:
                raise Refused("unknown_type", f"Unknown message type {message['type']!r}.")
            answer = await handler(message)
        except Refused as refused:
            answer = {"type": "error", "code": refused.code, "message": refused.message}
        except Exception:
            # One bad request must not take the socket (and its subscriptions) down.
            logger.exception("Request on subscriber %s failed", self.subscriber_id)
            answer = {"type": "error", "code": "error", "message": "The request failed."}
        if request_id is not None:
            answer["id"] = request_id
        await self.send_json(answer)

    def _parse(self, text_data: str | None, bytes_data: bytes | None) -> dict[str, Any]:
        if text_data is None:
            raise Refused("bad_message", "Frames must be JSON text, not binary.")
        if len(text_data.encode()) > reactive_settings.MAX_FRAME_BYTES:
            raise Refused(
                "too_large", f"Frames are limited to {reactive_settings.MAX_FRAME_BYTES} bytes."
            )
        try:
            message = json.loads(text_data)
        except ValueError:
            raise Refused("bad_json", "The frame is not valid JSON.") from None
        if not isinstance(message, dict):
            raise Refused("bad_message", "A message must be a JSON object with a 'type'.")
        request_id = message.get("id")
        valid_id = request_id is None or (
            (isinstance(request_id, int) and not isinstance(request_id, bool))
            or (isinstance(request_id, str) and len(request_id) <= 64)
        )
        if not valid_id:
            message.pop("id", None)
            raise Refused("bad_message", "'id' must be an integer or a string of 64 characters.")
        if not isinstance(message.get("type"), str):
            raise Refused("bad_message", "A message must have a string 'type'.")
        return message

    def _take_token(self) -> None:
        now = time.monotonic()
        rate = float(reactive_settings.SUBSCRIBE_RATE)
        self._tokens = min(rate, self._tokens + (now - self._refilled) * rate)
        self._refilled = now
        if self._tokens < 1:
            raise Refused("rate_limited", f"At most {rate:g} subscribe requests a second.")
        self._tokens -= 1

    async def _subscribe(self, message: dict[str, Any]) -> dict[str, Any]:
        url, oid, since = message.get("url"), message.get("observer"), message.get("version")
        if not isinstance(url, str) or not url or len(url) > _MAX_URL:
            raise Refused("bad_message", f"'url' must be a path of at most {_MAX_URL} characters.")
        if (oid is None) != (since is None):
            raise Refused("bad_message", "Resume needs both 'observer' and 'version'.")
        if oid is not None and (
            not isinstance(oid, str)
            or not _OBSERVER_ID.fullmatch(oid)
            or not isinstance(since, int)
            or isinstance(since, bool)
            or since < 0
        ):
            raise Refused("bad_message", "'observer' must be an observer id, 'version' >= 0.")
        self._take_token()
        held = await call(store.subscription_count, self.subscriber_id)
        resuming_own = oid is not None and await call(store.is_subscribed, oid, self.subscriber_id)
        if held >= reactive_settings.MAX_SUBSCRIPTIONS and not resuming_own:
            raise Refused(
                "too_many_subscriptions",
                f"A socket may hold {reactive_settings.MAX_SUBSCRIPTIONS} subscriptions.",
            )
        try:
            # Not thread-sensitive: a subscribe waiting on a busy observer's lock
            # must not hold up every other socket (and auth) of this process.
            data = await database_sync_to_async(subscribe_url, thread_sensitive=False)(
                url,
                self.subscriber_id,
                self.scope.get("user"),
                self._host(),
                self.scope.get("scheme") in ("wss", "https"),
                since,
                (self.scope.get("client") or ("",))[0] or "",
            )
        except SubscribeRefused as refused:
            raise Refused(refused.code, refused.message) from None
        if resuming_own and data["observer"] != oid and held >= reactive_settings.MAX_SUBSCRIPTIONS:
            # The URL named a new observer after all: the limit applies to it.
            await call(store.unsubscribe, data["observer"], self.subscriber_id)
            await self.leave(data["observer"])
            raise Refused(
                "too_many_subscriptions",
                f"A socket may hold {reactive_settings.MAX_SUBSCRIPTIONS} subscriptions.",
            )
        if oid is not None and data["observer"] != oid:
            # The URL now names another observer (another user, another query): start over.
            data.pop("diffs", None)
            data["reset"] = True
        if "diffs" in data:
            data["diffs"] = [
                diff_frame(data["observer"], e["version"], e["primary_key"], e["changes"])
                for e in data["diffs"]
            ]
        elif "items" not in data:
            raise Refused("error", "The subscription answer carried no items.")
        return {"type": "subscribed", **data}

    async def _unsubscribe(self, message: dict[str, Any]) -> dict[str, Any]:
        oid = message.get("observer")
        if not isinstance(oid, str) or not _OBSERVER_ID.fullmatch(oid):
            raise Refused("bad_message", "'observer' must be an observer id.")
        if not await call(store.is_subscribed, oid, self.subscriber_id):
            raise Refused("not_subscribed", "This socket does not observe that observer.")
        await call(store.unsubscribe, oid, self.subscriber_id)
        await self.leave(oid)
        return {"type": "unsubscribed", "observer": oid}

    async def _ping(self, message: dict[str, Any]) -> dict[str, Any]:
        return {"type": "pong"}

    def _host(self) -> str:
        for name, value in self.scope.get("headers", []):
            if name == b"host":
                return value.decode("latin-1")
        server = self.scope.get("server") or ("localhost", None)
        return f"{server[0]}:{server[1]}" if server[1] else str(server[0])

    async def reactive_diff(self, event: dict[str, Any]) -> None:
        """Called for a ``reactive.diff`` group message: one frame for the evaluation."""
        for text in encoded_frames("batched", event, _diff_frames):
            await self.send(text_data=text)

    async def reactive_error(self, event: dict[str, Any]) -> None:
        """Called when an observer stopped: the subscription ends with an error frame."""
        await self.send_json(
            {
                "type": "error",
                "observer": event["observer"],
                "code": event["code"],
                "message": event["message"],
            }
        )
        await self.leave(event["observer"])
