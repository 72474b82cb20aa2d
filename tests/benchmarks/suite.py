"""The benchmark suite: scenarios a, b, c, e, f against a real deployment of a benchmark project.

    python -m tests.benchmarks.suite                                 # all scenarios, SQLite, 1 run
    python -m tests.benchmarks.suite --database postgres --runs 3 --out docs/performance
    python -m tests.benchmarks.suite --scenario a b --compare main    # also measure main, ratios
    nox -s bench -- suite --scenario c --runs 3

Each (run, scenario, revision) gets a fresh deployment (tests/benchmarks/deployment.py):
its own Redis, database, uvicorn, ``celery worker -P prefork -c 2`` (``--worker``
picks another layout) and ``celery beat``. The harness speaks HTTP and WebSocket to it and reads
counters through ``manage.py reactive_status --json``, so any revision can be
measured: ``--compare REF`` exports REF's ``reactive_celery/`` (``git
archive``) into a temp dir and runs a second deployment from there, while the
load client and the benchmark project stay the current ones; ``--compare-worker
LAYOUT`` instead runs the current revision twice, the second time with LAYOUT. Revisions
alternate their order from run to run so drift on a shared machine hits both.

Writes ``bench-<database>.json``, ``bench-<database>.md`` and
``bench-<database>-latency.png`` into ``--out``; see docs/performance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .deployment import ROOT, WORKER_LAYOUTS, Deployment, PostgresCluster
from .report import median_of, plot_latency, ratios, render_markdown
from .scenarios import run_scenario

SCENARIOS = ["a", "b", "c", "e", "f"]
#: The fan-out scenarios: heavier, so only run when named (``--scenario g h i``).
FANOUT_SCENARIOS = ["g", "h", "i"]


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def export_revision(ref: str, into: Path) -> tuple[Path, str]:
    """``reactive_celery/`` of ``ref`` under ``into``; returns the directory and the commit."""
    commit = _git("rev-parse", "--verify", f"{ref}^{{commit}}")
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", commit, "reactive_celery"],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into, commit


def machine() -> dict:
    model = platform.processor()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    versions = {}
    for dist in ("Django", "celery", "channels", "channels_redis", "uvicorn", "redis", "psycopg"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions[dist] = version(dist)
    redis_version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True)
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "packages": versions,
        "redis_server": redis_version.stdout.strip(),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scenario", nargs="+", choices=SCENARIOS + FANOUT_SCENARIOS, default=SCENARIOS
    )
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--compare", metavar="REF", help="also run REF's reactive_celery")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "artifacts" / "bench")
    parser.add_argument("--protocol", choices=["seed", "batched"], default="seed")
    parser.add_argument("--saves", type=int, default=2000, help="timed saves in scenario f")
    parser.add_argument(
        "--worker", choices=WORKER_LAYOUTS, default="prefork", help="the Celery worker layout"
    )
    parser.add_argument(
        "--compare-worker",
        metavar="LAYOUT",
        choices=WORKER_LAYOUTS,
        help="instead of another revision, run the current one with this worker layout too",
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="fewer sockets and writes, for a quick try"
    )
    args = parser.parse_args(argv)
    if args.compare and args.compare_worker:
        parser.error("--compare and --compare-worker each name the second side: pick one")
    host = machine()

    head = _git("rev-parse", "--short", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--", "reactive_celery"))
    commit = head + (" + uncommitted" if dirty else "")
    revisions = {"current": {"path": ROOT, "commit": commit, "worker": args.worker}}
    if args.compare_worker:
        revisions[f"worker {args.compare_worker}"] = {
            "path": ROOT,
            "commit": commit,
            "worker": args.compare_worker,
        }
    stack = contextlib.ExitStack()
    with stack:
        if args.compare:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-ref-")))
            path, commit = export_revision(args.compare, tmp)
            revisions[args.compare] = {"path": path, "commit": commit[:12], "worker": args.worker}
        pg = stack.enter_context(PostgresCluster()) if args.database == "postgres" else None
        labels = list(revisions)
        runs: dict[str, dict[str, list]] = {
            label: {s: [] for s in args.scenario} for label in labels
        }
        latencies: dict[str, dict[str, list]] = {label: {} for label in labels}
        for run in range(args.runs):
            for scenario in args.scenario:
                # Alternate the order so slow drift of a shared machine hits both revisions.
                order = labels if run % 2 == 0 else labels[::-1]
                for label in order:
                    rev = revisions[label]
                    started = time.monotonic()
                    try:
                        with Deployment(
                            rev["path"], args.database, pg, worker=rev["worker"]
                        ) as dep:
                            rev.setdefault("package", dep.package_path())
                            result = run_scenario(
                                dep, scenario, args.protocol, args.scale, args.saves
                            )
                    except Exception as exc:  # one failed run is reported, the rest go on
                        result = {"scenario": scenario, "error": repr(exc)[:2000]}
                    latencies[label].setdefault(scenario, []).extend(result.pop("_latencies", []))
                    runs[label][scenario].append(result)
                    took = time.monotonic() - started
                    brief = {k: result.get(k) for k in ("latency_ms", "error") if k in result}
                    print(f"run {run + 1} ({scenario}) {label}: {took:.0f}s {brief}", flush=True)
    medians = {label: {s: median_of(runs[label][s]) for s in args.scenario} for label in labels}
    for label in labels:
        for scenario in args.scenario:
            if medians[label][scenario]:
                medians[label][scenario]["scenario"] = scenario
    command = "python -m tests.benchmarks.suite " + shlex.join(
        argv if argv is not None else sys.argv[1:]
    )
    report = {
        "meta": {
            "command": command.strip(),
            "database": args.database,
            "postgres": pg.version if pg else None,
            "runs": args.runs,
            "protocol": args.protocol,
            "scale": args.scale,
            "scenarios": args.scenario,
            # Load averages before and after: the machine is shared, and they say how much.
            "machine": {**host, "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
            "revisions": {
                label: {k: str(v) for k, v in rev.items() if k != "path"}
                for label, rev in revisions.items()
            },
        },
        "results": medians,
        "ratios": {
            s: ratios(medians[labels[0]][s], medians[labels[1]][s])
            for s in args.scenario
            if len(labels) == 2 and medians[labels[0]][s] and medians[labels[1]][s]
        },
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"bench-{args.database}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    markdown = render_markdown(report)
    stem.with_suffix(".md").write_text(markdown + "\n")
    plot_latency(
        {label: {s: v for s, v in by.items() if s != "f"} for label, by in latencies.items()},
        f"write → frame latency, {args.database}, {args.runs} run(s) pooled",
        args.out / f"bench-{args.database}-latency.png",
    )
    print(markdown)
    return report


if __name__ == "__main__":
    main()
