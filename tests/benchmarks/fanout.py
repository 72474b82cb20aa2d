"""Fan-out benchmark: one observer, many sockets on one ASGI server, steady writes.

    python -m tests.benchmarks.fanout --sockets 200 --rate 10 --seconds 10
    REACTIVE_TEST_MAX_SOCKETS_PER_ADDRESS=10000 \
        python -m tests.benchmarks.fanout --sockets 5000 --rate 1 --client-processes 4

Prints frames expected and delivered, version gaps seen by clients, the
commit-to-socket latency percentiles, the subscribe round trip (socket
subscribe to answer) and the ASGI server's memory per idle socket and per
subscription. ``--client-processes`` spreads the clients over that many
processes, so the load client is not the bottleneck. Real processes throughout: a private
Redis, Celery workers and a uvicorn server, all started and stopped here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.project.settings")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def follow(port: int, url: str, results: dict, ready: asyncio.Event, total: int) -> None:
    """One socket; a refused or failed one is counted, so the others' barriers still open."""
    passed: set[str] = set()
    try:
        await _follow(port, url, results, ready, total, passed)
    except Exception as exc:
        results["failed"].append(f"{type(exc).__name__}: {exc}"[:200])
        for barrier in {"connected", "subscribed"} - passed:
            results[barrier] = results.get(barrier, 0) + 1
        if results["subscribed"] >= total:
            ready.set()


async def _follow(
    port: int, url: str, results: dict, ready: asyncio.Event, total: int, passed: set[str]
) -> None:
    from websockets.asyncio.client import connect

    async with connect(
        f"ws://127.0.0.1:{port}/ws/reactive/",
        additional_headers={"Origin": f"http://127.0.0.1:{port}"},
        max_size=None,
    ) as ws:
        results["connected"] = results.get("connected", 0) + 1
        passed.add("connected")
        await results["go"].wait()
        sent = time.perf_counter()
        await ws.send(json.dumps({"type": "subscribe", "id": 1, "url": url}))
        answer = json.loads(await ws.recv())
        if answer.get("type") != "subscribed":
            raise RuntimeError(f"subscribe refused: {answer}")
        results["subscribe_s"].append(time.perf_counter() - sent)
        version = answer["version"]
        results["subscribed"] += 1
        passed.add("subscribed")
        if results["subscribed"] == total:
            ready.set()
        while True:
            try:
                frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=5))
            except (asyncio.TimeoutError, TimeoutError):
                return
            if frame.get("type") != "diff":
                continue
            now = time.time()
            if frame["version"] != version + 1:
                results["gaps"] += 1
            version = frame["version"]
            results["frames"] += 1
            for entry in frame["added"]:
                results["latencies"].append(now - float(entry["item"]["name"]))


def prepare() -> None:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from tests.testapp.models import Item

    Item.objects.all().delete()


URL = "/api/items/?ordering=-id&limit_probe=bench"


async def clients(port: int, sockets: int, connected, go, subscribed, out) -> None:
    """One client process's share: connect, wait for ``go``, subscribe, follow until idle."""
    results: dict = {
        "subscribed": 0,
        "frames": 0,
        "gaps": 0,
        "latencies": [],
        "subscribe_s": [],
        "failed": [],
    }
    results["go"] = asyncio.Event()
    ready = asyncio.Event()
    tasks = [
        asyncio.create_task(follow(port, URL, results, ready, sockets)) for _ in range(sockets)
    ]
    while results.get("connected", 0) < sockets:
        await asyncio.sleep(0.05)
    connected.release()
    await asyncio.to_thread(go.wait)
    results["go"].set()
    await ready.wait()
    subscribed.release()
    await asyncio.gather(*tasks, return_exceptions=True)
    del results["go"]
    out.put(results)


def client_process(port: int, sockets: int, connected, go, subscribed, out) -> None:
    asyncio.run(clients(port, sockets, connected, go, subscribed, out))


def rss(pid: int) -> int:
    """Resident memory of one process (the single uvicorn process), bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


async def main(args: argparse.Namespace) -> dict:
    import multiprocessing

    from tests import processes
    from tests.testapp.models import Item

    port = processes.free_port()
    started = [processes.celery_worker(f"bench{i}") for i in range(args.workers)]
    server = processes.asgi_server(port)
    started.append(server)
    context = multiprocessing.get_context("spawn")
    connected, subscribed = context.Semaphore(0), context.Semaphore(0)
    go, out = context.Event(), context.Queue()
    shares = [args.sockets // args.client_processes] * args.client_processes
    shares[0] += args.sockets - sum(shares)
    children = [
        context.Process(target=client_process, args=(port, n, connected, go, subscribed, out))
        for n in shares
    ]
    try:
        memory_empty = rss(server.popen.pid)
        for child in children:
            child.start()
        for _ in children:
            await asyncio.to_thread(connected.acquire)
        memory_idle = rss(server.popen.pid)
        go.set()
        for _ in children:
            await asyncio.to_thread(subscribed.acquire)
        memory_subscribed = rss(server.popen.pid)
        writes = int(args.rate * args.seconds)
        for _ in range(writes):
            await asyncio.to_thread(Item.objects.create, name=repr(time.time()))
            await asyncio.sleep(1 / args.rate)
        parts = [await asyncio.to_thread(out.get) for _ in children]
        for child in children:
            child.join()
    finally:
        for child in children:
            if child.is_alive():
                child.terminate()
        for process in started:
            process.stop()
    results = {k: sum(part[k] for part in parts) for k in ("subscribed", "frames", "gaps")}
    latencies = [v for part in parts for v in part["latencies"]]
    subscribe_s = [v for part in parts for v in part["subscribe_s"]]
    failed = [v for part in parts for v in part["failed"]]
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
    prepare()
    print(json.dumps(asyncio.run(main(parser.parse_args())), indent=2))
