"""The suite's scenarios, each against a fresh deployment (tests/benchmarks/deployment.py).

| id | observers x sockets | load |
| --- | --- | --- |
| a | 10 (one per group) x 10 | 200 PATCHes at 20/s |
| b | 1 x 200 | 100 PATCHes at 10/s |
| c | 100 (one per group) x 1 | 500 PATCHes at 50/s |
| g | 1 x 1,000 | 200 PATCHes at 10/s |
| h | 1 x 5,000 | 30 PATCHes at 1/s |
| i | 1,000 (one per group) x 1 | 1,000 PATCHes at 20/s |
| e | 20 (one per group) x 1 | one transaction of 1,000 saves over 10 of the groups |
| f | 0 or 1 | N autocommitted ``save()`` calls timed in-process, app installed or not |

Each returns one JSON-ready dict; keys starting with ``_`` (raw latencies)
are for the plot and left out of the JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import httpx
import redis.asyncio as aioredis

from .deployment import Deployment
from .load import Follower, FollowerProcesses, Writer, follow_all, percentile

__all__ = ["WRITE_SCENARIOS", "WriteScenario", "run_scenario"]

# After the last write, wait this long without a new push before calling the rest lost.
QUIET_S = 3.0
DRAIN_LIMIT_S = 60.0


@dataclass(frozen=True)
class WriteScenario:
    title: str
    groups: int  # one observer per group
    rows: int  # rows per group
    sockets: int  # sockets per observer
    writes: int
    rate: float

    def scaled(self, scale: float) -> WriteScenario:
        """Fewer sockets and writes (same rate and observers) for a quick development run."""
        if scale == 1:
            return self
        return WriteScenario(
            self.title,
            self.groups,
            self.rows,
            max(1, round(self.sockets * scale)),
            max(self.groups, round(self.writes * scale)),
            self.rate,
        )


WRITE_SCENARIOS = {
    "a": WriteScenario("10 observers x 10 sockets, 200 writes at 20/s", 10, 10, 10, 200, 20),
    "b": WriteScenario("1 observer x 200 sockets, 100 writes at 10/s", 1, 20, 200, 100, 10),
    "c": WriteScenario("100 observers x 1 socket, 500 writes at 50/s", 100, 5, 1, 500, 50),
    # Fan-out (issue 11): many sockets on one observer, one ASGI process.
    "g": WriteScenario("1 observer x 1,000 sockets, 200 writes at 10/s", 1, 20, 1000, 200, 10),
    "h": WriteScenario("1 observer x 5,000 sockets, 30 writes at 1/s", 1, 20, 5000, 30, 1),
    "i": WriteScenario("1,000 observers x 1 socket, 1,000 writes at 20/s", 1000, 1, 1, 1000, 20),
}
TITLES = {
    **{k: v.title for k, v in WRITE_SCENARIOS.items()},
    "e": "one transaction of 1,000 saves, 10 of 20 observers affected",
    "f": "cost of a plain save(): app installed, 0 or 1 dependent observer, vs not installed",
}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _latency(values: list[float]) -> dict:
    return {f"p{q}": _ms(percentile(values, q / 100)) for q in (50, 90, 99)}


def _cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {role: round(after[role] - before.get(role, 0.0), 2) for role in sorted(after)}


async def _drain(expected: int, delivered) -> float:
    """Wait until ``delivered()`` reaches ``expected`` or pushes stop; return the end time."""
    deadline = time.monotonic() + DRAIN_LIMIT_S
    last_count, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = delivered()
        if count >= expected:
            break
        if count != last_count:
            last_count, last_change = count, time.monotonic()
        elif time.monotonic() - last_change > QUIET_S:
            break
        await asyncio.sleep(0.05)
    return time.time()


async def _stale(http: httpx.AsyncClient, followers: list[Follower]) -> int:
    """Followers whose list differs from a fresh GET of their URL (no ``observe``)."""
    fresh: dict[str, list] = {}
    for url in {f.url for f in followers}:
        body = (await http.get(url)).raise_for_status().json()
        fresh[url] = body["results"] if isinstance(body, dict) else body
    return sum(1 for f in followers if f.items != fresh[f.url])


async def _close(followers: list[Follower], tasks: list[asyncio.Task]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.gather(*(f.close() for f in followers), return_exceptions=True)


class BusyWatch:
    """When the deployment's Celery broker last held work, polled every ``POLL_S``.

    Work is a message in a queue (a Redis list) or in kombu's ``unacked`` hash
    that is due: reactive_celery's tasks acknowledge late, so a running
    evaluation or dispatch stays there until it is done. A message whose ``eta``
    is still ahead is a timer, not work: a contended evaluation leaves one retry
    for after the holder's lock would expire, in case the holder died.
    Black-box, so it means the same on any revision.
    """

    #: Coarse on purpose: each look reads every unacknowledged message (a worker
    #: prefetches dozens), and the watch must not take the CPU it measures.
    POLL_S = 0.1

    def __init__(self, redis_url: str) -> None:
        self.redis = aioredis.Redis.from_url(f"{redis_url.rstrip('/')}/1")
        self.last_busy = 0.0

    async def busy(self) -> bool:
        queues = [key async for key in self.redis.scan_iter(count=1000, _type="list")]
        pipe = self.redis.pipeline(transaction=False)
        for key in queues:
            pipe.llen(key)
        pipe.hvals("unacked")
        *lengths, taken = await pipe.execute()
        return any(lengths) or any(_due(raw) for raw in taken)

    async def run(self) -> None:
        while True:
            if await self.busy():
                self.last_busy = time.time()
            await asyncio.sleep(self.POLL_S)

    async def settle(self, since: float, limit_s: float = 30.0) -> float | None:
        """Seconds from ``since`` until the broker was last seen busy (0: idle throughout),
        once it has been idle for a while; None if it never settles within ``limit_s``."""
        deadline = time.time() + limit_s
        while time.time() < deadline:
            if await self.busy():
                self.last_busy = time.time()
            elif time.time() - max(self.last_busy, since) > 0.5:
                return max(0.0, self.last_busy - since)
            await asyncio.sleep(self.POLL_S)
        return None

    async def close(self) -> None:
        await self.redis.aclose()


def _due(raw: bytes) -> bool:
    """Whether an unacknowledged kombu message (``[message, exchange, routing key]``) is due."""
    if b'"eta": null' in raw:
        return True  # kombu's json.dumps spacing; anything else is parsed
    try:
        eta = json.loads(raw)[0]["headers"].get("eta")
    except (ValueError, KeyError, IndexError, TypeError):
        return True
    return eta is None or datetime.fromisoformat(eta) <= datetime.now(timezone.utc)


def _client_cpu() -> float:
    t = os.times()
    return t.user + t.system


async def _write_scenario(dep: Deployment, spec: WriteScenario, protocol: str) -> dict:
    dep.seed(spec.groups, spec.rows)
    base = f"http://127.0.0.1:{dep.port}"
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as http:
        urls = [f"/api/rows/?group={g}" for g in range(spec.groups)]
        pks_by_group = [
            [row["id"] for row in (await http.get(url)).raise_for_status().json()] for url in urls
        ]
        group_of = {pk: g for g, pks in enumerate(pks_by_group) for pk in pks}
        pool = FollowerProcesses(dep.port, [u for u in urls for _ in range(spec.sockets)], protocol)
        try:
            await pool.open()
            before = await asyncio.to_thread(dep.counters)
            cpu0, client0, t0 = dep.cpu_seconds(), _client_cpu() + pool.cpu_seconds(), time.time()
            # Write i goes to group i % G, so consecutive writes hit different observers.
            order = [
                pks_by_group[i % spec.groups][(i // spec.groups) % spec.rows]
                for i in range(spec.writes)
            ]
            writer = Writer(http)
            watch = BusyWatch(dep.env["BENCH_REDIS_URL"])
            watching = asyncio.create_task(watch.run())
            await writer.run(order, spec.rate)
            last_write = time.time()
            expected = spec.writes * spec.sockets
            end = await _drain(expected, pool.delivered)
            watching.cancel()
            idle_s = await watch.settle(since=last_write)
            await watch.close()
            cpu1, client1 = dep.cpu_seconds(), _client_cpu() + pool.cpu_seconds()
            after = await asyncio.to_thread(dep.counters)
            followers = await pool.finish()
            stale = await _stale(http, followers)
        finally:
            pool.close()
    by_group: dict[int, list[Follower]] = {}
    for f in followers:
        by_group.setdefault(int(f.url.rsplit("=", 1)[1]), []).append(f)
    latencies = [
        f.arrivals[(pk, stamp)] - stamp
        for pk, stamp in writer.sent
        for f in by_group[group_of[pk]]
        if (pk, stamp) in f.arrivals
    ]
    committed = [
        f.arrivals[(pk, stamp)] - f.saved[(pk, stamp)]
        for pk, stamp in writer.sent
        for f in by_group[group_of[pk]]
        if f.saved.get((pk, stamp))
    ]
    evaluations = _evaluations(before, after)
    return {
        "observers": spec.groups,
        "sockets": len(followers),
        "writes": spec.writes,
        "rate": spec.rate,
        "latency_ms": _latency(latencies),
        # From the server's clock just before the PATCH's save (its commit) to the frame.
        "commit_to_frame_ms": _latency(committed),
        "changes_expected": expected,
        "changes_delivered": len(latencies),
        "frames": sum(f.frames for f in followers),
        "version_gaps": sum(f.gaps for f in followers),
        "stale_clients": stale,
        "socket_errors": sum(len(f.errors) for f in followers),
        "subscribe_retries": sum(f.subscribe_retries for f in followers),
        # 20 subscriptions in flight at a time in all, as a page of clients arriving.
        "subscribe_ms": _latency([f.subscribe_s for f in followers if f.subscribe_s]),
        "write_failures": writer.failures,
        "patch_ms_p50": _ms(percentile(writer.round_trips, 0.5)),
        "evaluations": evaluations,
        "evaluations_per_write": None if evaluations is None else evaluations / spec.writes,
        # From the last PATCH's answer to the last moment the workers had work.
        "idle_after_last_write_ms": _ms(idle_s),
        "window_s": round(end - t0, 1),
        "cpu_s": {**_cpu_delta(cpu0, cpu1), "load-client": round(client1 - client0, 2)},
        "peak_rss_mb": dep.peak_rss_mb(),
        "_latencies": latencies,
    }


def _evaluations(before: dict, after: dict) -> int | None:
    if "evaluations" not in before or "evaluations" not in after:
        return None
    return int(after["evaluations"]) - int(before["evaluations"])


async def _transaction_scenario(dep: Deployment, protocol: str, saves: int = 1000) -> dict:
    groups, touched, rows = 20, 10, 100
    dep.seed(groups, rows)
    base = f"http://127.0.0.1:{dep.port}"
    async with httpx.AsyncClient(base_url=base, timeout=120) as http:
        urls = [f"/api/rows/?group={g}" for g in range(groups)]
        followers, tasks = await follow_all(dep.port, urls, protocol, http)
        try:
            before = await asyncio.to_thread(dep.counters)
            cpu0, client0, t0 = dep.cpu_seconds(), _client_cpu(), time.time()
            body = {"groups": list(range(touched)), "saves": saves}
            answer = (await http.post("/api/bulk/", json=body)).raise_for_status().json()
            expected = min(saves, touched * rows)
            # The saves walk the rows in id order: these groups are the ones they reach.
            affected = -(-expected // rows)
            hit = followers[:affected]

            # Every touched row now has a stamp; the seeded rows had 0.
            def delivered() -> int:
                return sum(1 for f in hit for (_, stamp) in f.arrivals if stamp)

            end = await _drain(expected, delivered)
            cpu1, client1 = dep.cpu_seconds(), _client_cpu()
            after = await asyncio.to_thread(dep.counters)
            stale = await _stale(http, followers)
        finally:
            await _close(followers, tasks)
    last_stamp = float(answer["last_stamp"])
    arrivals = [t for f in hit for (_, stamp), t in f.arrivals.items() if stamp]
    evaluations = _evaluations(before, after)
    return {
        "observers": groups,
        "observers_affected": affected,
        "saves": saves,
        "transaction_ms": _ms(float(answer["committed"]) - t0),
        "first_frame_ms": _ms(min(arrivals) - last_stamp) if arrivals else None,
        "last_frame_ms": _ms(max(arrivals) - last_stamp) if arrivals else None,
        "changes_expected": expected,
        "changes_delivered": len(arrivals),
        "frames": sum(f.frames for f in followers),
        "frames_to_unaffected": sum(f.frames for f in followers[affected:]),
        "stale_clients": stale,
        "socket_errors": sum(len(f.errors) for f in followers),
        "evaluations": evaluations,
        "evaluations_per_affected_observer": None
        if evaluations is None
        else evaluations / affected,
        "window_s": round(end - t0, 1),
        "cpu_s": {**_cpu_delta(cpu0, cpu1), "load-client": round(client1 - client0, 2)},
        "peak_rss_mb": dep.peak_rss_mb(),
        "_latencies": [t - last_stamp for t in arrivals],
    }


def _ratio(value: float | None, base: float | None) -> float | None:
    return round(value / base, 2) if value and base else None


async def _save_cost_scenario(dep: Deployment, protocol: str, saves: int) -> dict:
    dep.seed(2, 100)

    def timed(settings: str | None = None) -> dict:
        out = dep.manage("bench_saves", "--saves", str(saves), "--group", "0", settings=settings)
        return json.loads(out.strip().splitlines()[-1])

    plain = await asyncio.to_thread(timed, "benchproject.settings_plain")
    none = await asyncio.to_thread(timed)
    base = f"http://127.0.0.1:{dep.port}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        followers, tasks = await follow_all(dep.port, ["/api/rows/?group=0"], protocol, http)
        try:
            before = await asyncio.to_thread(dep.counters)
            one = await asyncio.to_thread(timed)
            after = await asyncio.to_thread(dep.counters)
        finally:
            await _close(followers, tasks)
    evaluations = _evaluations(before, after)
    return {
        "saves": plain["saves"],
        "us_per_save_not_installed": plain["us_per_save"],
        "us_per_save_no_observer": none["us_per_save"],
        "us_per_save_one_observer": one["us_per_save"],
        "ratio_no_observer": round(none["us_per_save"] / plain["us_per_save"], 2),
        "ratio_one_observer": round(one["us_per_save"] / plain["us_per_save"], 2),
        # The saving process's own CPU (its sender thread too), without the cores it
        # shares with the evaluations it causes.
        "cpu_us_per_save_not_installed": plain.get("cpu_us_per_save"),
        "cpu_us_per_save_no_observer": none.get("cpu_us_per_save"),
        "cpu_us_per_save_one_observer": one.get("cpu_us_per_save"),
        "cpu_ratio_no_observer": _ratio(none.get("cpu_us_per_save"), plain.get("cpu_us_per_save")),
        "cpu_ratio_one_observer": _ratio(one.get("cpu_us_per_save"), plain.get("cpu_us_per_save")),
        # Pushed while the timed loop ran: the one observer's evaluations and frames.
        "evaluations_one_observer": evaluations,
        "frames_one_observer": followers[0].frames,
        "peak_rss_mb": dep.peak_rss_mb(),
    }


def run_scenario(
    dep: Deployment, scenario: str, protocol: str = "seed", scale: float = 1.0, saves: int = 2000
) -> dict:
    """Run one scenario against a started deployment; return its figures."""
    if scenario in WRITE_SCENARIOS:
        spec = WRITE_SCENARIOS[scenario].scaled(scale)
        result = asyncio.run(_write_scenario(dep, spec, protocol))
    elif scenario == "e":
        result = asyncio.run(_transaction_scenario(dep, protocol, max(10, round(1000 * scale))))
    elif scenario == "f":
        result = asyncio.run(_save_cost_scenario(dep, protocol, max(100, round(saves * scale))))
    else:
        raise ValueError(f"unknown scenario {scenario!r}")
    return {"scenario": scenario, "title": TITLES[scenario], **result}
