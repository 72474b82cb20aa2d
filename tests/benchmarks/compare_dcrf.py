"""reactive_celery vs djangochannelsrestframework on one workload, real processes on loopback.

    python -m tests.benchmarks.compare_dcrf --sockets 200 --rate 10 --seconds 10
    python -m tests.benchmarks.compare_dcrf --sockets 50 200 --rate 10 50
    python -m tests.benchmarks.compare_dcrf --cells 50x10 200x10 200x50 1000x10   # issue 11

N WebSocket clients follow the list of ``Item`` rows while the benchmark
writes R rows a second for S seconds; each row's name is the ``time.time()``
of its write. Prints one JSON object per (backend, sockets, rate): the
fraction of expected notifications delivered, commit-to-receive latency, and
CPU seconds of the server-side process trees (uvicorn, Celery workers, Redis)
plus the writer thread's own CPU (signal receivers) over the write phase.

- ``reactive``: the batched protocol exactly as ``fanout.py`` (uvicorn and
  Celery workers re-evaluating ``/api/items/?ordering=-id``, diffs pushed).
- ``dcrf``: ``tests.benchmarks.dcrf_app`` under uvicorn, a ``model_observer``
  of Item on channels_redis (same private Redis); per-instance events are
  serialised and group-sent from the writing process, the client keeps the list.

Each run is a child process of its own (fresh Redis, SQLite file, signal
receivers), so the two libraries never share a writer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.project.settings")

from tests.benchmarks.fanout import percentile, prepare  # noqa: E402  (one copy of each)

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat(pid: str) -> tuple[int, float] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # fields[0] is state (field 3); ppid is field 4, utime 14, stime 15, cutime 16, cstime 17.
    return int(fields[1]), sum(int(x) for x in fields[11:15]) / CLK_TCK


def tree_cpu(roots: list[int]) -> float:
    """CPU seconds (user+system, incl. reaped children) of the processes under ``roots``."""
    stats = {int(p): s for p in os.listdir("/proc") if p.isdigit() and (s := _stat(p))}
    members, frontier = set(), [r for r in roots if r in stats]
    while frontier:
        pid = frontier.pop()
        if pid in members:
            continue
        members.add(pid)
        frontier.extend(c for c, (ppid, _) in stats.items() if ppid == pid)
    return sum(stats[p][1] for p in members)


def _ws_headers(port: int) -> dict:
    return {"Origin": f"http://127.0.0.1:{port}"}


async def follow_reactive(port: int, results: dict, ready: asyncio.Event, total: int) -> None:
    from websockets.asyncio.client import connect

    async with connect(
        f"ws://127.0.0.1:{port}/ws/reactive/", additional_headers=_ws_headers(port), max_size=None
    ) as ws:
        url = "/api/items/?ordering=-id&limit_probe=bench"
        await ws.send(json.dumps({"type": "subscribe", "id": 1, "url": url}))
        version = json.loads(await ws.recv())["version"]
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


async def follow_dcrf(port: int, results: dict, ready: asyncio.Event, total: int) -> None:
    from websockets.asyncio.client import connect

    async with connect(
        f"ws://127.0.0.1:{port}/ws/dcrf/items/", additional_headers=_ws_headers(port), max_size=None
    ) as ws:
        await ws.send(json.dumps({"action": "subscribe_to_item_activity", "request_id": 1}))
        answer = json.loads(await ws.recv())
        assert answer.get("response_status") == 201, answer
        results["subscribed"] += 1
        if results["subscribed"] == total:
            ready.set()
        rows: dict[int, dict] = {}  # the list the client must maintain itself
        while True:
            try:
                message = json.loads(await asyncio.wait_for(ws.recv(), timeout=5))
            except (asyncio.TimeoutError, TimeoutError):
                return
            now = time.time()
            results["frames"] += 1
            if message.get("action") == "delete":
                rows.pop(message["pk"], None)
                continue
            rows[message["pk"]] = message["data"]
            if message.get("action") == "create":
                results["latencies"].append(now - float(message["data"]["name"]))


async def run(args: argparse.Namespace) -> dict:
    from reactive_celery.testing import redis_server
    from tests import processes
    from tests.testapp.models import Item

    port = processes.free_port()
    started: list[processes.Process] = []
    if args.backend == "reactive":
        follow = follow_reactive
        started += [processes.celery_worker(f"bench{i}") for i in range(args.workers)]
        started.append(processes.asgi_server(port))
    else:
        from reactive_celery import signals

        signals.disconnect()  # this writer only runs DCRF's receivers
        import tests.benchmarks.dcrf_app  # noqa: F401  (connects the model observer)

        follow = follow_dcrf
        server = processes.Process(
            f"dcrf-asgi-{port}",
            [
                sys.executable,
                *("-m", "uvicorn", "tests.benchmarks.dcrf_app:application"),
                *("--host", "127.0.0.1", "--port", str(port), "--lifespan", "off"),
                *("--ws", "websockets", "--log-level", "warning"),
            ],
        ).start()
        started.append(server)
        server.wait_for_port(port)
    redis_pids = [p.pid for p in redis_server._started.values()]
    server_pids = [p.popen.pid for p in started]

    writer_cpu = 0.0

    def write() -> None:
        nonlocal writer_cpu
        before = time.thread_time()
        Item.objects.create(name=repr(time.time()))
        writer_cpu += time.thread_time() - before

    try:
        results = {"subscribed": 0, "frames": 0, "gaps": 0, "latencies": []}
        ready = asyncio.Event()
        tasks = [
            asyncio.create_task(follow(port, results, ready, args.sockets))
            for _ in range(args.sockets)
        ]
        try:
            await asyncio.wait_for(ready.wait(), timeout=120)
        except (asyncio.TimeoutError, TimeoutError):
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            failed = f"{results['subscribed']} of {args.sockets} clients subscribed within 120 s"
            return {"backend": args.backend, "sockets": args.sockets, "error": failed}
        cpu_server0, cpu_redis0, wall0 = tree_cpu(server_pids), tree_cpu(redis_pids), time.time()
        cpu_here0 = time.process_time()
        each0 = {p.name: tree_cpu([p.popen.pid]) for p in started}
        writes = int(args.rate * args.seconds)
        for _ in range(writes):
            await asyncio.to_thread(write)
            await asyncio.sleep(1 / args.rate)
        await asyncio.gather(*tasks, return_exceptions=True)
        cpu_server = tree_cpu(server_pids) - cpu_server0
        cpu_redis = tree_cpu(redis_pids) - cpu_redis0
        wall = time.time() - wall0
        cpu_clients = time.process_time() - cpu_here0 - writer_cpu
        each = {p.name: round(tree_cpu([p.popen.pid]) - each0[p.name], 2) for p in started}
    finally:
        for process in started:
            process.stop()
    latencies = results.pop("latencies")
    expected = writes * args.sockets
    return {
        "backend": args.backend,
        "sockets": args.sockets,
        "rate": args.rate,
        "seconds": args.seconds,
        "writes": writes,
        "frames_delivered": results["frames"],
        "version_gaps_seen": results["gaps"] if args.backend == "reactive" else None,
        "items_expected": expected,
        "items_delivered": len(latencies),
        "delivered_ratio": round(len(latencies) / expected, 4),
        "latency_ms_p50": round(percentile(latencies, 0.5) * 1000, 1),
        "latency_ms_p99": round(percentile(latencies, 0.99) * 1000, 1),
        "latency_ms_mean": round(statistics.fmean(latencies) * 1000, 1) if latencies else None,
        "cpu_s_server": round(cpu_server, 2),  # uvicorn (+ Celery workers for reactive)
        "cpu_s_server_by_process": each,
        "cpu_s_redis": round(cpu_redis, 2),
        "cpu_s_writer": round(writer_cpu, 2),  # signal receivers in the writing thread
        "cpu_s_total": round(cpu_server + cpu_redis + writer_cpu, 2),
        "cpu_s_clients": round(cpu_clients, 2),  # the N sockets, in this process: not server cost
        "window_s": round(wall, 1),  # write phase plus the clients' 5 s idle timeout
    }


def cell(text: str) -> tuple[int, float]:
    """``200x50``: 200 sockets at 50 writes a second."""
    sockets, _, rate = text.partition("x")
    try:
        return int(sockets), float(rate)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: use SOCKETSxRATE, e.g. 200x50") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, nargs="+", default=[200])
    parser.add_argument("--rate", type=float, nargs="+", default=[10.0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--backend", choices=["both", "reactive", "dcrf"], default="both")
    parser.add_argument(
        "--cells",
        nargs="+",
        metavar="SOCKETSxRATE",
        type=cell,
        help="run these (sockets, writes/s) pairs instead of --sockets x --rate",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        # SIGTERM from the parent unwinds run()'s finally, which stops the servers.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        args.sockets, args.rate = args.sockets[0], args.rate[0]
        if args.backend == "dcrf":
            os.environ["DJANGO_SETTINGS_MODULE"] = "tests.benchmarks.dcrf_settings"
        prepare()
        print(json.dumps(asyncio.run(run(args))), flush=True)
        return
    backends = ["reactive", "dcrf"] if args.backend == "both" else [args.backend]
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "REACTIVE_SQLITE_PATH")}
    cells = args.cells or [(s, r) for s in args.sockets for r in args.rate]
    for sockets, rate in cells:
        for backend in backends:
            child = [sys.executable, "-m", "tests.benchmarks.compare_dcrf", "--child"]
            child += ["--backend", backend, "--sockets", str(sockets), "--rate", str(rate)]
            child += ["--seconds", str(args.seconds), "--workers", str(args.workers)]
            with subprocess.Popen(child, env=env, stdout=subprocess.PIPE, text=True) as proc:
                try:
                    stdout, _ = proc.communicate()
                except BaseException:
                    proc.terminate()
                    proc.wait(30)
                    raise
            lines = stdout.strip().splitlines()
            if proc.returncode or not lines:
                failed = {"backend": backend, "sockets": sockets, "rate": rate}
                print(json.dumps({**failed, "error": f"exit {proc.returncode}"}), flush=True)
                continue
            print(lines[-1], flush=True)


if __name__ == "__main__":
    main()
