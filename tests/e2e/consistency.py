"""Clients that keep their own copy of a result and must converge on a fresh GET.

Each client runs in a thread: it subscribes over the batched protocol, applies
diffs by version, resubscribes with its observer and version on a gap, and
reconnects with backoff when its socket drops, exactly as a browser client must.
"""

from __future__ import annotations

import json
import threading
import time
from contextlib import suppress

import httpx
import redis
from django.conf import settings
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from reactive_celery.protocol import apply_batch


class ConsistentClient(threading.Thread):
    def __init__(self, port: int, url: str) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.url = url
        self.items: list[dict] = []
        self.version: int | None = None
        self.observer: str | None = None
        self.primary_key = "id"
        self.gaps = 0
        self.reconnects = 0
        self.errors: list[dict] = []
        self.ready = threading.Event()
        #: Cleared, the client stops reading its socket (a stalled browser tab).
        self.reading = threading.Event()
        self.reading.set()
        self._halt = threading.Event()
        self._connection = None
        self._next_id = 0

    # --- socket -------------------------------------------------------------

    def _connect(self) -> None:
        delay = 0.1
        while not self._halt.is_set():
            try:
                self._connection = self._dial()
                self._subscribe()
                return
            except Exception:  # refused, reset mid-handshake, timed out: try again later
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _dial(self):
        return connect(
            f"ws://127.0.0.1:{self.port}/ws/reactive/",
            additional_headers={"Origin": f"http://127.0.0.1:{self.port}"},
            open_timeout=5,
            max_size=None,
        ).__enter__()

    def _subscribe(self) -> None:
        self._next_id += 1
        request = {"type": "subscribe", "id": self._next_id, "url": self.url}
        if self.observer is not None and self.version is not None:
            request.update(observer=self.observer, version=self.version)
        self._connection.send(json.dumps(request))

    def drop(self) -> None:
        """Close the socket abruptly, as a lost network would."""
        with suppress(Exception):
            self._connection.socket.close()

    def stop(self) -> None:
        self._halt.set()
        with suppress(Exception):
            self._connection.close()

    # --- frames -------------------------------------------------------------

    def run(self) -> None:
        self._connect()
        while not self._halt.is_set():
            if not self.reading.wait(0.1):
                continue
            try:
                frame = json.loads(self._connection.recv(timeout=0.5))
                # Inside the try: a gap's resubscribe sends on a socket the server
                # may already have closed (frames still queued here, read after).
                self._on_frame(frame)
            except TimeoutError:
                continue
            except (ConnectionClosed, OSError, EOFError, RuntimeError):
                if self._halt.is_set():
                    return
                self.reconnects += 1
                self._connect()

    def _on_frame(self, frame: dict) -> None:
        kind = frame.get("type")
        if kind == "subscribed":
            self.observer = frame["observer"]
            self.primary_key = frame["primary_key"]
            if "items" in frame:
                self.items = frame["items"]
            else:
                for diff in frame["diffs"]:
                    self.items = apply_batch(self.items, diff, self.primary_key)
            self.version = frame["version"]
            self.ready.set()
        elif kind == "diff" and frame["observer"] == self.observer and self.version is not None:
            if frame["version"] <= self.version:
                return
            if frame["version"] != self.version + 1:
                self.gaps += 1
                self._subscribe()
                return
            self.items = apply_batch(self.items, frame, self.primary_key)
            self.version = frame["version"]
        elif kind == "error":
            self.errors.append(frame)
            if frame.get("observer"):
                self._subscribe()
            elif frame.get("code") in ("unavailable", "rate_limited"):
                time.sleep(0.5)  # as a browser client does: retry a transient refusal
                self._subscribe()


def quiet(redis_client, clients: list[ConsistentClient], timeout: float = 90, broker=None) -> None:
    """Wait until no evaluation is queued or running and every client holds the latest version.

    Queued includes the broker: a task whose worker was killed waits, unacked,
    for the visibility timeout before it is delivered again.
    """
    # A broker of the test's own topology (Sentinel) is passed in; else the run's.
    broker = broker or redis.Redis.from_url(settings.CELERY_BROKER_URL)
    deadline = time.monotonic() + timeout
    stable_since = None
    while time.monotonic() < deadline:
        busy = (
            any(
                redis_client.keys(pattern)
                for pattern in (
                    *("rc:queued:*", "rc:lock:*", "rc:dirty:*"),
                    *("rc:probing:*", "rc:probe:*:queued"),
                )
            )
            or _untaken_changes(redis_client)
            or broker.llen("celery") > 0
            or broker.hlen("unacked") > 0
        )
        behind = [
            c
            for c in clients
            if c.observer is None
            or str(c.version) != redis_client.hget(f"rc:obs:{c.observer}", "version")
        ]
        if busy or behind:
            stable_since = None
        elif stable_since is None:
            stable_since = time.monotonic()
        elif time.monotonic() - stable_since > 1.0:
            return
        time.sleep(0.1)
    details = [
        (
            c.url,
            c.port,
            c.version,
            c.observer and redis_client.hget(f"rc:obs:{c.observer}", "version"),
            c.reconnects,
            c.gaps,
            c.errors[-1:],
        )
        for c in behind
    ]
    keys = [k for p in ("rc:queued:*", "rc:lock:*", "rc:dirty:*") for k in redis_client.keys(p)]
    waiting = (
        broker.llen("celery"),
        broker.hlen("unacked"),
        broker.hgetall("unacked"),
        broker.zrange("unacked_index", 0, -1, withscores=True),
        time.time(),
    )
    raise AssertionError(
        f"no quiet within {timeout}s: busy={busy} {keys} broker={waiting}, behind: {details}"
    )


def _untaken_changes(redis_client) -> bool:
    """A live observer's touched set: a change no evaluation took yet (its task may be lost)."""
    for name in redis_client.keys("rc:touched:*"):
        if redis_client.exists("rc:obs:" + name.split(":", 2)[2]):
            return True
    return False


def assert_converged(http: httpx.Client, clients: list[ConsistentClient]) -> None:
    """Every client's list equals a fresh GET of its URL."""
    for client in clients:
        response = http.get(client.url)
        assert response.status_code == 200, response.text
        data = response.json()
        expected = data["results"] if isinstance(data, dict) else data
        # Enough to tell a lost evaluation (stored result stale too) from a lost push.
        assert client.items == expected, {
            "url": client.url,
            "observer": client.observer,
            "version": client.version,
            "gaps": client.gaps,
            "reconnects": client.reconnects,
            "errors": client.errors[-3:],
            "client": [row.get("id") for row in client.items],
            "fresh": [row.get("id") for row in expected],
            "stored": _stored(client.observer),
        }


def _stored(oid: str | None) -> dict | None:
    if oid is None:
        return None
    store = redis.Redis.from_url(settings.REACTIVE_CELERY["REDIS_URL"], decode_responses=True)
    fields = store.hgetall(f"rc:obs:{oid}")
    items = json.loads(fields.get("items", "[]"))
    return {"version": fields.get("version"), "ids": [row.get("id") for row in items]}
