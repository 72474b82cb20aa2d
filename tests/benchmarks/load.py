"""The load client: WebSocket followers that keep their list, and an HTTP writer.

Both protocols of docs/protocol.md:

- ``seed``: open ``ws/<subscriber_id>``, GET the endpoint with
  ``?observe=<subscriber_id>``, then apply one frame per changed item;
- ``batched``: ``ws/reactive/``, subscribe over the socket, one ``diff`` per
  evaluation.

A follower records, for every pushed item, the arrival time and the item's
``stamp`` (the writer's ``time.time()`` when it sent the write), so latency is
wall clock on one machine, writer to socket. It speaks only HTTP and WebSocket.

``FollowerProcesses`` spreads the followers over spawned processes: one event
loop reading a thousand sockets that each take a frame per write falls behind
the server, and its queue would count as latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import multiprocessing
import secrets
import time
from dataclasses import dataclass, field

import httpx
import psutil
from websockets.asyncio.client import connect

from .heap import freeze_heap

__all__ = ["Follower", "FollowerProcesses", "Writer", "follow_all", "percentile"]


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Follower:
    """One socket following one URL; ``items`` is the list as the pushes built it."""

    url: str
    protocol: str = "seed"
    items: list[dict] = field(default_factory=list)
    version: int | None = None
    pk: str = "id"
    frames: int = 0
    gaps: int = 0
    # (pk, stamp) -> arrival time, first arrival only: a repeated item is not a second delivery.
    arrivals: dict[tuple, float] = field(default_factory=dict)
    # (pk, stamp) -> the server's time just before that write's commit (0: not stamped).
    saved: dict[tuple, float] = field(default_factory=dict)
    last_frame: float = 0.0
    errors: list[str] = field(default_factory=list)
    subscribe_retries: int = 0
    #: Seconds from sending the subscription (GET or socket request) to its answer.
    subscribe_s: float = 0.0
    #: First arrivals of a written stamp (rows are seeded with stamp 0).
    fresh: int = 0
    _ws: object = None

    async def open(self, port: int, http: httpx.AsyncClient) -> None:
        origin = {"Origin": f"http://127.0.0.1:{port}"}
        if self.protocol == "seed":
            sid = secrets.token_hex(12)
            self._ws = await connect(
                f"ws://127.0.0.1:{port}/ws/{sid}", additional_headers=origin, max_size=None
            )
            sep = "&" if "?" in self.url else "?"
            started = time.perf_counter()
            for _ in range(100):
                response = await http.get(f"{self.url}{sep}observe={sid}")
                # The seed consumer accepts the handshake before it registers the id, so
                # a GET right after it can be refused as unknown: wait and count it.
                if response.status_code == 503 and "Retry-After" in response.headers:
                    # The socket's process is behind (reactive_busy): retry as told.
                    self.subscribe_retries += 1
                    await asyncio.sleep(float(response.headers["Retry-After"]))
                    continue
                if response.status_code != 400 or "Unknown subscriber" not in response.text:
                    break
                self.subscribe_retries += 1
                await asyncio.sleep(0.02)
            answer = response.raise_for_status().json()
            self.subscribe_s = time.perf_counter() - started
        else:
            self._ws = await connect(
                f"ws://127.0.0.1:{port}/ws/reactive/", additional_headers=origin, max_size=None
            )
            started = time.perf_counter()
            for _ in range(100):
                await self._ws.send(json.dumps({"type": "subscribe", "id": 1, "url": self.url}))
                while True:
                    answer = json.loads(await self._ws.recv())
                    if answer.get("id") == 1:
                        break
                if answer.get("code") not in ("busy", "unavailable"):
                    break
                self.subscribe_retries += 1
                await asyncio.sleep(1)
            self.subscribe_s = time.perf_counter() - started
            if answer.get("type") != "subscribed":
                raise RuntimeError(f"subscribe {self.url}: {answer}")
        self.items = list(answer["items"])
        self.version = answer.get("version")
        self.pk = answer.get("primary_key") or "id"

    async def run(self) -> None:
        """Apply pushes until the socket closes or the task is cancelled."""
        try:
            async for raw in self._ws:
                now = time.time()
                frame = json.loads(raw)
                if self.protocol == "seed":
                    self._apply_seed(frame, now)
                else:
                    self._apply_batched(frame, now)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a dropped socket is a result, not a harness crash
            self.errors.append(repr(exc))

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()

    def _seen(self, item: dict, now: float) -> None:
        key = (item.get(self.pk), item.get("stamp"))
        if key not in self.arrivals:
            self.arrivals[key] = now
            self.saved[key] = float(item.get("saved") or 0)
            self.fresh += bool(key[1])
        self.last_frame = now

    def _check_version(self, version: int | None, same_ok: bool) -> bool:
        """False for a push older than the list; counts a gap when versions were skipped."""
        if version is None or self.version is None:
            return True
        if version < self.version or (version == self.version and not same_ok):
            return False
        if version > self.version + 1:
            self.gaps += 1
        self.version = version
        return True

    def _remove(self, key) -> None:
        self.items = [i for i in self.items if i.get(self.pk) != key]

    def _apply_seed(self, frame: dict, now: float) -> None:
        msg = frame.get("msg")
        if msg not in ("added", "changed", "removed"):
            if msg == "error":
                self.errors.append(json.dumps(frame))
            return
        # All frames of one evaluation share a version: the same version again is fine.
        if not self._check_version(frame.get("version"), same_ok=True):
            return
        self.frames += 1
        item = frame["item"]
        self._remove(item.get(self.pk))
        if msg != "removed":
            self.items.insert(int(frame["order"]), item)
            self._seen(item, now)

    def _apply_batched(self, frame: dict, now: float) -> None:
        if frame.get("type") == "error":
            self.errors.append(json.dumps(frame))
            return
        if frame.get("type") != "diff" or not self._check_version(frame.get("version"), False):
            return
        self.frames += 1
        for key in frame.get("removed", []):
            self._remove(key)
        held = {i.get(self.pk): i for i in self.items}
        entries = [(e["order"], e["item"]) for e in frame.get("added", [])]
        entries += [(e["order"], e["item"]) for e in frame.get("changed", [])]
        entries += [(e["order"], held.get(e["pk"])) for e in frame.get("moved", [])]
        for order, item in sorted(entries, key=lambda e: e[0]):
            if item is None:
                continue
            self._remove(item.get(self.pk))
            self.items.insert(int(order), item)
        for _, item in entries:
            if item is not None:
                self._seen(item, now)


async def follow_all(
    port: int, urls: list[str], protocol: str, http: httpx.AsyncClient, parallel: int = 20
) -> tuple[list[Follower], list[asyncio.Task]]:
    """Open one follower per URL (``parallel`` at a time) and start applying their pushes."""
    followers = [Follower(url, protocol) for url in urls]
    gate = asyncio.Semaphore(parallel)

    async def open_one(follower: Follower) -> None:
        async with gate:
            await follower.open(port, http)

    await asyncio.gather(*(open_one(f) for f in followers))
    tasks = [asyncio.create_task(f.run()) for f in followers]
    return followers, tasks


class Writer:
    """PATCHes ``stamp`` of rows at a fixed rate, open loop: a slow answer delays no later write."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.sent: list[tuple[int, float]] = []  # (pk, stamp) of every write
        self.round_trips: list[float] = []
        self.failures = 0

    async def _patch(self, pk: int) -> None:
        stamp = time.time()
        self.sent.append((pk, stamp))
        try:
            response = await self.http.patch(f"/api/rows/{pk}/", json={"stamp": stamp})
            response.raise_for_status()
        except httpx.HTTPError:
            self.failures += 1
            return
        self.round_trips.append(time.time() - stamp)

    async def run(self, pks: list[int], rate: float) -> None:
        started = time.monotonic()
        pending = []
        for i, pk in enumerate(pks):
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.append(asyncio.create_task(self._patch(pk)))
        await asyncio.gather(*pending)


#: Sockets per load-client process, and the most processes (the machine has few cores).
SOCKETS_PER_PROCESS = 250
MAX_PROCESSES = 8


class FollowerProcesses:
    """One follower per URL, spread over spawned processes; ``parallel`` subscribes in
    flight in all. ``delivered()`` counts the written stamps they heard so far;
    ``finish()`` stops them and brings the followers back (lists, arrivals, gaps)."""

    def __init__(self, port: int, urls: list[str], protocol: str, parallel: int = 20) -> None:
        context = multiprocessing.get_context("spawn")
        count = max(1, min(MAX_PROCESSES, math.ceil(len(urls) / SOCKETS_PER_PROCESS)))
        self.ready, self.stop = context.Semaphore(0), context.Event()
        self.fresh, self.failed = context.Array("q", count), context.Array("b", count)
        self.out = context.Queue()
        share = max(1, parallel // count)
        self.children = [
            context.Process(
                target=_follower_process,
                args=(port, urls[slot::count], protocol, share, slot, self),
                daemon=True,
            )
            for slot in range(count)
        ]

    def __getstate__(self) -> dict:
        # What a child needs: the shared primitives, not the other children.
        return {k: v for k, v in self.__dict__.items() if k != "children"}

    async def open(self, timeout: float = 600) -> None:
        """Start the processes; return once every follower subscribed (or raise)."""
        for child in self.children:
            child.start()
        deadline = time.monotonic() + timeout
        for _ in self.children:
            left = max(0.0, deadline - time.monotonic())
            if not await asyncio.to_thread(self.ready.acquire, True, left):
                raise RuntimeError("load clients did not subscribe in time")
        if any(self.failed[:]):
            raise RuntimeError(await asyncio.to_thread(self.out.get, True, 10))

    def delivered(self) -> int:
        return sum(self.fresh[:])

    def cpu_seconds(self) -> float:
        total = 0.0
        for child in self.children:
            with contextlib.suppress(psutil.Error):
                times = psutil.Process(child.pid).cpu_times()
                total += times.user + times.system
        return total

    async def finish(self) -> list[Follower]:
        self.stop.set()
        followers: list[Follower] = []
        for _ in self.children:
            followers += await asyncio.to_thread(self.out.get, True, 60)
        for child in self.children:
            child.join(10)
        return followers

    def close(self) -> None:
        self.stop.set()
        for child in self.children:
            if child.is_alive():
                child.terminate()
                child.join(10)


def _follower_process(
    port: int, urls: list[str], protocol: str, parallel: int, slot: int, pool: FollowerProcesses
) -> None:
    asyncio.run(_follow_part(port, urls, protocol, parallel, slot, pool))


async def _follow_part(
    port: int, urls: list[str], protocol: str, parallel: int, slot: int, pool: FollowerProcesses
) -> None:
    try:
        base = f"http://127.0.0.1:{port}"
        limits = httpx.Limits(max_connections=max(10, parallel))
        async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as http:
            followers, tasks = await follow_all(port, urls, protocol, http, parallel)
    except Exception as exc:  # the parent raises it: one failed run is reported
        pool.failed[slot] = 1
        pool.out.put(f"load client {slot}: {exc!r}"[:2000])
        pool.ready.release()
        return
    freeze_heap()
    pool.ready.release()
    while not pool.stop.is_set():
        pool.fresh[slot] = sum(f.fresh for f in followers)
        await asyncio.sleep(0.05)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.gather(*(f.close() for f in followers), return_exceptions=True)
    for f in followers:
        f._ws = None
    pool.out.put(followers)
