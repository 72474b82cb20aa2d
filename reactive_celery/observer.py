"""One observer's life: refreshed under its lock, its results published, stopped.

refresh   what an ``evaluate`` task does: take the lock (or leave the change
          to its holder), evaluate unless ``invalidation`` finds the changes
          concern no result, rerun once per change that arrived meanwhile
evaluate  run the view as the observer's user and publish the result
publish   new result -> version -> store and replay buffer -> push; the one copy
          of the version guarantee, used by workers and subscribing requests
stop      drop the observer and tell its subscribers why
announce_settled   tell clients waiting on ``sync`` that the observer caught up
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from typing import Protocol

from celery.exceptions import SoftTimeLimitExceeded

from . import broadcast, fanout, invalidation, metrics, protocol
from .conf import reactive_settings
from .diff import diff, index_by_key
from .evaluation import Result, evaluate_spec, permitted
from .exceptions import ObserverError, ObserverForbidden, ObserverGone
from .spec import ObserverSpec
from .store import connection, locks, observers, stats, subscribers

__all__ = ["MAX_STARTS", "Requeue", "announce_settled", "evaluate", "publish", "refresh", "stop"]

# The name docs/operations.md gives for evaluation records.
logger = logging.getLogger("reactive_celery.tasks")

#: A task started this many times without finishing is crashing its worker.
MAX_STARTS = 3


class Requeue(Protocol):
    """Sends another evaluate task for an observer (``tasks.enqueue_evaluation``)."""

    def __call__(self, oid: str, countdown: float | None = None, retry: bool = False) -> None:
        """Called when an observer needs another evaluation."""


def refresh(oid: str, *, retry: bool, requeue: Requeue) -> None:
    """Evaluate one observer and push what changed; reruns once if changed meanwhile.

    Called by the ``evaluate`` task. ``retry``: sent by a contended task to run
    after the holder's lock would have expired (see ``locks.begin``).
    """
    token = uuid.uuid4().hex
    begun = locks.begin(oid, token, retry=retry)
    if not begun.acquired:
        # Another worker is evaluating and will rerun; if it died, its lock expires
        # and this one retry picks the change up.
        if begun.retry_in_ms is not None:
            requeue(oid, countdown=begun.retry_in_ms / 1000 + 0.05, retry=True)
        logger.debug(
            "Observer %s is locked; retry in %s ms (None: already scheduled)",
            oid,
            begun.retry_in_ms,
            extra={"observer": oid},
        )
        return
    logger.debug(
        "Observer %s locked (start %d, retry=%s, touched %s)",
        oid,
        begun.starts,
        retry,
        begun.touched[:5],
        extra={"observer": oid},
    )
    if begun.starts > MAX_STARTS:
        stop(oid, "crashed", "Evaluating this observer repeatedly killed its worker.")
        locks.finish(oid, token, keep=False)
        return
    # Reruns share this task's time limit: past half of it, hand over to a new task.
    deadline = time.monotonic() + reactive_settings.EVALUATION_TIME_LIMIT / 2
    touched: tuple[str, ...] | None = begun.touched
    ended = False  # by the script that released the lock, starts cleared
    try:
        while touched is not None:
            stored = observers.load(oid)
            # Unconcerned by every change taken with the lock: released as if evaluated.
            # A gone observer goes to evaluate(), which says so and does nothing.
            if stored is None or invalidation.affects(oid, touched, stored):
                evaluate(oid, stored)
            else:
                logger.debug("Observer %s unaffected by %s", oid, touched[:5])
            if time.monotonic() >= deadline:
                if locks.finish(oid, token, keep=False) == 1:
                    # Queued again at once, so no client hears "caught up" in between.
                    locks.queue([oid])
                    requeue(oid)
                    break
                announce_settled(oid)
                break
            after = locks.rerun(oid, token)
            touched = after.touched
            if touched is None:
                ended = True
                if after.settled is not None:
                    _send_settled(oid, after.settled)
    except BaseException:
        if locks.finish(oid, token, keep=False) == 1:
            # A change arrived during the failed run: it still needs an evaluation.
            with contextlib.suppress(Exception):
                requeue(oid)
        raise
    finally:
        if not ended:
            locks.clear_starts(oid)


def evaluate(oid: str, stored: observers.Observer | None = None) -> bool:
    """One evaluation under the lock: run the view, then publish its result.

    ``stored``: the observer as the caller just read it under the lock (else read
    here). Returns whether the result changed (and was pushed).
    """
    stored = stored or observers.load(oid)
    if stored is None:
        logger.debug("Observer %s is gone: nothing to evaluate", oid, extra={"observer": oid})
        return False
    spec = ObserverSpec.from_json(stored.spec)
    started = time.perf_counter()
    committed = metrics.commit_time(oid)
    shared = spec.user is None
    try:
        if shared:
            _revoke_unpermitted(oid, spec)
        result = evaluate_spec(spec, spec.user, shared=shared)
    except ObserverForbidden as exc:
        stop(oid, "forbidden", str(exc))
        return False
    except ObserverGone as exc:
        stop(oid, "gone", str(exc))
        return False
    except SoftTimeLimitExceeded:
        limit = reactive_settings.EVALUATION_TIME_LIMIT
        stop(oid, "timeout", f"Evaluation took longer than {limit} s.")
        return False
    except ObserverError as exc:
        stop(oid, "error", str(exc))
        return False
    except Exception:
        # The exception's text may hold anything (SQL, paths, data): subscribers get
        # an id to quote, the log gets the detail.
        error_id = uuid.uuid4().hex[:12]
        logger.exception(
            "Observer %s (%s) raised (error %s); it is stopped.",
            oid,
            spec.view,
            error_id,
            extra={"observer": oid, "view": spec.view, "error_id": error_id},
        )
        stop(oid, "error", f"The view raised an exception (error {error_id}).")
        return False
    elapsed = time.perf_counter() - started
    _log_limits(oid, spec, elapsed, len(result.items))
    try:
        version = publish(oid, spec, result, stored=stored, evaluated=True, elapsed=elapsed)
    except ValueError as exc:
        stats.record_evaluation(elapsed)  # publish raised before it could count it
        stop(oid, "error", str(exc))
        return False
    metrics.evaluated(stored.version, version, started, committed)
    return version is not None and version != stored.version


def _revoke_unpermitted(oid: str, spec: ObserverSpec) -> None:
    """End the subscriptions of a shared observer whose users the view no longer admits."""
    followers = subscribers.get_many(subscribers.followers(oid))
    allowed = permitted(spec, {follower.user for follower in followers})
    revoked = [follower for follower in followers if follower.user not in allowed]
    if not revoked:
        return
    message = protocol.stop_message(oid, "forbidden", "Permission to this view was withdrawn.")
    for follower in revoked:
        subscribers.unsubscribe(oid, follower.id)
    # On the hub's channel, ahead of this evaluation's diff: none reaches a revoked socket.
    broadcast.send(
        channel_sends=[fanout.revoke(oid, follower.channel, message) for follower in revoked]
    )
    logger.info(
        "Observer %s (%s): %d subscriber(s) lost permission",
        oid,
        spec.view,
        len(revoked),
        extra={"observer": oid, "view": spec.view},
    )


def publish(
    oid: str,
    spec: ObserverSpec,
    result: Result,
    *,
    stored: observers.Observer | None,
    creator: str = "",
    declared: set[str] | None = None,
    evaluated: bool = False,
    joining: str | None = None,
    elapsed: float | None = None,
) -> int | None:
    """Store a new result and push its changes; return its version.

    ``stored`` is the observer as it was (None: create it, as ``creator``).
    ``declared``: the tables of ``dependencies=`` (default: those stored). A
    worker (``evaluated``) never revives an observer dropped meanwhile: then
    nothing is written and None returned. ``joining`` is
    a channel added to the group after the push, so existing subscribers get the
    catch-up diff and the new socket starts at the returned version. Raises
    ``ValueError`` when items lack unique primary keys.
    """
    if stored is None:
        index_by_key(result.items, spec.primary_key)  # the first result is held to it too
    changes = diff(stored.items, result.items, spec.primary_key) if stored else []
    if stored is None:
        # A re-created observer must never repeat a version a client still holds:
        # it starts at Redis's clock in ms, which outruns one evaluation per version.
        version = connection.now_ms()
    else:
        version = stored.version + 1 if changes else stored.version
        creator = stored.creator
        if declared is None:
            declared = set(stored.declared)
    declared = declared or set()
    saved = observers.save(
        oid,
        spec=spec.to_json(),
        items=result.items,
        meta=result.meta,
        version=version,
        tables=result.tables | declared,
        declared=declared,
        creator=creator,
        old_tables=stored.tables if stored else (),
        evaluated=evaluated,
        must_exist=evaluated,
        elapsed=elapsed,
        diff={"version": version, "primary_key": spec.primary_key, "changes": changes}
        if changes
        else None,
    )
    if not saved:
        return None  # its last subscriber left meanwhile: do not bring it back
    group = broadcast.group_name(oid)
    sends = [(group, protocol.diff_message(oid, version, spec.primary_key, changes))]
    follows, adds = fanout.join(group, oid, joining) if joining else ([], [])
    broadcast.send(group_sends=sends if changes else [], channel_sends=follows, group_adds=adds)
    return version


def announce_settled(oid: str) -> None:
    """Tell clients waiting on ``sync`` that the observer caught up (its lock is free)."""
    version = locks.settled(oid)
    if version is not None:
        _send_settled(oid, version)


def _send_settled(oid: str, version: int) -> None:
    group = broadcast.group_name(oid)
    broadcast.send(group_sends=[(group, protocol.synced_message(oid, version))])


def _log_limits(oid: str, spec: ObserverSpec, elapsed: float, size: int) -> None:
    extra = {"observer": oid, "view": spec.view, "elapsed": elapsed, "items": size}
    logger.info("Evaluated observer %s (%s) in %.3f s", oid, spec.view, elapsed, extra=extra)
    if elapsed > reactive_settings.SLOW_EVALUATION:
        logger.warning("Slow observer %s (%s): %.3f s", oid, spec.view, elapsed, extra=extra)
    if size > reactive_settings.LARGE_RESULT:
        logger.warning("Large observer %s (%s): %d items", oid, spec.view, size, extra=extra)


def stop(oid: str, code: str, message: str) -> None:
    """Drop an observer and tell its subscribers why."""
    # Read the view before the drop deletes the spec; kept for reactive_status.
    view = stats.record_error(oid, code, message)
    metrics.stopped(code)
    logger.warning(
        "Observer %s (%s) stopped (%s): %s",
        oid,
        view,
        code,
        message,
        extra={"observer": oid, "view": view, "code": code},
    )
    observers.drop(oid)
    broadcast.send(
        group_sends=[(broadcast.group_name(oid), protocol.stop_message(oid, code, message))]
    )
