"""Evaluation statistics in Redis, bounded, for ``manage.py reactive_status``.

Shared by every worker and renewed on each write: the evaluation count, the
last ``TIMINGS_KEPT`` evaluation times and the last ``ERRORS_KEPT`` stopped
observers (``keys.stats_*``). Each write is one pipelined round trip, and a
worker's evaluation is counted by ``observers.save`` in the script that stores
its result; the lists are trimmed on every push, so they never grow past their cap.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

from . import keys
from .connection import client

__all__ = [
    "ERRORS_KEPT",
    "STATS_TTL",
    "TIMINGS_KEPT",
    "last_errors",
    "percentile",
    "record_error",
    "record_evaluation",
    "summary",
]

#: Evaluation times kept for the percentiles.
TIMINGS_KEPT = 1000
#: Stopped observers kept for ``last errors``.
ERRORS_KEPT = 20
#: Seconds the statistics outlive the last evaluation.
STATS_TTL = 86400


def record_evaluation(elapsed: float) -> None:
    """Count an evaluation that ran the view and keep its time (when not saved with it)."""
    timings = keys.stats_timings()
    count = keys.stats_evaluations()
    pipe = client().pipeline(transaction=False)
    pipe.incr(count)
    pipe.lpush(timings, f"{elapsed * 1000:.3f}")
    pipe.ltrim(timings, 0, TIMINGS_KEPT - 1)
    pipe.expire(count, STATS_TTL)
    pipe.expire(timings, STATS_TTL)
    pipe.execute()


def record_error(oid: str, code: str, message: str) -> str:
    """Called when an observer is stopped, before its state is dropped; returns its view."""
    r = client()
    spec = r.hget(keys.observer(oid), "spec")
    view = ""
    if spec:
        try:
            view = json.loads(spec).get("view", "")
        except ValueError:
            view = ""
    entry = {"time": time.time(), "observer": oid, "view": view, "code": code, "error": message}
    errors = keys.stats_errors()
    pipe = r.pipeline(transaction=False)
    pipe.lpush(errors, json.dumps(entry, separators=(",", ":")))
    pipe.ltrim(errors, 0, ERRORS_KEPT - 1)
    pipe.expire(errors, STATS_TTL)
    pipe.execute()
    return view


def last_errors() -> list[dict[str, Any]]:
    """The kept stopped-observer records, newest first."""
    return [json.loads(raw) for raw in client().lrange(keys.stats_errors(), 0, -1)]


def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank ``q`` percentile (0 < q <= 100) of ``values``; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summary() -> dict[str, Any]:
    """Evaluation count and time percentiles (ms) over the kept timings."""
    r = client()
    timings = [float(v) for v in r.lrange(keys.stats_timings(), 0, -1)]
    return {
        "evaluations": int(r.get(keys.stats_evaluations()) or 0),
        "samples": len(timings),
        "p50_ms": percentile(timings, 50),
        "p99_ms": percentile(timings, 99),
    }
