"""End-to-end fixtures: two Celery workers and two ASGI servers as real processes.

Sockets connect to one ASGI server and subscribe over HTTP through the other,
so every test also proves that no step assumes a single process.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest
from django.test import Client as DjangoClient
from websockets.sync.client import ClientConnection, connect

from reactive_celery.protocol import apply_batch
from tests import processes
from tests.testapp.models import Item


@pytest.fixture(scope="session")
def cluster(django_db_setup, django_db_blocker) -> Iterator[dict]:
    # Fault tests replace workers and servers in place: stop whatever is there at the end.
    running: dict = {"workers": [], "servers": [], "ports": []}
    try:
        running["workers"] += [processes.celery_worker(f"w{i}") for i in range(2)]
        running["ports"] += [processes.free_port() for _ in range(2)]
        running["servers"] += [processes.asgi_server(port) for port in running["ports"]]
        yield running
    finally:
        for process in running["workers"] + running["servers"]:
            process.stop()


class Socket:
    """A WebSocket client of the seed protocol, on a real ASGI server."""

    def __init__(self, port: int, cookies: dict[str, str] | None = None, sid: str | None = None):
        self.id = sid or secrets.token_hex(12)
        self.port = port
        headers = {"Origin": f"http://127.0.0.1:{port}"}
        if cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        self._stack = ExitStack()
        self.connection: ClientConnection = self._stack.enter_context(
            connect(
                f"ws://127.0.0.1:{port}/ws/{self.id}", additional_headers=headers, open_timeout=10
            )
        )

    def recv(self, timeout: float = 15) -> dict:
        return json.loads(self.connection.recv(timeout=timeout))

    def recv_many(self, count: int, timeout: float = 15) -> list[dict]:
        return [self.recv(timeout) for _ in range(count)]

    def close(self) -> None:
        self._stack.close()


class BatchedSocket:
    """A WebSocket client of the batched protocol (``ws/reactive/``)."""

    def __init__(self, port: int, cookies: dict[str, str] | None = None, origin: str | None = None):
        headers = {"Origin": origin or f"http://127.0.0.1:{port}"}
        if cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        self._stack = ExitStack()
        self.connection: ClientConnection = self._stack.enter_context(
            connect(
                f"ws://127.0.0.1:{port}/ws/reactive/",
                additional_headers=headers,
                open_timeout=10,
                max_size=None,
            )
        )
        self._next_id = 0
        self.pushed: list[dict] = []

    def send_raw(self, text: str) -> None:
        self.connection.send(text)

    def recv(self, timeout: float = 15) -> dict:
        return json.loads(self.connection.recv(timeout=timeout))

    def request(self, message: dict, timeout: float = 15) -> dict:
        """Send one request with a fresh id; return its answer, keeping pushes aside."""
        self._next_id += 1
        self.connection.send(json.dumps({**message, "id": self._next_id}))
        while True:
            frame = self.recv(timeout)
            if frame.get("id") == self._next_id:
                return frame
            self.pushed.append(frame)

    def subscribe(self, url: str, **extra) -> dict:
        answer = self.request({"type": "subscribe", "url": url, **extra})
        assert answer["type"] == "subscribed", answer
        return answer

    def next_push(self, timeout: float = 15) -> dict:
        if self.pushed:
            return self.pushed.pop(0)
        return self.recv(timeout)

    def close(self) -> None:
        self._stack.close()


class Live:
    """What a test needs to drive the cluster: sockets, HTTP clients, logins."""

    def __init__(self, cluster: dict, store_redis) -> None:
        self.cluster = cluster
        self.redis = store_redis
        self.ws_port, self.http_port = cluster["ports"]
        self._sockets: list[Socket] = []
        self._clients: list[httpx.Client] = []

    def login(self, user) -> dict[str, str]:
        client = DjangoClient()
        client.force_login(user)
        return {"sessionid": client.cookies["sessionid"].value}

    def socket(
        self,
        cookies: dict[str, str] | None = None,
        port: int | None = None,
        sid: str | None = None,
    ) -> Socket:
        sock = Socket(port or self.ws_port, cookies, sid)
        self._sockets.append(sock)
        return sock

    def batched(
        self,
        cookies: dict[str, str] | None = None,
        port: int | None = None,
        origin: str | None = None,
    ) -> BatchedSocket:
        sock = BatchedSocket(port or self.ws_port, cookies, origin)
        self._sockets.append(sock)
        return sock

    def http(self, cookies: dict[str, str] | None = None, port: int | None = None) -> httpx.Client:
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{port or self.http_port}", cookies=cookies, timeout=20
        )
        self._clients.append(client)
        return client

    def observe(
        self,
        path: str,
        sock: Socket,
        cookies: dict[str, str] | None = None,
        port: int | None = None,
    ) -> dict:
        separator = "&" if "?" in path else "?"
        response = self.http(cookies, port).get(f"{path}{separator}observe={sock.id}")
        assert response.status_code == 200, response.text
        return response.json()

    def wait_for(self, condition, timeout: float = 15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(0.02)
        raise AssertionError(f"condition not met within {timeout}s")

    def evaluations(self, observer: str) -> int:
        return int(self.redis.hget(f"rc:obs:{observer}", "evaluations") or 0)

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()
        for client in self._clients:
            client.close()


def check_resume(live: Live, changes: int) -> None:
    """A batched socket closed while ``changes`` commits land resumes with exactly their diffs.

    One scenario for the one-server suite and the cluster's (test_batched, test_cluster).
    A second socket keeps the observer alive, and its pushes pace the commits.
    """
    keeper = live.batched()
    keeper.subscribe("/api/items/")
    sock = live.batched()
    answer = sock.subscribe("/api/items/")
    items, version = answer["items"], answer["version"]
    sock.close()
    created = []
    for i in range(changes):
        created.append(Item.objects.create(name=f"away{i}"))
        assert keeper.next_push()["version"] == version + i + 1

    back = live.batched()
    resumed = back.subscribe("/api/items/", observer=answer["observer"], version=version)
    assert "items" not in resumed and "reset" not in resumed
    missed = list(range(version + 1, version + changes + 1))
    assert [d["version"] for d in resumed["diffs"]] == missed
    for frame in resumed["diffs"]:
        items = apply_batch(items, frame, "id")
    assert [i["id"] for i in items] == [c.pk for c in created]
    assert resumed["version"] == version + changes


@pytest.fixture
def live(cluster, transactional_db, store_redis) -> Iterator[Live]:
    harness = Live(cluster, store_redis)
    yield harness
    harness.close()


@pytest.fixture
def redis_restarter():
    """Restart the test run's private Redis: every key, group and queued task is lost."""
    from django.conf import settings

    from reactive_celery.testing import redis_server

    def restart():
        redis_server.restart(settings.REDIS_URL)

    return restart


@pytest.fixture
def redis_stopper():
    """Stop the test run's private Redis inside a ``with`` block; it starts again, empty, after."""
    from contextlib import contextmanager

    from django.conf import settings

    from reactive_celery.testing import redis_server

    @contextmanager
    def stopped():
        redis_server.stop(settings.REDIS_URL)
        try:
            yield
        finally:
            redis_server.restart(settings.REDIS_URL)

    return stopped


@pytest.fixture
def spawn() -> Iterator:
    """Start processes for one test (a beat, a dedicated worker or server); stopped after.

    beat = spawn(processes.celery_beat, "a")
    server = spawn(processes.asgi_server, port, env={...})
    """
    started: list[processes.Process] = []

    def start(factory, *args, **kwargs) -> processes.Process:
        process = factory(*args, **kwargs)
        started.append(process)
        return process

    yield start
    for process in reversed(started):
        process.stop()
