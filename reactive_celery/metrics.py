"""Prometheus metrics: what the engine counts, one cheap call per event.

Recorded through ``prometheus-client`` (``pip install reactive-celery[metrics]``)
into its default registry; every call is a no-op when the library is missing
or ``REACTIVE_CELERY["METRICS"]`` is False. Exposed by ``metrics_view``.

Several processes (prefork Celery children, several ASGI servers) share one
``PROMETHEUS_MULTIPROC_DIR``: prometheus-client then writes each process's
values to files there and the view sums them. The variable must be set before
the process starts; ``connect()`` marks a process dead when it exits, so its
live gauges (sockets) leave the sums. Names, documented in docs/operations.md::

    reactive_celery_evaluations_total{outcome}        counter   changed, unchanged, dropped, or
                                                                the code that stopped the observer
    reactive_celery_evaluation_seconds                histogram evaluations that produced a result
    reactive_celery_commit_to_push_seconds            histogram a write's commit to its diff's push
    reactive_celery_frames_sent_total{protocol}       counter   WebSocket frames sent
    reactive_celery_sockets{pid}                      gauge     open sockets of each ASGI process
    reactive_celery_outbox_peak_frames{pid}           gauge     most frames one socket had waiting
    reactive_celery_frames_coalesced_total            counter   diffs slow sockets skipped
    reactive_celery_channel_layer_errors_total        counter   failed channel-layer operations
    reactive_celery_errors_total{source,code}         counter   stopped observers, refused requests

The store gauges (observers, subscribers, queue depth) are read at scrape time
by ``metrics_view``.
"""

from __future__ import annotations

import atexit
import os
import time
from collections.abc import Iterable
from typing import Any

from celery.signals import worker_process_shutdown

from .conf import reactive_settings
from .store import keys
from .store.connection import client
from .store.locks import STAMP_TTL

try:
    import prometheus_client
    from prometheus_client import multiprocess
except ImportError:  # the metrics extra is optional
    prometheus_client = None  # type: ignore[assignment]

__all__ = [
    "COMMIT_STAMP_TTL",
    "LATENCY_BUCKETS",
    "NAMESPACE",
    "answered",
    "commit_time",
    "committed",
    "connect",
    "enabled",
    "evaluated",
    "frame_sent",
    "installed",
    "layer_error",
    "multiprocess_dir",
    "outbox_coalesced",
    "outbox_filled",
    "process_exited",
    "socket_closed",
    "socket_opened",
    "stopped",
]

#: Every metric name starts with this and an underscore.
NAMESPACE = "reactive_celery"
#: Seconds a commit's stamp waits for an evaluation before it is dropped.
COMMIT_STAMP_TTL = STAMP_TTL
#: Buckets of both histograms: the engine's work is milliseconds to seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def installed() -> bool:
    """Whether ``prometheus-client`` can be imported."""
    return prometheus_client is not None


def enabled() -> bool:
    """Whether metrics are recorded: the library is installed and ``METRICS`` is on."""
    return prometheus_client is not None and bool(reactive_settings.METRICS)


def multiprocess_dir() -> str | None:
    """The directory several processes write their values to, when one is configured."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


if prometheus_client is not None:
    _EVALUATIONS = prometheus_client.Counter(
        f"{NAMESPACE}_evaluations",
        "Observer evaluations run by workers, by outcome.",
        ["outcome"],
    )
    _EVALUATION_SECONDS = prometheus_client.Histogram(
        f"{NAMESPACE}_evaluation_seconds",
        "Time of one evaluation that produced a result, view and publish included.",
        buckets=LATENCY_BUCKETS,
    )
    _COMMIT_TO_PUSH = prometheus_client.Histogram(
        f"{NAMESPACE}_commit_to_push_seconds",
        "Time from a write's commit to the push of the diff it caused.",
        buckets=LATENCY_BUCKETS,
    )
    _FRAMES = prometheus_client.Counter(
        f"{NAMESPACE}_frames_sent", "WebSocket frames sent to clients.", ["protocol"]
    )
    # One series per live ASGI process: a dead process's sockets are gone with it.
    _SOCKETS = prometheus_client.Gauge(
        f"{NAMESPACE}_sockets", "Open WebSocket connections.", multiprocess_mode="liveall"
    )
    _OUTBOX_PEAK = prometheus_client.Gauge(
        f"{NAMESPACE}_outbox_peak_frames",
        "The most frames one socket of this process has had waiting at once, after coalescing.",
        multiprocess_mode="liveall",
    )
    _COALESCED = prometheus_client.Counter(
        f"{NAMESPACE}_frames_coalesced",
        "Diffs dropped from a slow socket's outgoing frames: a later diff superseded them.",
    )
    _LAYER_ERRORS = prometheus_client.Counter(
        f"{NAMESPACE}_channel_layer_errors",
        "Channel-layer operations that failed (each attempt of a retried send).",
    )
    _ERRORS = prometheus_client.Counter(
        f"{NAMESPACE}_errors",
        "Stopped observers (source=observer) and refused socket requests (source=request).",
        ["source", "code"],
    )


def committed(observers: Iterable[str]) -> None:
    """Stamp the time on observers a change queued or marked dirty.

    The earliest stamp since the observer's last evaluation began is kept, so
    the latency is that of the oldest change an evaluation delivers. A commit
    stamps its observers in the script that queues them (``locks.queue_or_probe``,
    and the probe dispatch for those it queues), with ``COMMIT_STAMP_TTL``.
    """
    oids = list(observers)
    if not oids or not enabled():
        return
    now = f"{time.time():.6f}"
    pipe = client().pipeline(transaction=False)
    for oid in oids:
        pipe.set(keys.committed(oid), now, nx=True, ex=COMMIT_STAMP_TTL)
    pipe.execute()


def commit_time(oid: str) -> float | None:
    """Called when an evaluation begins: take the commit stamp it will deliver, if any.

    Taken at the start, so a change committed during the run stamps the rerun.
    """
    if not enabled():
        return None
    stamp = client().getdel(keys.committed(oid))
    return float(stamp) if stamp else None


def evaluated(before: int, after: int | None, started: float, committed: float | None) -> None:
    """Called after an evaluation published: count it by outcome, observe its times.

    ``before``/``after`` are the versions (``after`` None: dropped meanwhile),
    ``started`` the ``time.perf_counter()`` it began at, ``committed`` what
    ``commit_time`` returned.
    """
    if not enabled():
        return
    outcome = "dropped" if after is None else "changed" if after != before else "unchanged"
    _EVALUATIONS.labels(outcome).inc()
    _EVALUATION_SECONDS.observe(time.perf_counter() - started)
    if outcome == "changed" and committed is not None:
        _COMMIT_TO_PUSH.observe(max(0.0, time.time() - committed))


def stopped(code: str) -> None:
    """Called when an observer is stopped: an evaluation's outcome and an error, by code."""
    if not enabled():
        return
    _EVALUATIONS.labels(code).inc()
    _ERRORS.labels("observer", code).inc()


def answered(frame: dict[str, Any]) -> None:
    """Called with each answer to a socket request: count the errors, by code."""
    if frame.get("type") == "error" and enabled():
        _ERRORS.labels("request", str(frame.get("code"))).inc()


def frame_sent(protocol: str) -> None:
    """Called for each frame a socket sends."""
    if enabled():
        _FRAMES.labels(protocol).inc()


def socket_opened() -> None:
    """Called when a socket's handshake is accepted."""
    if enabled():
        _SOCKETS.inc()


def socket_closed(accepted: bool) -> None:
    """Called once when a consumer ends; only an accepted socket was counted open."""
    if accepted and enabled():
        _SOCKETS.dec()


#: This process's outbox high-water mark: the gauge is set only when it rises.
_outbox_peak = 0


def outbox_filled(frames: int) -> None:
    """Called after a socket's outbox took a message, with the frames now waiting."""
    global _outbox_peak
    if frames > _outbox_peak and enabled():
        _outbox_peak = frames
        _OUTBOX_PEAK.set(frames)


def outbox_coalesced(dropped: int) -> None:
    """Called when a slow socket's superseded diffs were dropped."""
    if dropped and enabled():
        _COALESCED.inc(dropped)


def layer_error() -> None:
    """Called for each channel-layer operation that failed."""
    if enabled():
        _LAYER_ERRORS.inc()


def process_exited(pid: int | None = None, **kwargs: Any) -> None:
    """Drop an exited process's live gauges from the shared directory (multiprocess mode).

    Connected to Celery's ``worker_process_shutdown`` and ``atexit``; call it
    from your server's child-exit hook too (gunicorn's ``child_exit``).
    """
    directory = multiprocess_dir()
    if prometheus_client is not None and directory:
        multiprocess.mark_process_dead(pid or os.getpid(), directory)  # type: ignore[no-untyped-call]


def connect() -> None:
    """Mark this process (and each prefork child) dead when it exits; from ``ready()``."""
    if not installed() or not multiprocess_dir():
        return
    worker_process_shutdown.connect(
        process_exited, dispatch_uid="reactive_celery.metrics", weak=False
    )
    # Read at exit: a forked child that exits normally marks its own pid.
    atexit.register(process_exited)
