"""The batched protocol: ``ws/reactive/``, subscriptions over the socket itself.

One frame per evaluation; requests and answers as in docs/protocol.md. Every
refused request gets an ``error`` frame with a code and changes nothing.
"""

from __future__ import annotations

import json
import logging
import secrets
import time

from channels.db import database_sync_to_async
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser

from .. import metrics, protocol
from ..conf import reactive_settings
from ..exceptions import Refused
from ..protocol import GROUP_SYNCED, MAX_URL, OBSERVER_ID, Frame
from ..store import locks, subscribers
from ..subscriptions import subscribe_url
from .base import SubscriberSocket, call

__all__ = ["BatchedConsumer"]

logger = logging.getLogger(__name__)


class BatchedConsumer(SubscriberSocket):
    """One browser connection of the batched protocol; the server picks its subscriber id."""

    protocol_name = "batched"
    diff_frames = staticmethod(protocol.batched_diffs)
    stop_frame = staticmethod(protocol.batched_stop)

    async def connect(self) -> None:
        """Called on the WebSocket handshake: register a fresh subscriber id and accept."""
        self._tokens = float(reactive_settings.FRAME_RATE)
        self._refilled = time.monotonic()
        refused = await self.claim(secrets.token_urlsafe(18))
        if refused is not None:
            await self.refuse(refused)
            return
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Called for each client frame: one request, one answer."""
        if self.outbox is not None:
            # Pushes that arrive meanwhile follow the answer, as a consumer's messages did.
            self.outbox.hold()
        try:
            await self._answer(text_data, bytes_data)
        finally:
            if self.outbox is not None:
                self.outbox.release()

    async def _answer(self, text_data: str | None, bytes_data: bytes | None) -> None:
        request_id = None
        try:
            message = self._parse(text_data, bytes_data)
            request_id = message.get("id")
            if not isinstance(message.get("type"), str):
                raise Refused("bad_message", "A message must have a string 'type'.")
            self._take_token()
            # Every request is held to the rules an HTTP request with this cookie meets now.
            user = await self.check_identity()
            if user is None:
                return
            handler = {
                "subscribe": self._subscribe,
                "unsubscribe": self._unsubscribe,
                "ping": self._ping,
                "sync": self._catch_up,
            }.get(message["type"])
            if handler is None:
                raise Refused("unknown_type", f"Unknown message type {message['type']!r}.")
            answer = await handler(message, user)
        except Refused as refused:
            answer = protocol.request_error(refused.code, refused.message)
        except Exception as exc:
            # One bad request must not take the socket (and its subscriptions) down,
            # nor fill the log: one line, with an id the client can quote.
            error_id = secrets.token_hex(6)
            logger.error(
                "Request on subscriber %s failed (error %s): %s: %s",
                self.subscriber_id,
                error_id,
                type(exc).__name__,
                exc,
                extra={"error_id": error_id},
            )
            answer = protocol.request_error("error", f"The request failed (error {error_id}).")
        if request_id is not None:
            answer["id"] = request_id
        metrics.answered(answer)
        await self.send_json(answer)

    def _parse(self, text_data: str | None, bytes_data: bytes | None) -> Frame:
        if text_data is None:
            raise Refused("bad_message", "Frames must be JSON text, not binary.")
        try:
            size = len(text_data.encode())
        except UnicodeEncodeError:  # a lone surrogate: not text any client means to send
            raise Refused("bad_message", "Frames must be valid UTF-8 text.") from None
        if size > reactive_settings.MAX_FRAME_BYTES:
            raise Refused(
                "too_large", f"Frames are limited to {reactive_settings.MAX_FRAME_BYTES} bytes."
            )
        try:
            message = json.loads(text_data)
        except (ValueError, RecursionError):
            raise Refused(
                "bad_json", "The frame is not valid JSON (or nests too deeply)."
            ) from None
        if not isinstance(message, dict):
            raise Refused("bad_message", "A message must be a JSON object with a 'type'.")
        request_id = message.get("id")
        valid_id = request_id is None or (
            (isinstance(request_id, int) and not isinstance(request_id, bool))
            or (isinstance(request_id, str) and len(request_id) <= 64)
        )
        if not valid_id:
            message.pop("id", None)
            raise Refused(
                "bad_message", "'id' must be an integer or a string of at most 64 characters."
            )
        return message

    def _take_token(self) -> None:
        # Before any store or database work: a flood costs no more than its answers.
        now = time.monotonic()
        rate = float(reactive_settings.FRAME_RATE)
        self._tokens = min(rate, self._tokens + (now - self._refilled) * rate)
        self._refilled = now
        if self._tokens < 1:
            raise Refused("rate_limited", f"At most {rate:g} frames a second.")
        self._tokens -= 1

    async def _subscribe(self, message: Frame, user: AbstractBaseUser | AnonymousUser) -> Frame:
        url, oid, since = message.get("url"), message.get("observer"), message.get("version")
        if not isinstance(url, str) or not url or len(url) > MAX_URL:
            raise Refused("bad_message", f"'url' must be a path of at most {MAX_URL} characters.")
        if (oid is None) != (since is None):
            raise Refused("bad_message", "Resume needs both 'observer' and 'version'.")
        if oid is not None and (
            not isinstance(oid, str)
            or not OBSERVER_ID.fullmatch(oid)
            or not isinstance(since, int)
            or isinstance(since, bool)
            or since < 0
        ):
            raise Refused("bad_message", "'observer' must be an observer id, 'version' >= 0.")
        # MAX_SUBSCRIPTIONS is the admission's (a resume of a held observer passes):
        # refused as ``too_many_subscriptions`` through ``CODE_ERRORS``.
        # Not thread-sensitive: a subscribe waiting on a busy observer's lock
        # must not hold up every other socket (and auth) of this process.
        data = await database_sync_to_async(subscribe_url, thread_sensitive=False)(
            url,
            self._own_id(),
            user,
            self._host(),
            self.scope.get("scheme") in ("wss", "https"),
            since,
            (self.scope.get("client") or ("",))[0] or "",
        )
        if self.outbox is not None:
            # Held until this answer is sent: diffs it already reflects are dropped.
            self.outbox.floor[data["observer"]] = data["version"]
        if oid is not None and data["observer"] != oid:
            # The URL now names another observer (another user, another query): start over.
            data.pop("diffs", None)
            data["reset"] = True
        if "diffs" in data:
            oid = data["observer"]
            data["diffs"] = [
                protocol.batched_diff(oid, e["version"], e["primary_key"], e["changes"])
                for e in data["diffs"]
            ]
        elif "items" not in data:
            raise Refused("error", "The subscription answer carried no items.")
        return {"type": "subscribed", **data}

    async def _unsubscribe(self, message: Frame, user: AbstractBaseUser | AnonymousUser) -> Frame:
        oid = message.get("observer")
        if not isinstance(oid, str) or not OBSERVER_ID.fullmatch(oid):
            raise Refused("bad_message", "'observer' must be an observer id.")
        sid = self._own_id()
        if not await call(subscribers.follows, sid, oid):
            raise Refused("not_subscribed", "This socket does not observe that observer.")
        await call(subscribers.unsubscribe, oid, sid)
        await self.leave(oid)
        return {"type": "unsubscribed", "observer": oid}

    async def _catch_up(self, message: Frame, user: AbstractBaseUser | AnonymousUser) -> Frame:
        """Read your writes: answer once the observer reflects every write committed so far.

        (Not named ``_sync``: Channels reads that attribute to tell sync consumers apart.)

        ``synced`` at once when nothing is queued, running or owed; else
        ``sync_pending``, and a ``synced`` frame follows when it catches up.
        """
        oid = message.get("observer")
        if not isinstance(oid, str) or not OBSERVER_ID.fullmatch(oid):
            raise Refused("bad_message", "'observer' must be an observer id.")
        if not await call(subscribers.follows, self._own_id(), oid):
            raise Refused("not_subscribed", "This socket does not observe that observer.")
        version = await call(locks.sync, oid)
        if version is None:
            return {"type": "sync_pending", "observer": oid}
        return {"type": "synced", "observer": oid, "version": version}

    def frames(self, event: Frame) -> list[str]:
        """This protocol's frames of a group message; adds ``synced``."""
        if event["type"] == GROUP_SYNCED:
            frame = {"type": "synced", "observer": event["observer"], "version": event["version"]}
            return [json.dumps(frame, separators=(",", ":"))]
        return super().frames(event)

    async def reactive_synced(self, event: Frame) -> None:
        """Called when an observer a client waits on caught up with its writes."""
        self.push(event["observer"], None, event)

    def _own_id(self) -> str:
        if self.subscriber_id is None:  # the heartbeat found the state gone and is closing
            raise Refused("unavailable", "This socket is closing; reconnect and resubscribe.")
        return self.subscriber_id

    async def _ping(self, message: Frame, user: AbstractBaseUser | AnonymousUser) -> Frame:
        return {"type": "pong"}

    def _host(self) -> str:
        for name, value in self.scope.get("headers", []):
            if name == b"host":
                return value.decode("latin-1")
        server = self.scope.get("server") or ("localhost", None)
        return f"{server[0]}:{server[1]}" if server[1] else str(server[0])
