"""reactive_celery vs djangochannelsrestframework on one workload, real processes on loopback.

    python -m tests.benchmarks.compare_dcrf --sockets 200 --rate 10 --seconds 10
    python -m tests.benchmarks.compare_dcrf --sockets 50 200 --rate 10 50
    python -m tests.benchmarks.compare_dcrf --cells 50x10 200x10 200x50 1000x10   # issue 11
    python -m tests.benchmarks.compare_dcrf --cells 50x10 200x10 --runs 3   # + medians

N WebSocket clients follow the list of ``Item`` rows while the benchmark
writes R rows a second for S seconds; each row's name is the ``time.time()``
of its write. Prints one JSON object per (backend, sockets, rate): the items
expected, delivered, coalesced (reactive only: skipped in a version gap, which
a real client refetches; this one does not) and lost (neither), the
commit-to-receive latency, and CPU seconds of the server-side process trees
(uvicorn, Celery workers, Redis) plus the writing process's CPU while it
writes and sends (signal receivers, reactive_celery's sender thread) over the
write phase, and of each load-client process.

- ``reactive``: the batched protocol exactly as ``fanout.py`` (uvicorn and
  Celery workers re-evaluating ``/api/items/?ordering=-id``, diffs pushed).
- ``dcrf``: ``tests.benchmarks.dcrf_app`` under uvicorn, a ``model_observer``
  of Item on channels_redis (same private Redis); per-instance events are
  serialised and group-sent from the writing process, the client keeps the list.

Each run is a child process of its own (fresh Redis, SQLite file, signal
receivers), so the two libraries never share a writer. The runs use the test
project with ``BENCHMARK_ENV`` (the library's heartbeat and TTL, not the fault
tests' 1 s and 10 s; no per-address socket cap); a value set in the
environment wins. The sockets are spread over ``--client-processes`` load
clients (one per 250 sockets unless told): one process reading 1,000 sockets
at 10 diffs a second spends a core on it, and its lag then shows as latency.
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
import urllib.request

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.project.settings")

from tests.benchmarks.fanout import (  # noqa: E402  (one copy of each)
    BENCHMARK_ENV,
    IDLE_S,
    ClientProcesses,
    at_connected,
    at_subscribed,
    coalesced,
    percentile,
    prepare,
    receive,
)

CLK_TCK = os.sysconf("SC_CLK_TCK")

#: Sockets one load-client process follows unless ``--client-processes`` says otherwise.
SOCKETS_PER_CLIENT_PROCESS = 250


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


async def follow_dcrf(
    port: int, url: str, results: dict, ready: asyncio.Event, total: int, passed: set[str]
) -> None:
    """One DCRF socket (``fanout._follow``'s signature; ``url`` is unused): per-row events."""
    from websockets.asyncio.client import connect

    async with connect(
        f"ws://127.0.0.1:{port}/ws/dcrf/items/",
        additional_headers={"Origin": f"http://127.0.0.1:{port}"},
        max_size=None,
    ) as ws:
        await at_connected(results, passed)
        sent = time.perf_counter()
        await ws.send(json.dumps({"action": "subscribe_to_item_activity", "request_id": 1}))
        answer = json.loads(await ws.recv())
        if answer.get("response_status") != 201:
            raise RuntimeError(f"subscribe refused: {answer}")
        results["subscribe_s"].append(time.perf_counter() - sent)
        at_subscribed(results, ready, total, passed)
        rows: dict[int, dict] = {}  # the list the client must maintain itself
        last_at, seen = time.time(), 0
        try:
            while True:
                text = await receive(ws, results)
                if text is None:
                    return
                message = json.loads(text)
                last_at = now = time.time()
                results["frames"] += 1
                if message.get("action") == "delete":
                    rows.pop(message["pk"], None)
                    continue
                rows[message["pk"]] = message["data"]
                if message.get("action") == "create":
                    seen += 1
                    results["latencies"].append(now - float(message["data"]["name"]))
        finally:
            results["last_frame_at"].append(last_at)
            results["socket_items"].append(seen)


def scrape(port: int) -> dict[str, float] | None:
    """The ASGI server's own counts: frames it sent, diffs its outboxes dropped."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/internal/metrics", timeout=10) as r:
            text = r.read().decode()
    except OSError:
        return None
    counts = {"frames_sent": 0.0, "diffs_coalesced": 0.0}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name.startswith("reactive_celery_frames_sent_total"):
            counts["frames_sent"] += float(value)
        elif name == "reactive_celery_frames_coalesced_total":
            counts["diffs_coalesced"] += float(value)
    return counts


async def run(args: argparse.Namespace) -> dict:
    from reactive_celery.testing import redis_server
    from tests import processes
    from tests.testapp.models import Item

    port = processes.free_port()
    started: list[processes.Process] = []
    if args.backend == "reactive":
        session = None  # fanout's own client
        started += [processes.celery_worker(f"bench{i}") for i in range(args.workers)]
        started.append(processes.asgi_server(port))
    else:
        from reactive_celery import signals

        signals.disconnect()  # this writer only runs DCRF's receivers
        import tests.benchmarks.dcrf_app  # noqa: F401  (connects the model observer)

        session = follow_dcrf
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
    count = args.client_processes or -(-args.sockets // SOCKETS_PER_CLIENT_PROCESS)
    pool = ClientProcesses(port, args.sockets, count, session)

    writer_cpu = 0.0
    ids: list[int] = []

    flush = None
    if args.backend == "reactive":
        from reactive_celery import signals

        flush = signals.flush

    def write() -> None:
        nonlocal writer_cpu
        # The process's CPU, not the thread's: a commit outside a request hands its
        # tasks to the sender thread, whose work is the write's cost too.
        before = time.process_time()
        ids.append(Item.objects.create(name=repr(time.time())).pk)
        if flush is not None:
            flush()
        writer_cpu += time.process_time() - before

    try:
        pool.start()
        deadline = time.monotonic() + 120
        if not await pool.all_connected(deadline):
            failed = f"not all {args.sockets} clients connected within 120 s"
            return {"backend": args.backend, "sockets": args.sockets, "error": failed}
        go = time.monotonic()
        if not await pool.all_subscribed(deadline):
            failed = f"{pool.subscribed_so_far()} of {args.sockets} clients subscribed within 120 s"
            return {"backend": args.backend, "sockets": args.sockets, "error": failed}
        subscribing = time.monotonic() - go
        cpu_server0, cpu_redis0, wall0 = tree_cpu(server_pids), tree_cpu(redis_pids), time.time()
        cpu_here0 = time.process_time()
        each0 = {p.name: tree_cpu([p.popen.pid]) for p in started}
        clients0 = {pid: tree_cpu([pid]) for pid in pool.pids}
        writes = int(args.rate * args.seconds)
        pool.writes_start()
        for _ in range(writes):
            last_write = time.time()
            await asyncio.to_thread(write)
            await asyncio.sleep(1 / args.rate)
        parts = await pool.results()  # each process returns after 5 s without a frame
        clients = [part["cpu_s"] - clients0[part["pid"]] for part in parts]
        cpu_server = tree_cpu(server_pids) - cpu_server0
        cpu_redis = tree_cpu(redis_pids) - cpu_redis0
        wall = time.time() - wall0
        cpu_here = time.process_time() - cpu_here0 - writer_cpu
        each = {p.name: round(tree_cpu([p.popen.pid]) - each0[p.name], 2) for p in started}
        server_counts = scrape(port) if args.backend == "reactive" else None
    finally:
        pool.stop()
        for process in started:
            process.stop()
    latencies = [v for part in parts for v in part["latencies"]]
    failed = [v for part in parts for v in part["failed"]]
    gaps = sum(part["gaps"] for part in parts)
    gap_ids = [g for part in parts for g in part["gap_ids"]]
    subscribe_s = [v for part in parts for v in part["subscribe_s"]]
    hidden = coalesced(gap_ids, ids[0], ids[-1]) if ids else 0
    expected = writes * args.sockets
    reactive = args.backend == "reactive"
    per_socket = sorted(v for part in parts for v in part["socket_items"])
    quiet = sum(at + IDLE_S < last_write for part in parts for at in part["last_frame_at"])
    others: dict[str, int] = {}
    for part in parts:
        for kind, n in part["other_frames"].items():
            others[kind] = others.get(kind, 0) + n
    return {
        "backend": args.backend,
        "sockets": args.sockets,
        "rate": args.rate,
        "seconds": args.seconds,
        "writes": writes,
        "client_processes": count,
        "subscribe_phase_s": round(subscribing, 1),  # every socket asks at once
        "subscribe_ms_p50": round(percentile(subscribe_s, 0.5) * 1000, 1),
        "subscribe_ms_p99": round(percentile(subscribe_s, 0.99) * 1000, 1),
        "sockets_failed": len(failed),
        "first_failures": sorted(set(failed))[:3],
        "frames_delivered": sum(part["frames"] for part in parts),
        "version_gaps_seen": gaps if reactive else None,
        "server_counts": server_counts,  # the ASGI server's metrics, for reactive
        "items_expected": expected,
        "items_delivered": len(latencies),
        # Hidden by a version gap: the server coalesced them and a real client refetches.
        "items_coalesced": hidden if reactive else None,
        "items_lost": expected - len(latencies) - hidden,  # neither sent nor owned up to
        "delivered_ratio": round(len(latencies) / expected, 4),
        # Items one socket got (min, median, max), and the sockets that heard nothing
        # for IDLE_S before the last write, so gave up while the writes went on.
        "items_per_socket": [per_socket[0], per_socket[len(per_socket) // 2], per_socket[-1]]
        if per_socket
        else None,
        "sockets_quiet_before_last_write": quiet,
        "other_frames": others,  # not diffs: errors, stops
        "latency_ms_p50": round(percentile(latencies, 0.5) * 1000, 1),
        "latency_ms_p99": round(percentile(latencies, 0.99) * 1000, 1),
        "latency_ms_mean": round(statistics.fmean(latencies) * 1000, 1) if latencies else None,
        "cpu_s_server": round(cpu_server, 2),  # uvicorn (+ Celery workers for reactive)
        "cpu_s_server_by_process": each,
        "cpu_s_redis": round(cpu_redis, 2),
        "cpu_s_writer": round(writer_cpu, 2),  # signal receivers and the sends they start
        "cpu_s_total": round(cpu_server + cpu_redis + writer_cpu, 2),
        # The load clients, not server cost: one near write-phase seconds means it fell behind.
        "cpu_s_clients_by_process": [round(c, 2) for c in clients],
        "cpu_s_benchmark_loop": round(cpu_here, 2),
        "write_phase_s": round(args.seconds, 1),
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
    parser.add_argument(
        "--client-processes",
        type=int,
        default=0,
        help=f"load-client processes (default: one per {SOCKETS_PER_CLIENT_PROCESS} sockets)",
    )
    parser.add_argument("--backend", choices=["both", "reactive", "dcrf"], default="both")
    parser.add_argument(
        "--cells",
        nargs="+",
        metavar="SOCKETSxRATE",
        type=cell,
        help="run these (sockets, writes/s) pairs instead of --sockets x --rate",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=1,
        help="runs of every cell (the sides alternate who goes first); then one median line each",
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
    env = {**BENCHMARK_ENV, **env}
    cells = args.cells or [(s, r) for s in args.sockets for r in args.rate]
    results: dict[tuple[str, int, float], list[dict]] = {}
    for run_index in range(args.runs):
        for sockets, rate in cells:
            # Alternate who goes first, so a slow drift of the machine hits both sides.
            for backend in backends if run_index % 2 == 0 else backends[::-1]:
                result = _run_child(backend, sockets, rate, args, env)
                print(json.dumps({**result, "run": run_index + 1}), flush=True)
                if "error" not in result:
                    results.setdefault((backend, sockets, rate), []).append(result)
    if args.runs > 1:
        for (backend, sockets, rate), runs in results.items():
            print(json.dumps(_medians(backend, sockets, rate, runs)), flush=True)


#: The figures ``--runs`` reports the median of, beside how many runs it had.
MEDIAN_FIGURES = (
    "latency_ms_p50",
    "latency_ms_p99",
    "items_delivered",
    "items_expected",
    "items_lost",
    "cpu_s_server",
    "cpu_s_total",
    "subscribe_phase_s",
    "subscribe_ms_p50",
    "subscribe_ms_p99",
)


def _medians(backend: str, sockets: int, rate: float, runs: list[dict]) -> dict:
    medians = {
        name: statistics.median(r[name] for r in runs)
        for name in MEDIAN_FIGURES
        if all(isinstance(r.get(name), (int, float)) for r in runs)
    }
    return {"backend": backend, "sockets": sockets, "rate": rate, "median_of": len(runs), **medians}


def _run_child(backend: str, sockets: int, rate: float, args, env: dict[str, str]) -> dict:
    child = [sys.executable, "-m", "tests.benchmarks.compare_dcrf", "--child"]
    child += ["--backend", backend, "--sockets", str(sockets), "--rate", str(rate)]
    child += ["--seconds", str(args.seconds), "--workers", str(args.workers)]
    child += ["--client-processes", str(args.client_processes)]
    with subprocess.Popen(child, env=env, stdout=subprocess.PIPE, text=True) as proc:
        try:
            stdout, _ = proc.communicate()
        except BaseException:
            proc.terminate()
            proc.wait(30)
            raise
    lines = stdout.strip().splitlines()
    if proc.returncode or not lines:
        return {
            "backend": backend,
            "sockets": sockets,
            "rate": rate,
            "error": f"exit {proc.returncode}",
        }
    return dict(json.loads(lines[-1]))


if __name__ == "__main__":
    main()
