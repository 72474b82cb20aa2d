"""Fixtures of the consumer tests: sockets in this process over the real channels_redis layer.

Each test body is a coroutine run to completion with ``async_to_sync`` (no
pytest-asyncio); sockets are communicators on the routes a project mounts,
behind Channels' session authentication.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any

import pytest
import redis
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from channels.auth import AuthMiddlewareStack
from channels.layers import channel_layers, get_channel_layer
from channels.routing import URLRouter
from django.conf import settings
from django.test import Client

from reactive_celery.routing import websocket_urlpatterns

from . import TIMEOUT


class Socket(ApplicationCommunicator):
    """A WebSocket client talking ASGI to the application, as ``WebsocketCommunicator``.

    ``channels.testing`` cannot be imported without daphne (its live-server
    module needs it), which this project does not install.
    """

    def __init__(
        self,
        application: Any,
        path: str,
        headers: list[tuple[bytes, bytes]],
        address: str | None = None,
    ) -> None:
        path, _, query = path.partition("?")
        scope = {
            "type": "websocket",
            "path": path,
            "query_string": query.encode(),
            "headers": headers,
            "subprotocols": [],
        }
        if address is not None:  # as an ASGI server reports its peer
            scope["client"] = (address, 50000)
        super().__init__(application, scope)

    async def connect(self, timeout: float = TIMEOUT) -> tuple[bool, int | None]:
        """The handshake: (True, None) when accepted, (False, close code) when refused."""
        await self.send_input({"type": "websocket.connect"})
        response = await self.receive_output(timeout)
        if response["type"] == "websocket.close":
            return False, response.get("code", 1000)
        assert response["type"] == "websocket.accept", response
        return True, None

    async def send_to(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Send one text or binary frame."""
        if text_data is not None:
            await self.send_input({"type": "websocket.receive", "text": text_data})
        else:
            await self.send_input({"type": "websocket.receive", "bytes": bytes_data})

    async def send_json_to(self, data: Any) -> None:
        """Send one JSON text frame."""
        await self.send_to(text_data=json.dumps(data))

    async def receive_from(self, timeout: float = TIMEOUT) -> str:
        """The next text frame the server sent; fails on anything else."""
        response = await self.receive_output(timeout)
        assert response["type"] == "websocket.send", response
        assert isinstance(response.get("text"), str), response
        return str(response["text"])

    async def receive_json_from(self, timeout: float = TIMEOUT) -> Any:
        """The next frame, decoded from JSON."""
        return json.loads(await self.receive_from(timeout))

    async def disconnect(self, code: int = 1000, timeout: float = TIMEOUT) -> None:
        """Close from the client side and wait for the consumer to end."""
        await self.send_input({"type": "websocket.disconnect", "code": code})
        await self.wait(timeout)


class Sockets:
    """Opens WebSocket communicators on the project's routes; always closes them."""

    def __init__(self) -> None:
        self.application = AuthMiddlewareStack(URLRouter(websocket_urlpatterns))

    def communicator(
        self, path: str, cookie: str | None = None, address: str | None = None
    ) -> Socket:
        """A socket as a browser on this site would open it (from ``address``, if
        given); not yet connected."""
        headers = [(b"origin", b"http://testserver"), (b"host", b"testserver")]
        if cookie:
            headers.append((b"cookie", cookie.encode()))
        return Socket(self.application, path, headers, address)

    @contextlib.asynccontextmanager
    async def open(
        self, path: str, cookie: str | None = None, address: str | None = None
    ) -> AsyncIterator[Socket]:
        """Connect (the handshake must be accepted); disconnect when the block ends."""
        communicator = self.communicator(path, cookie, address)
        connected, _ = await communicator.connect(timeout=TIMEOUT)
        assert connected, f"{path} refused the handshake"
        try:
            yield communicator
        finally:
            await communicator.disconnect(timeout=TIMEOUT)


@pytest.fixture
def layer_redis() -> Iterator[redis.Redis]:
    """The Redis database of the channel layer (db 2), flushed after the test."""
    address = settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0]["address"]
    client = redis.Redis.from_url(address, decode_responses=True)
    yield client
    client.flushdb()
    client.close()


@pytest.fixture(autouse=True)
def _clean_redis(store_redis: redis.Redis, layer_redis: redis.Redis) -> Iterator[None]:
    """Every consumer test leaves both the reactive store and the channel layer empty,
    and the next one gets a layer object of its own.

    Each test runs its own event loop. A hub's receive still pending when a test's loop
    ends holds the layer's receive lock, which asyncio binds to that loop: a later
    test contending for it would fail with "bound to a different event loop". A
    deployment runs one loop per process for good, so this is the tests' own concern.
    """
    yield
    channel_layers.backends.clear()


@pytest.fixture
def sockets() -> Sockets:
    """Opens sockets on ``ws/reactive/`` and ``ws/<id>`` in this process."""
    return Sockets()


@pytest.fixture
def layer() -> Any:
    """The real channels_redis layer the consumers use."""
    return get_channel_layer()


@pytest.fixture
def run() -> Callable[[Callable[[], Coroutine[Any, Any, None]]], None]:
    """Run an async test body to completion on its own event loop."""

    def run_body(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
        async_to_sync(body)()

    return run_body


@pytest.fixture
def user(transactional_db: None, django_user_model: Any) -> Any:
    """A user in the database; committed, so the consumers' threads see it."""
    return django_user_model.objects.create_user(username="alice", password="secret")


@pytest.fixture
def user_cookie(user: Any) -> str:
    """The Cookie header of a browser where ``user`` is logged in."""
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


async def _eventually(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + TIMEOUT
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.05)


@pytest.fixture
def eventually() -> Callable[[Callable[[], Any], str], Coroutine[Any, Any, Any]]:
    """``await eventually(check, what)``: poll until ``check()`` is true, at most TIMEOUT s."""
    return _eventually
