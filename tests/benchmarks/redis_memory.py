"""Redis memory per observer, per replay-log entry, per subscriber and per subscription.

    python -m tests.benchmarks.redis_memory --runs 3
    python -m tests.benchmarks.redis_memory --runs 1 --observers 20 --subscribers 50  # smoke

Fills a private Redis through the store's own calls (``observers.save``,
``subscribers.register``, ``subscribers.subscribe``) with results of 10, 100
and 1,000 rows of a small serializer (five fields, about 90 bytes of JSON a
row), and reads ``used_memory`` from ``INFO memory`` before and after each
step; ``MEMORY USAGE`` of sample keys says where the bytes go. Prints
the medians of the runs as a Markdown table (what docs/deployment.md quotes)
and, with ``--json``, writes them to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import uuid
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.project.settings")

#: Result sizes measured, in rows.
SIZES = (10, 100, 1000)


def row(i: int) -> dict[str, Any]:
    """One row as the test app's ItemSerializer gives it."""
    return {
        "id": i,
        "name": f"item number {i}",
        "position": i % 97,
        "enabled": i % 2 == 0,
        "group": f"group-{i % 13}",
    }


def used(r: Any) -> int:
    return int(r.info("memory")["used_memory"])


def observers_of(size: int, count: int, run: str) -> list[str]:
    from reactive_celery.store import observers
    from tests.specs import spec_for

    oids = []
    for n in range(count):
        oid = f"bench-{run}-{size}-{n}"
        spec = spec_for(query=[("position", str(n)), ("size", str(size))]).to_json()
        items = [row(i) for i in range(size)]
        observers.save(
            oid, spec=spec, items=items, meta={}, version=1, tables=["testapp_item"], creator=""
        )
        oids.append(oid)
    return oids


def fill_logs(oids: list[str], size: int, entries: int) -> None:
    """``entries`` one-row diffs per observer, as the replay buffer keeps them."""
    from reactive_celery.store import observers
    from tests.specs import spec_for

    items = [row(i) for i in range(size)]
    for oid in oids:
        spec = spec_for(query=[("position", oid), ("size", str(size))]).to_json()
        for version in range(2, entries + 2):
            changed = dict(items[version % size], name=f"renamed {version}")
            items[version % size] = changed
            diff = {
                "version": version,
                "primary_key": "id",
                "changes": [{"msg": "changed", "order": version % size, "item": changed}],
            }
            observers.save(
                oid,
                spec=spec,
                items=items,
                meta={},
                version=version,
                tables=["testapp_item"],
                creator="",
                diff=diff,
            )


def one_run(r: Any, count: int, subscribers_n: int, per_subscriber: int) -> dict[str, float]:
    from reactive_celery.conf import reactive_settings
    from reactive_celery.store import keys, subscribers

    run = uuid.uuid4().hex[:6]
    r.flushdb()
    figures: dict[str, float] = {}
    for size in SIZES:
        n = max(1, count // 10) if size >= 1000 else count
        before = used(r)
        oids = observers_of(size, n, run)
        figures[f"observer_{size}"] = (used(r) - before) / n
        figures[f"observer_{size}_key"] = float(r.memory_usage(keys.observer(oids[0])) or 0)
        entries = int(reactive_settings.REPLAY_BUFFER)
        before = used(r)
        fill_logs(oids[: max(1, n // 4)], size, entries)
        logged = max(1, n // 4)
        figures[f"log_{size}"] = (used(r) - before) / logged
    before = used(r)
    sids = [f"bench-sub-{run}-{n}" for n in range(subscribers_n)]
    for sid in sids:
        subscribers.register(sid, f"specific.bench!{sid}", "")
    figures["subscriber"] = (used(r) - before) / subscribers_n
    targets = observers_of(10, per_subscriber, run + "t")
    before = used(r)
    for sid in sids:
        for oid in targets:
            subscribers.subscribe(oid, sid)
    figures["subscription"] = (used(r) - before) / (subscribers_n * per_subscriber)
    return figures


def table(medians: dict[str, float], runs: int, buffer: int) -> str:
    lines = [
        f"Redis memory, medians of {runs} runs (`python -m tests.benchmarks.redis_memory"
        f" --runs {runs}`), `used_memory` deltas:",
        "",
        "| what | bytes each | `MEMORY USAGE` of its hash |",
        "| --- | ---: | ---: |",
    ]
    for size in SIZES:
        lines.append(
            f"| observer, {size:,}-row result | {medians[f'observer_{size}']:,.0f} "
            f"| {medians[f'observer_{size}_key']:,.0f} |"
        )
    for size in SIZES:
        lines.append(
            f"| replay log of {buffer} one-row diffs, {size:,}-row observer "
            f"| {medians[f'log_{size}']:,.0f} | |"
        )
    lines.append(f"| subscriber (a socket) | {medians['subscriber']:,.0f} | |")
    lines.append(
        f"| subscription (a socket following an observer) | {medians['subscription']:,.0f} | |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--observers", type=int, default=200, help="per result size (1/10 at 1,000 rows)"
    )
    parser.add_argument("--subscribers", type=int, default=2000)
    parser.add_argument(
        "--per-subscriber", type=int, default=5, help="subscriptions per subscriber"
    )
    parser.add_argument("--json", help="write the medians to this file")
    args = parser.parse_args(argv)

    import django

    django.setup()
    from reactive_celery.conf import reactive_settings
    from reactive_celery.store.connection import client

    r = client()
    runs = [
        one_run(r, args.observers, args.subscribers, args.per_subscriber) for _ in range(args.runs)
    ]
    r.flushdb()
    medians = {name: statistics.median(run[name] for run in runs) for name in runs[0]}
    print(table(medians, args.runs, int(reactive_settings.REPLAY_BUFFER)))
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"runs": args.runs, "medians": medians}, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
