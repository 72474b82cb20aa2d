"""Fan-out benchmark: one observer, many sockets on one ASGI server, steady writes.

    python -m tests.benchmarks.fanout --sockets 200 --rate 10 --seconds 10
    python -m tests.benchmarks.fanout --sockets 5000 --rate 1 --client-processes 4

Prints frames expected and delivered, version gaps seen by clients, the
commit-to-socket latency percentiles, the subscribe round trip (socket
subscribe to answer) and the ASGI server's memory per idle socket and per
subscription. ``--client-processes`` spreads the clients over that many
processes, so the load client is not the bottleneck (``ClientProcesses``,
which ``compare_dcrf`` uses too). Items a client skipped in a version gap
are counted as coalesced, apart from the lost ones. The processes run with
``BENCHMARK_ENV`` (the library's heartbeat, not the fault tests'). Real
processes throughout: a private Redis, Celery workers and a uvicorn server,
all started and stopped here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.project.settings")

from tests.benchmarks.heap import freeze_heap  # noqa: E402  (shared with the suite's clients)

#: The test project's settings for a benchmark's processes (a value already in
#: the environment wins). Its own defaults are the fault tests': a heartbeat a
#: second and a 10 s TTL, so 1,000 sockets cost 1,000 heartbeats a second (half
#: the ASGI server's samples in a profile of 1,000 sockets) and expire (4408) as
#: soon as the loaded server falls 10 s behind. These are the library's defaults
#: instead; the address cap is lifted as all sockets share 127.0.0.1.
BENCHMARK_ENV = {
    "REACTIVE_TEST_HEARTBEAT": "30",
    "REACTIVE_TEST_SUBSCRIBER_TTL": "120",
    "REACTIVE_TEST_MAX_SOCKETS_PER_ADDRESS": "100000",
}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def follow(
    port: int, url: str, results: dict, ready: asyncio.Event, total: int, session=None
) -> None:
    """One socket; a refused or failed one is counted, so the others' barriers still open.

    ``session`` is the coroutine function that talks to the server (``_follow``'s
    signature): ``compare_dcrf`` passes DCRF's.
    """
    passed: set[str] = set()
    try:
        await (session or _follow)(port, url, results, ready, total, passed)
    except Exception as exc:
        results["failed"].append(f"{type(exc).__name__}: {exc}"[:200])
        for barrier in {"connected", "subscribed"} - passed:
            results[barrier] = results.get(barrier, 0) + 1
        if results["subscribed"] >= total:
            ready.set()


async def at_connected(results: dict, passed: set[str]) -> None:
    """A session's socket is open: count it, then wait until every client process may subscribe."""
    results["connected"] = results.get("connected", 0) + 1
    passed.add("connected")
    await results["go"].wait()


def at_subscribed(results: dict, ready: asyncio.Event, total: int, passed: set[str]) -> None:
    """A session holds its subscription: the writes start once every socket does."""
    results["subscribed"] += 1
    passed.add("subscribed")
    if results["subscribed"] == total:
        ready.set()


class Items:
    """One socket's tally of the rows it was told about, in id order.

    A diff after a version gap holds only the latest evaluation's rows: the ones in
    between were coalesced away by the server (its outbox, for a socket that is
    behind) and a real client would refetch them. Each gap is kept as the open
    interval of ids it hides, ``None`` for an end this socket cannot see (before
    its first row, after its last); ``coalesced()`` resolves them against the ids
    written, so a cell reports delivered, coalesced and lost apart.
    """

    def __init__(self, results: dict) -> None:
        self.results = results
        self.last: int | None = None
        self.gap_open = False

    def gap(self) -> None:
        """Called for a diff whose version skips some: rows from here on were hidden."""
        if not self.gap_open:
            self.gap_open, self.gap_from = True, self.last

    def rows(self, ids: list[int]) -> None:
        """Called with the ids a diff added; the first after a gap closes it."""
        if not ids:
            return
        if self.gap_open:
            self.results["gap_ids"].append((self.gap_from, min(ids)))
            self.gap_open = False
        self.last = max(ids) if self.last is None else max(self.last, *ids)

    def close(self) -> None:
        """Called when the socket is done: a gap still open runs to the last write."""
        if self.gap_open:
            self.results["gap_ids"].append((self.gap_from, None))
            self.gap_open = False


def coalesced(gaps: list[tuple[int | None, int | None]], first: int, last: int) -> int:
    """Written ids (``first``..``last``, consecutive: one writer) hidden by ``gaps``."""
    hidden = 0
    for low, high in gaps:
        low = first - 1 if low is None else max(low, first - 1)
        high = last + 1 if high is None else min(high, last + 1)
        hidden += max(0, high - low - 1)
    return hidden


#: Seconds without a frame, once the writes have started, after which a socket is done.
IDLE_S = 5.0


async def receive(ws, results: dict) -> str | None:
    """The socket's next frame; None once it has heard nothing for ``IDLE_S`` of writing.

    Silence before the writes start does not count: subscribing 1,000 sockets
    takes longer than ``IDLE_S``, and the first ones must not give up meanwhile.
    """
    while True:
        try:
            return await asyncio.wait_for(ws.recv(), timeout=IDLE_S)
        except (asyncio.TimeoutError, TimeoutError):
            since = results.get("writing_since")
            if since is not None and time.monotonic() - since >= IDLE_S:
                return None


async def _follow(
    port: int, url: str, results: dict, ready: asyncio.Event, total: int, passed: set[str]
) -> None:
    from websockets.asyncio.client import connect

    async with connect(
        f"ws://127.0.0.1:{port}/ws/reactive/",
        additional_headers={"Origin": f"http://127.0.0.1:{port}"},
        max_size=None,
    ) as ws:
        await at_connected(results, passed)
        sent = time.perf_counter()
        await ws.send(json.dumps({"type": "subscribe", "id": 1, "url": url}))
        answer = json.loads(await ws.recv())
        if answer.get("type") != "subscribed":
            raise RuntimeError(f"subscribe refused: {answer}")
        results["subscribe_s"].append(time.perf_counter() - sent)
        version = answer["version"]
        at_subscribed(results, ready, total, passed)
        items = Items(results)
        last_at, seen = time.time(), 0
        try:
            while True:
                text = await receive(ws, results)
                if text is None:
                    return
                frame = json.loads(text)
                if frame.get("type") != "diff":
                    other = results["other_frames"]
                    other[frame.get("type")] = other.get(frame.get("type"), 0) + 1
                    continue
                if frame["version"] <= version:
                    continue  # an older diff is one the answer already reflects
                now = time.time()
                if frame["version"] != version + 1:
                    results["gaps"] += 1
                    items.gap()
                version, last_at, seen = frame["version"], now, seen + len(frame["added"])
                results["frames"] += 1
                for entry in frame["added"]:
                    results["latencies"].append(now - float(entry["item"]["name"]))
                items.rows([entry["item"]["id"] for entry in frame["added"]])
        finally:
            items.close()
            results["last_frame_at"].append(last_at)
            results["socket_items"].append(seen)


def prepare() -> None:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from tests.testapp.models import Item

    Item.objects.all().delete()


URL = "/api/items/?ordering=-id&limit_probe=bench"


async def clients(port: int, sockets: int, barriers, out, session=None, progress=None, slot=0):
    """One client process's share: connect, wait for ``go``, subscribe, follow until idle.

    ``barriers`` are the parent's (connected, go, subscribed, writing).
    """
    connected, go, subscribed, writing = barriers
    results: dict = {
        "subscribed": 0,
        "frames": 0,
        "gaps": 0,
        "latencies": [],
        "subscribe_s": [],
        "failed": [],
        "gap_ids": [],
        "last_frame_at": [],  # per socket: when it last heard, to tell a client gone quiet
        "socket_items": [],
        "other_frames": {},  # frames that are not diffs, by type (errors, stops)
    }
    results["go"] = asyncio.Event()
    ready = asyncio.Event()
    tasks = [
        asyncio.create_task(follow(port, URL, results, ready, sockets, session))
        for _ in range(sockets)
    ]
    while results.get("connected", 0) < sockets:
        await asyncio.sleep(0.05)
    connected.release()
    await asyncio.to_thread(go.wait)
    results["go"].set()
    while not ready.is_set():
        if progress is not None:  # what the parent reports if the barrier never opens
            progress[slot] = results["subscribed"]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ready.wait(), timeout=0.5)
    freeze_heap()
    subscribed.release()
    await asyncio.to_thread(writing.wait)
    results["writing_since"] = time.monotonic()
    await asyncio.gather(*tasks, return_exceptions=True)
    del results["go"], results["writing_since"]
    # The parent cannot read this process's CPU once it has exited.
    results["pid"], results["cpu_s"] = os.getpid(), time.process_time()
    out.put(results)


def client_process(port: int, sockets: int, barriers, out, session=None, progress=None, slot=0):
    asyncio.run(clients(port, sockets, barriers, out, session, progress, slot))


class ClientProcesses:
    """``sockets`` load clients spread over ``count`` spawned processes.

    One process's event loop tops out at a few hundred sockets taking frames at
    once; past that it is the client that falls behind, not the server. The
    sockets all connect, then all subscribe, then the caller writes; ``session``
    must be a module-level coroutine function (the spawned processes import it).
    """

    def __init__(self, port: int, sockets: int, count: int, session=None) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self.connected, self.subscribed = context.Semaphore(0), context.Semaphore(0)
        self.go, self.writing, self.out = context.Event(), context.Event(), context.Queue()
        barriers = (self.connected, self.go, self.subscribed, self.writing)
        self.progress = context.Array("i", count)
        shares = [sockets // count] * count
        shares[0] += sockets - sum(shares)
        self.children = [
            context.Process(
                target=client_process,
                args=(port, n, barriers, self.out, session, self.progress, slot),
            )
            for slot, n in enumerate(shares)
        ]

    def start(self) -> None:
        for child in self.children:
            child.start()

    @property
    def pids(self) -> list[int]:
        return [child.pid for child in self.children]

    async def _all(self, semaphore, deadline: float | None) -> bool:
        for _ in self.children:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not await asyncio.to_thread(semaphore.acquire, True, timeout):
                return False
        return True

    async def all_connected(self, deadline: float | None = None) -> bool:
        """Whether every socket opened (or failed) before ``deadline`` (``time.monotonic()``)."""
        return await self._all(self.connected, deadline)

    async def all_subscribed(self, deadline: float | None = None) -> bool:
        """Let the sockets subscribe; whether all of them did (or failed) before ``deadline``."""
        self.go.set()
        return await self._all(self.subscribed, deadline)

    def writes_start(self) -> None:
        """From now on a socket that hears nothing for ``IDLE_S`` is done."""
        self.writing.set()

    def subscribed_so_far(self) -> int:
        return sum(self.progress)

    async def results(self) -> list[dict]:
        """Each process's results, once its sockets have gone idle."""
        parts = [await asyncio.to_thread(self.out.get) for _ in self.children]
        for child in self.children:
            child.join()
        return parts

    def stop(self) -> None:
        for child in self.children:
            if child.is_alive():
                child.terminate()
                child.join(10)


def rss(pid: int) -> int:
    """Resident memory of one process (the single uvicorn process), bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


async def main(args: argparse.Namespace) -> dict:
    from tests import processes
    from tests.testapp.models import Item

    port = processes.free_port()
    started = [processes.celery_worker(f"bench{i}") for i in range(args.workers)]
    server = processes.asgi_server(port)
    started.append(server)
    pool = ClientProcesses(port, args.sockets, args.client_processes)
    ids: list[int] = []
    try:
        memory_empty = rss(server.popen.pid)
        pool.start()
        await pool.all_connected()
        memory_idle = rss(server.popen.pid)
        await pool.all_subscribed()
        memory_subscribed = rss(server.popen.pid)
        pool.writes_start()
        writes = int(args.rate * args.seconds)
        for _ in range(writes):
            item = await asyncio.to_thread(Item.objects.create, name=repr(time.time()))
            ids.append(item.pk)
            await asyncio.sleep(1 / args.rate)
        parts = await pool.results()
    finally:
        pool.stop()
        for process in started:
            process.stop()
    results = {k: sum(part[k] for part in parts) for k in ("subscribed", "frames", "gaps")}
    latencies = [v for part in parts for v in part["latencies"]]
    subscribe_s = [v for part in parts for v in part["subscribe_s"]]
    failed = [v for part in parts for v in part["failed"]]
    gaps = [v for part in parts for v in part["gap_ids"]]
    hidden = coalesced(gaps, ids[0], ids[-1]) if ids else 0
    return {
        "sockets": args.sockets,
        "sockets_failed": len(failed),
        "first_failures": sorted(set(failed))[:3],
        "client_processes": args.client_processes,
        "subscribe_ms_p50": round(percentile(subscribe_s, 0.5) * 1000, 1),
        "subscribe_ms_p99": round(percentile(subscribe_s, 0.99) * 1000, 1),
        "asgi_bytes_per_idle_socket": (memory_idle - memory_empty) // max(1, args.sockets),
        "asgi_bytes_per_subscription": (memory_subscribed - memory_idle) // max(1, args.sockets),
        "writes": writes,
        "diff_frames_delivered": results["frames"],
        "version_gaps_seen": results["gaps"],
        "items_expected": writes * args.sockets,
        "items_delivered": len(latencies),
        "items_coalesced": hidden,  # skipped in a version gap: a real client refetches them
        "items_lost": writes * args.sockets - len(latencies) - hidden,
        "delivered_ratio": round(len(latencies) / (writes * args.sockets), 4),
        "latency_ms_p50": round(percentile(latencies, 0.5) * 1000, 1),
        "latency_ms_p99": round(percentile(latencies, 0.99) * 1000, 1),
        "latency_ms_mean": round(statistics.fmean(latencies) * 1000, 1) if latencies else None,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=200)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--client-processes", type=int, default=1)
    for name, value in BENCHMARK_ENV.items():
        os.environ.setdefault(name, value)  # before the settings are read
    prepare()
    print(json.dumps(asyncio.run(main(parser.parse_args())), indent=2))
