"""Database writes -> on commit -> one evaluate task per dependent observer.

Receivers only remember the tables a transaction wrote. One ``on_commit``
callback per transaction and database does a single Redis lookup and enqueues
each dependent observer that is not already queued. A rollback drops the
callback, so nothing is sent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import Model
from django.db.models.signals import m2m_changed, post_delete, post_save

from .dependencies import tables_for, tables_of_model
from .store import locks
from .tasks import enqueue_evaluation

__all__ = ["connect", "disconnect", "enqueue_dependents", "mark", "notify"]

logger = logging.getLogger(__name__)

_M2M_ACTIONS = frozenset({"post_add", "post_remove", "post_clear"})


class _PendingTables:
    """The tables one transaction wrote; called by Django when it commits."""

    def __init__(self, tables: Iterable[str]) -> None:
        self.tables = set(tables)

    def __call__(self) -> None:
        tables, self.tables = self.tables, set()
        enqueue_dependents(tables)


def enqueue_dependents(tables: set[str]) -> list[str]:
    """Queue one evaluation for each observer of ``tables`` not already queued."""
    try:
        _, queued = locks.queue_dependents(tables)
        for oid in queued:
            enqueue_evaluation(oid)
    except Exception:
        # The write is committed; failing the caller would not undo it. Say what was lost.
        logger.exception(
            "reactive_celery could not queue evaluations for tables %s; "
            "their observers miss this change until the next one.",
            sorted(tables),
        )
        return []
    return queued


def mark(tables: Iterable[str], using: str | None = None) -> None:
    """Remember written tables until the current transaction on ``using`` commits."""
    using = using or DEFAULT_DB_ALIAS
    connection = connections[using]
    pending = getattr(connection, "_reactive_pending", None)
    # A rollback drops our callback but leaves the attribute behind: check the queue.
    if pending is not None and any(entry[1] is pending for entry in connection.run_on_commit):
        pending.tables.update(tables)
        return
    pending = _PendingTables(tables)
    connection._reactive_pending = pending  # type: ignore[attr-defined]
    transaction.on_commit(pending, using=using)


def notify(*targets: Any, using: str | None = None) -> None:
    """Tell observers that these models or tables changed without signals.

    Use after ``QuerySet.update()``, ``bulk_create()`` or raw SQL. Targets are
    model classes, ``"app_label.Model"`` strings or table names; the notice is
    sent when the current transaction on ``using`` commits (at once outside one).
    """
    if not targets:
        raise TypeError("notify() needs at least one model or table, e.g. notify(Task).")
    mark(tables_for(targets), using)


def _on_save_or_delete(sender: type[Model], using: str, **kwargs: Any) -> None:
    if kwargs.get("raw"):
        return
    mark(tables_of_model(sender), using)


def _on_m2m_changed(sender: type[Model], action: str, using: str, **kwargs: Any) -> None:
    if action in _M2M_ACTIONS:
        mark(tables_of_model(sender), using)


def connect() -> None:
    """Connect the receivers; called from ``AppConfig.ready()``."""
    post_save.connect(_on_save_or_delete, dispatch_uid="reactive_celery.post_save")
    post_delete.connect(_on_save_or_delete, dispatch_uid="reactive_celery.post_delete")
    m2m_changed.connect(_on_m2m_changed, dispatch_uid="reactive_celery.m2m_changed")


def disconnect() -> None:
    """Disconnect the receivers (tests, or a process that must stay silent)."""
    post_save.disconnect(dispatch_uid="reactive_celery.post_save")
    post_delete.disconnect(dispatch_uid="reactive_celery.post_delete")
    m2m_changed.disconnect(dispatch_uid="reactive_celery.m2m_changed")
