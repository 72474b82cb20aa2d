"""Every Celery task of reactive_celery; each is a thin call into the engine.

    reactive_celery.evaluate   evaluate one observer (sent on commit, by poll, by retries)
    reactive_celery.dispatch   sent on commit, one per table at a time: probe its idle precise
                               observers together, evaluate those the write concerns (the
                               first in the same task, the others sent as evaluate tasks)
    reactive_celery.poll       sent by beat every second: enqueue due polling observers
    reactive_celery.sweep      sent by beat every SWEEP_INTERVAL: remove what dead sockets left,
                               requeue observers whose evaluation died with its worker

Imported by ``AppConfig.ready()``, so every Celery app of the project knows
the tasks without a list to copy. Arguments are observer ids only (JSON).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from celery import Task, shared_task

from . import dispatch as probe_dispatch
from . import observer
from .conf import reactive_settings
from .store import schedule
from .store.sweep import requeue_crashed, requeue_lost_dispatches
from .store.sweep import sweep as sweep_store

__all__ = ["dispatch", "enqueue_dispatch", "enqueue_evaluation", "evaluate", "poll", "sweep"]

# The name docs/operations.md gives for poll records.
poll_logger = logging.getLogger("reactive_celery.polling")


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


def enqueue_dispatch(table: str) -> None:
    """Send one ``dispatch`` task for a table, on the evaluations' queue."""
    limit = reactive_settings.EVALUATION_TIME_LIMIT
    dispatch.apply_async(
        (table,),
        queue=reactive_settings.QUEUE,
        soft_time_limit=limit,
        time_limit=limit + 2,
    )


# celery-types predates acks_on_timeout (Celery 5.7).
@shared_task(  # type: ignore[call-overload, untyped-decorator]
    name="reactive_celery.evaluate",
    acks_late=True,
    reject_on_worker_lost=True,
    serializer="json",
    ignore_result=True,
    # Over the hard limit the message goes back to the broker, so the crash cap applies.
    acks_on_timeout=False,
)
def evaluate(oid: str, retry: bool = False) -> None:
    """Evaluate one observer and push what changed (``observer.refresh``)."""
    observer.refresh(oid, retry=retry, requeue=enqueue_evaluation)


@shared_task(
    name="reactive_celery.dispatch",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    serializer="json",
    ignore_result=True,
)
def dispatch(self: Task[Any, Any], table: str) -> None:
    """Decide for the observers commits left to ``table``'s probe dispatch (``dispatch``)."""
    # Called directly (not as a task) it has no id: what it takes is its own anyway.
    task = self.request.id or uuid.uuid4().hex
    probe_dispatch.dispatch(
        table, requeue=enqueue_evaluation, task=task, evaluate_here=_evaluate_after_dispatch
    )


def _evaluate_after_dispatch(oid: str) -> None:
    observer.refresh(oid, retry=False, requeue=enqueue_evaluation)


@shared_task(name="reactive_celery.poll", ignore_result=True, serializer="json")
def poll() -> int:
    """Sent by beat every second: enqueue ``evaluate`` for each due polling observer."""
    claimed = schedule.claim_due()
    for oid in claimed:
        enqueue_evaluation(oid)
    if claimed:
        poll_logger.debug("Polled %d observers", len(claimed), extra={"observers": len(claimed)})
    return len(claimed)


@shared_task(name="reactive_celery.sweep", ignore_result=True, serializer="json")
def sweep() -> dict[str, int]:
    """Sent by beat every ``SWEEP_INTERVAL`` seconds: run the store's sweep, requeue crashes.

    A worker killed mid-evaluation leaves its task unacked for the broker's
    visibility timeout; this sends a new one as soon as the observer's lock expires.
    """
    report = sweep_store()
    requeued = requeue_crashed()
    for oid in requeued:
        enqueue_evaluation(oid)
    report["requeued"] = len(requeued)
    lost = requeue_lost_dispatches()
    for table in lost:
        enqueue_dispatch(table)
    report["dispatches"] = len(lost)
    return report
