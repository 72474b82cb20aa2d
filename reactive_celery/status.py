"""What ``manage.py reactive_status`` reports: counts from Redis and the broker.

Counting scans the keys under the prefix (SCAN, never KEYS), so it is safe on
a live Redis and costs time proportional to the number of reactive keys.
"""

from __future__ import annotations

import datetime
import json
from collections import Counter
from typing import Any

from celery import Celery, _state

from .conf import reactive_settings
from .invalidation import FIELD
from .store import keys, stats
from .store.connection import client

__all__ = ["collect", "count_state", "queue_depth", "render"]


def count_state() -> dict[str, Any]:
    """Observers, subscribers, subscriptions and polling observers, counted by SCAN."""
    r = client()
    observers = subscribers = 0
    subs_sets: list[str] = []
    hashes: list[str] = []
    for name in r.scan_iter(match=keys.pattern("obs", "*"), count=1000):
        if name == keys.observer_subscribers(keys.id_in(name)):
            subs_sets.append(name)
        elif name == keys.observer(keys.id_in(name)):
            observers += 1
            hashes.append(name)
    for name in r.scan_iter(match=keys.pattern("sub", "*"), count=1000):
        if name == keys.subscriber(keys.id_in(name)):
            subscribers += 1
    pipe = r.pipeline(transaction=False)
    for name in subs_sets:
        pipe.scard(name)
    subscriptions = sum(pipe.execute()) if subs_sets else 0
    return {
        "observers": observers,
        "subscribers": subscribers,
        "subscriptions": subscriptions,
        "polling": int(r.zcard(keys.poll())),
        "invalidation": _invalidation(hashes),
    }


def _invalidation(hashes: list[str]) -> dict[str, Any]:
    """How observers are invalidated: precise, table-level (by reason), not yet decided."""
    r = client()
    pipe = r.pipeline(transaction=False)
    for name in hashes:
        pipe.hget(name, FIELD)
    decided = [json.loads(raw) for raw in (pipe.execute() if hashes else []) if raw]
    reasons = Counter(found["reason"] for found in decided if found.get("reason"))
    return {
        "enabled": bool(reactive_settings.PRECISE_INVALIDATION),
        "precise": sum(1 for found in decided if not found.get("reason")),
        "table_level": dict(sorted(reasons.items())),
        "undecided": len(hashes) - len(decided),
        "skipped": int(r.get(keys.stats_skipped()) or 0),
        "dispatches": int(r.get(keys.stats_dispatches()) or 0),
        "probe_queries": int(r.get(keys.stats_probes()) or 0),
    }


def _celery_app() -> Celery:
    # The current app is the project's; other apps may exist beside it (tests, tools).
    current = _state.get_current_app()
    if current.main != "default":
        return current
    apps = [app for app in _state._get_active_apps() if app.main != "default"]  # type: ignore[attr-defined]
    return apps[0] if apps else current


def queue_depth() -> dict[str, Any]:
    """Messages waiting in the broker queue of ``evaluate`` tasks; depth None if unknown."""
    app = _celery_app()
    name = reactive_settings.QUEUE or app.conf.task_default_queue
    try:
        with app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=2)
            channel = conn.default_channel
            try:
                depth = channel.queue_declare(queue=name, passive=True).message_count  # type: ignore[attr-defined]  # kombu-stubs: StdChannel
            except conn.channel_errors:
                depth = 0  # the broker has no such queue: nothing waits in it
    except Exception:
        depth = None
    return {"name": name, "depth": depth}


def collect() -> dict[str, Any]:
    """Everything ``reactive_status`` shows, JSON-ready."""
    summary = stats.summary()
    return {
        "prefix": reactive_settings.KEY_PREFIX,
        **count_state(),
        "queue": queue_depth(),
        "evaluations": summary["evaluations"],
        "evaluation_ms": {
            "samples": summary["samples"],
            "p50": summary["p50_ms"],
            "p99": summary["p99_ms"],
        },
        "errors": stats.last_errors(),
    }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def render(data: dict[str, Any]) -> str:
    """The human table of ``collect()``'s data."""
    queue = data["queue"]
    depth = "unknown" if queue["depth"] is None else str(queue["depth"])
    timing = data["evaluation_ms"]
    rows = [
        ("observers", str(data["observers"])),
        ("subscribers", str(data["subscribers"])),
        ("subscriptions", str(data["subscriptions"])),
        ("polling observers", str(data["polling"])),
        (f"queue {queue['name']!r}", depth),
        ("evaluations", str(data["evaluations"])),
        ("evaluation p50", _ms(timing["p50"])),
        ("evaluation p99", f"{_ms(timing['p99'])} (last {timing['samples']})"),
    ]
    width = max(len(label) for label, _ in rows)
    lines = [f"Reactive state under prefix {data['prefix']!r}"]
    lines += [f"  {label:<{width}}  {value}" for label, value in rows]
    lines.append(f"Last errors ({len(data['errors'])})")
    for error in data["errors"]:
        when = datetime.datetime.fromtimestamp(error["time"], tz=datetime.timezone.utc)
        lines.append(
            f"  {when:%Y-%m-%d %H:%M:%S}Z  {error['code']:<9}  {error['observer'][:12]}  "
            f"{error['view']}  {error['error']}"
        )
    if "invalidation" in data:
        lines += _render_invalidation(data["invalidation"])
    return "\n".join(lines)


def _render_invalidation(found: dict[str, Any]) -> list[str]:
    rows = [
        ("precise observers", str(found["precise"])),
        ("not decided yet", str(found["undecided"])),
        ("evaluations left out", str(found["skipped"])),
        ("probe dispatches", str(found["dispatches"])),
        ("probe queries", str(found["probe_queries"])),
        *((f"table-level: {reason}", str(n)) for reason, n in found["table_level"].items()),
    ]
    width = max(len(label) for label, _ in rows)
    lines = [f"Precise invalidation ({'on' if found['enabled'] else 'off'})"]
    return lines + [f"  {label:<{width}}  {value}" for label, value in rows]
