"""Redis memory per observer, per subscriber and per subscription, through the real store API.

    python -m tests.benchmarks.redis_memory --observers 1000 --subscribers 10000 --runs 3
    python -m tests.benchmarks.redis_memory --smoke

Starts a private ``redis-server`` (an empty one per run, so nothing else's keys
count), writes observers holding lists of 10, 100 and 1,000 rows of a small
serializer with ``observers.save``, registers subscribers with
``subscribers.register`` and subscribes each to one observer, and reports the
``INFO memory`` ``used_memory`` delta divided by the count (the median of
``--runs``), beside ``MEMORY USAGE`` of one sample key. The replay log's cost is
``REPLAY_BUFFER`` one-row diffs kept for one observer. Figures go in
docs/deployment.md ("Redis sizing").
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.project.settings")

__all__ = ["ROW_COUNTS", "measure", "row"]

#: Result sizes measured: a short list, a page, a large unpaginated list.
ROW_COUNTS = (10, 100, 1000)
TABLE = "testapp_item"


def row(pk: int) -> dict[str, Any]:
    """One row of a small serializer (id, name, price, a timestamp, a flag, a foreign key)."""
    return {
        "id": pk,
        "name": f"Item number {pk}",
        "price": f"{pk % 1000}.99",
        "created": "2026-12-02T21:15:03.123456Z",
        "active": pk % 2 == 0,
        "owner": pk % 37,
    }


def _used(client: Any) -> int:
    _close_store_connections(client)
    return int(client.info("memory")["used_memory"])


def _close_store_connections(client: Any) -> None:
    # A connection's buffers count in used_memory, and the server shrinks a query
    # buffer grown by a large command on its own clock: left open, they would land
    # in whichever step is measured next. Only the measuring client stays.
    from reactive_celery.store import connection

    connection.client().close()
    connection.reset_client()
    deadline = time.monotonic() + 5
    while client.info("clients")["connected_clients"] > 1 and time.monotonic() < deadline:
        time.sleep(0.01)


def _delta(client: Any, work: Callable[[], None]) -> int:
    before = _used(client)
    work()
    return _used(client) - before


def _spec(index: int) -> str:
    # The shape of a real spec, so the hash's spec field costs what it does in production.
    return (
        '{"action":"list","kwargs":{},"path":"/api/items/","query":[["page","'
        + str(index)
        + '"]],"user":"42","viewset":"example_project.shop.views.ItemViewSet"}'
    )


def one_run(client: Any, observers: int, subscribers: int) -> dict[str, float]:
    """Bytes per unit in one empty Redis: observers by result size, sockets, subscriptions, logs."""
    from reactive_celery.conf import reactive_settings
    from reactive_celery.store import keys
    from reactive_celery.store import observers as store_observers
    from reactive_celery.store import subscribers as store_subscribers

    figures: dict[str, float] = {}
    for rows in ROW_COUNTS:
        items = [row(pk) for pk in range(rows)]
        batch = [f"obs-{rows}-{i:08d}" for i in range(observers)]

        def write(batch: list[str] = batch, items: list[dict[str, Any]] = items) -> None:
            for i, oid in enumerate(batch):
                store_observers.save(
                    oid,
                    spec=_spec(i),
                    items=items,
                    meta={"primary_key": "id"},
                    version=1,
                    tables=[TABLE],
                    creator="42",
                )

        figures[f"observer_{rows}_rows"] = _delta(client, write) / observers
        figures[f"observer_{rows}_rows_key"] = client.memory_usage(
            keys.observer(batch[0]), samples=0
        )

    sids = [f"sub-{i:010d}" for i in range(subscribers)]

    def register() -> None:
        # One user per socket: the per-user socket set is part of a subscriber's cost.
        for i, sid in enumerate(sids):
            store_subscribers.register(sid, f"specific.abc123!{sid}", f"user-{i}", "")

    figures["subscriber"] = _delta(client, register) / subscribers
    figures["subscriber_key"] = client.memory_usage(keys.subscriber(sids[0]), samples=0)

    followed = f"obs-{ROW_COUNTS[0]}-{0:08d}"

    def subscribe() -> None:
        for sid in sids:
            store_subscribers.subscribe(followed, sid)

    figures["subscription"] = _delta(client, subscribe) / subscribers

    buffer = int(reactive_settings.REPLAY_BUFFER)
    logged = [f"obs-{ROW_COUNTS[0]}-{i:08d}" for i in range(min(observers, 100))]
    small = [row(pk) for pk in range(ROW_COUNTS[0])]

    def fill_logs() -> None:
        for version in range(2, buffer + 2):
            changed = {**small[0], "name": f"Renamed {version}"}
            diff = {
                "version": version,
                "primary_key": "id",
                "changes": [{"msg": "changed", "order": 0, "item": changed}],
            }
            for i, oid in enumerate(logged):
                store_observers.save(
                    oid,
                    spec=_spec(i),
                    items=[changed, *small[1:]],
                    meta={"primary_key": "id"},
                    version=version,
                    tables=[TABLE],
                    creator="42",
                    diff=diff,
                )

    # Each result is rewritten with the same size: the delta is the logs'.
    figures["replay_log"] = _delta(client, fill_logs) / len(logged)
    figures["replay_log_key"] = client.memory_usage(keys.observer_log(logged[0]), samples=0)
    figures["replay_buffer"] = buffer
    return figures


def measure(
    fresh_redis: Callable[[], Any], *, observers: int, subscribers: int, runs: int
) -> dict[str, float]:
    """Median over ``runs`` of ``one_run``; ``fresh_redis()`` gives a client of an empty store."""
    results = []
    for _ in range(runs):
        client = fresh_redis()
        results.append(one_run(client, observers, subscribers))
    return {name: statistics.median(r[name] for r in results) for name in results[0]}


def report(figures: dict[str, float]) -> str:
    lines = [
        "what                              bytes (INFO used_memory delta)   MEMORY USAGE of one key"
    ]
    for rows in ROW_COUNTS:
        lines.append(
            f"observer, {rows:>5} rows              {figures[f'observer_{rows}_rows']:>12,.0f}"
            f"                 {figures[f'observer_{rows}_rows_key']:>10,.0f}"
        )
    lines.append(
        f"subscriber (socket)               {figures['subscriber']:>12,.0f}"
        f"                 {figures['subscriber_key']:>10,.0f}"
    )
    lines.append(f"subscription (observer x socket)  {figures['subscription']:>12,.0f}")
    lines.append(
        f"replay log, {figures['replay_buffer']:.0f} one-row diffs     "
        f"{figures['replay_log']:>12,.0f}"
        f"                 {figures['replay_log_key']:>10,.0f}"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--observers", type=int, default=1000, help="observers per result size")
    parser.add_argument("--subscribers", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny counts, one run")
    args = parser.parse_args()
    if args.smoke:
        args.observers, args.subscribers, args.runs = 20, 50, 1

    import django
    import redis
    from django.conf import settings
    from django.test.utils import override_settings

    from reactive_celery.testing import redis_server

    django.setup()
    servers: list[Any] = []

    def fresh_redis() -> Any:
        for process in servers:
            redis_server.stop_process(process)
        process, url = redis_server.start()
        servers[:] = [process]
        override = override_settings(
            REACTIVE_CELERY={
                **settings.REACTIVE_CELERY,
                "REDIS_URL": f"{url}/0",
            }
        )
        override.enable()
        return redis.Redis.from_url(f"{url}/0")

    try:
        figures = measure(
            fresh_redis, observers=args.observers, subscribers=args.subscribers, runs=args.runs
        )
    finally:
        for process in servers:
            redis_server.stop_process(process)
    print(
        f"{args.observers} observers per size, {args.subscribers} subscribers, "
        f"median of {args.runs} run(s); redis-server {redis_server.find_binary()}"
    )
    print(report(figures))


if __name__ == "__main__":
    main()
