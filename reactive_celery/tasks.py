"""Celery tasks: ``reactive_celery.evaluate``.

Imported by ``AppConfig.ready()``, so every Celery app of the project knows
the tasks without a list to copy. Arguments are observer ids only (JSON).
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from . import broadcast, coordination, stats, store
from .conf import reactive_settings
from .diff import diff
from .evaluation import ObserverForbidden, evaluate_spec
from .exceptions import ObserverError, ObserverGone
from .spec import ObserverSpec

__all__ = ["enqueue_evaluation", "evaluate", "evaluate_observer"]

logger = logging.getLogger(__name__)

#: A task started this many times without finishing is crashing its worker.
MAX_STARTS = 3


def enqueue_evaluation(oid: str, countdown: float | None = None, retry: bool = False) -> None:
    """Send one ``evaluate`` task for an observer, with the configured limits."""
    limit = reactive_settings.EVALUATION_TIME_LIMIT
    evaluate.apply_async(
        (oid,),
        {"retry": retry},
        queue=reactive_settings.QUEUE,
        countdown=countdown,
        soft_time_limit=limit,
        time_limit=limit + 2,
    )


@shared_task(
    name="reactive_celery.evaluate",
    acks_late=True,
    reject_on_worker_lost=True,
    serializer="json",
    ignore_result=True,
    # Over the hard limit the message goes back to the broker, so MAX_STARTS applies.
    acks_on_timeout=False,
)
def evaluate(oid: str, retry: bool = False) -> None:
    """Evaluate one observer and push what changed; reruns once if changed meanwhile.

    ``retry``: sent by a contended task to run after the holder's lock would have
    expired; it carries no change of its own, so it never marks the observer dirty
    (that would keep a live holder rerunning for as long as retries arrive).
    """
    if not retry:
        coordination.clear_queued(oid)
    token = uuid.uuid4().hex
    # Outlives Celery's hard limit (limit + 2 s), so only a dead worker's lock expires.
    ttl_ms = int((reactive_settings.EVALUATION_TIME_LIMIT + 5) * 1000)
    remaining = coordination.acquire_or_mark_dirty(oid, token, ttl_ms, mark=not retry)
    if remaining != -2:
        # Another worker is evaluating and will rerun; if it died, its lock expires
        # and this one retry picks the change up.
        if coordination.claim_retry(oid, remaining):
            enqueue_evaluation(oid, countdown=max(remaining, 0) / 1000 + 0.05, retry=True)
        return
    if coordination.count_start(oid) > MAX_STARTS:
        stop_observer(oid, "crashed", "Evaluating this observer repeatedly killed its worker.")
        coordination.release_or_continue(oid, token, ttl_ms, keep=False)
        return
    # Reruns share this task's time limit: past half of it, hand over to a new task.
    deadline = time.monotonic() + reactive_settings.EVALUATION_TIME_LIMIT / 2
    try:
        while True:
            evaluate_observer(oid)
            if time.monotonic() >= deadline:
                if coordination.release_or_continue(oid, token, ttl_ms, keep=False) == 1:
                    enqueue_evaluation(oid)
                break
            if coordination.release_or_continue(oid, token, ttl_ms) != 1:
                break
    except BaseException:
        if coordination.release_or_continue(oid, token, ttl_ms, keep=False) == 1:
            # A change arrived during the failed run: it still needs an evaluation.
            with contextlib.suppress(Exception):
                enqueue_evaluation(oid)
        raise
    finally:
        coordination.clear_starts(oid)


def evaluate_observer(oid: str) -> bool:
    """One evaluation under the lock: run the view, diff, store, broadcast.

    Returns whether the result changed (and was pushed).
    """
    observer = store.load_observer(oid)
    if observer is None:
        return False
    spec = ObserverSpec.from_json(observer.spec)
    started = time.perf_counter()
    try:
        result = evaluate_spec(spec, spec.user if spec.user is not None else observer.creator)
    except ObserverForbidden as exc:
        stop_observer(oid, "forbidden", str(exc))
        return False
    except ObserverGone as exc:
        stop_observer(oid, "gone", str(exc))
        return False
    except SoftTimeLimitExceeded:
        stop_observer(
            oid,
            "timeout",
            f"Evaluation took longer than {reactive_settings.EVALUATION_TIME_LIMIT} s.",
        )
        return False
    except (ObserverError, ValueError) as exc:
        stop_observer(oid, "error", str(exc))
        return False
    except Exception:
        logger.exception("Observer %s (%s) raised; it is stopped.", oid, spec.view)
        stop_observer(oid, "error", "The view raised an exception; see the server log.")
        return False
    elapsed = time.perf_counter() - started
    _log_limits(oid, spec, elapsed, len(result.items))
    try:
        changes = diff(observer.items, result.items, spec.primary_key)
    except ValueError as exc:
        stop_observer(oid, "error", str(exc))
        return False
    version = observer.version + 1 if changes else observer.version
    tables = result.tables | set(_declared(spec))
    saved = store.save_observer(
        oid,
        spec=observer.spec,
        items=result.items,
        meta=result.meta,
        version=version,
        tables=tables,
        creator=observer.creator,
        old_tables=observer.tables,
        evaluated=True,
        must_exist=True,
    )
    if not saved:
        return False  # its last subscriber left meanwhile: do not bring it back
    if changes:
        store.record_diff(oid, version, spec.primary_key, changes)
        message = broadcast.diff_message(oid, version, spec.primary_key, changes)
        broadcast.send(group_sends=[(broadcast.group_name(oid), message)])
    return bool(changes)


def _declared(spec: ObserverSpec) -> list[str]:
    from .decorators import declared_tables

    return declared_tables(spec.view, spec.action)


def _log_limits(oid: str, spec: ObserverSpec, elapsed: float, size: int) -> None:
    extra = {"observer": oid, "view": spec.view, "elapsed": elapsed, "items": size}
    stats.record_evaluation(elapsed)
    logger.info("Evaluated observer %s (%s) in %.3f s", oid, spec.view, elapsed, extra=extra)
    if elapsed > reactive_settings.SLOW_EVALUATION:
        logger.warning("Slow observer %s (%s): %.3f s", oid, spec.view, elapsed, extra=extra)
    if size > reactive_settings.LARGE_RESULT:
        logger.warning("Large observer %s (%s): %d items", oid, spec.view, size, extra=extra)


def stop_observer(oid: str, code: str, message: str) -> None:
    """Drop an observer and tell its subscribers why."""
    # Read the view before the drop deletes the spec; kept for reactive_status.
    view = stats.record_error(oid, code, message)
    logger.warning(
        "Observer %s (%s) stopped (%s): %s",
        oid,
        view,
        code,
        message,
        extra={"observer": oid, "view": view, "code": code},
    )
    store.drop_observer(oid)
    broadcast.send(
        group_sends=[(broadcast.group_name(oid), broadcast.error_message(oid, code, message))]
    )
