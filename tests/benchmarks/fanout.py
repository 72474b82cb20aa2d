"""Fan-out benchmark: one observer, many sockets on one ASGI server, steady writes.

    python -m tests.benchmarks.fanout --sockets 200 --rate 10 --seconds 10

Prints frames expected and delivered, version gaps seen by clients, and the
commit-to-socket latency percentiles. Real processes throughout: a private
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
    from websockets.asyncio.client import connect

    async with connect(
        f"ws://127.0.0.1:{port}/ws/reactive/",
        additional_headers={"Origin": f"http://127.0.0.1:{port}"},
        max_size=None,
    ) as ws:
        await ws.send(json.dumps({"type": "subscribe", "id": 1, "url": url}))
        answer = json.loads(await ws.recv())
        version = answer["version"]
        results["subscribed"] += 1
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


async def main(args: argparse.Namespace) -> dict:
    from tests import processes
    from tests.testapp.models import Item

    port = processes.free_port()
    started = [processes.celery_worker(f"bench{i}") for i in range(args.workers)]
    started.append(processes.asgi_server(port))
    try:
        results = {"subscribed": 0, "frames": 0, "gaps": 0, "latencies": []}
        ready = asyncio.Event()
        url = "/api/items/?ordering=-id&limit_probe=bench"
        tasks = [
            asyncio.create_task(follow(port, url, results, ready, args.sockets))
            for _ in range(args.sockets)
        ]
        await asyncio.wait_for(ready.wait(), timeout=120)
        writes = int(args.rate * args.seconds)
        for _ in range(writes):
            await asyncio.to_thread(Item.objects.create, name=repr(time.time()))
            await asyncio.sleep(1 / args.rate)
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for process in started:
            process.stop()
    latencies = results.pop("latencies")
    return {
        "sockets": args.sockets,
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
    prepare()
    print(json.dumps(asyncio.run(main(parser.parse_args())), indent=2))
