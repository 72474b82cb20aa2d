"""Database writes -> on commit -> one evaluate task per dependent observer.

Receivers only remember the tables a transaction wrote. One ``on_commit``
callback per transaction and database does a single Redis lookup and enqueues
each dependent observer that is not already queued. A rollback drops the
callback, so nothing is sent.

The write is committed whatever happens next, so a commit whose enqueue fails
(Redis or the broker unreachable) is not lost: its tables (and observers
marked queued but not sent) stay in this process and are retried after
``RETRY_DELAYS`` (about 30 s in all) and with this process's next commit,
which ever comes first. Each failure logs one line. A process that exits
before Redis comes back loses them (the next write to the table catches up).

While ``migrate`` runs in this process nothing is marked, and writes to
``django_migrations`` never are: a deploy migrates before Redis may be up,
and no observer follows Django's own bookkeeping.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import Model
from django.db.models.signals import (
    m2m_changed,
    post_delete,
    post_migrate,
    post_save,
    pre_migrate,
)

from . import metrics
from .dependencies import tables_for, tables_of_model
from .store import locks
from .tasks import enqueue_evaluation

__all__ = ["RETRY_DELAYS", "connect", "disconnect", "enqueue_dependents", "mark", "notify"]

logger = logging.getLogger(__name__)

#: Seconds before each retry of a failed enqueue; after the last, the next commit retries.
RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0, 15.0)

_M2M_ACTIONS = frozenset({"post_add", "post_remove", "post_clear"})

#: MigrationRecorder's table, written once per applied migration.
_MIGRATIONS_TABLE = "django_migrations"


class _PendingTables:
    """The tables one transaction wrote; called by Django when it commits."""

    def __init__(self, tables: Iterable[str]) -> None:
        self.tables = set(tables)

    def __call__(self) -> None:
        tables, self.tables = self.tables, set()
        enqueue_dependents(tables)


class _Retry:
    """What failed enqueues left behind in this process, and the timer that retries them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tables: set[str] = set()
        #: Marked queued in Redis, their task not sent: sent as they are, never looked up again.
        self.observers: list[str] = []
        self.attempt = 0
        self.timer: threading.Timer | None = None

    def take(self, tables: Iterable[str]) -> tuple[set[str], list[str]]:
        """Called by each enqueue: its tables plus everything pending, which it now owns."""
        with self.lock:
            tables = set(tables) | self.tables
            observers, self.tables, self.observers = self.observers, set(), []
        return tables, observers

    def keep(self, tables: set[str], observers: list[str], exc: Exception) -> None:
        """Called when an enqueue failed: keep what it did not do, retry later, say so."""
        with self.lock:
            self.tables |= tables
            self.observers += [oid for oid in observers if oid not in self.observers]
            what = (
                ("tables", sorted(self.tables))
                if self.tables
                else ("observers", list(self.observers))
            )
            if self.timer is not None:
                when = "a retry is scheduled"
            elif self.attempt < len(RETRY_DELAYS):
                delay = RETRY_DELAYS[self.attempt]
                self.attempt += 1
                self.timer = threading.Timer(delay, self.run)
                self.timer.daemon = True
                self.timer.start()
                when = f"retrying in {delay:g} s"
            else:
                when = "retrying with this process's next commit"
        logger.error(
            "reactive_celery could not queue evaluations for %s %s (%s: %s); %s",
            *what,
            type(exc).__name__,
            exc,
            when,
            extra={"tables": sorted(tables), "observers": list(observers)},
        )

    def done(self) -> None:
        """Called after an enqueue that succeeded: with nothing pending, stop retrying."""
        with self.lock:
            if self.tables or self.observers:
                return
            self.attempt = 0
            timer, self.timer = self.timer, None
        if timer is not None:
            timer.cancel()

    def run(self) -> None:
        """The timer's thread: retry what is pending."""
        with self.lock:
            self.timer = None
        enqueue_dependents(set())

    def after_fork(self) -> None:
        """A forked child owns no timer, and leaves what is pending to its parent."""
        self.lock = threading.Lock()
        self.tables, self.observers, self.attempt, self.timer = set(), [], 0, None


_retry = _Retry()


class _Migrating:
    """Whether ``migrate`` runs in this process: its first pre_migrate to its last post_migrate.

    Django sends each signal once per app, with the same ``plan`` list for the
    whole run; ``flush`` sends post_migrate alone, with no plan. A migrate that
    raises sends no post_migrate: this process then marks nothing until the next
    migrate starts over (a failed migrate usually ends its process anyway).
    """

    def __init__(self) -> None:
        self.plan: object = None
        self.apps_left = 0

    @property
    def running(self) -> bool:
        """Asked by ``mark()`` for every write."""
        return self.plan is not None

    def started(self, plan: Any = None, **kwargs: Any) -> None:
        """Called by pre_migrate for each app."""
        if plan is None:
            return
        if plan is not self.plan:
            self.plan, self.apps_left = plan, 0
        self.apps_left += 1

    def finished(self, plan: Any = None, **kwargs: Any) -> None:
        """Called by post_migrate for each app; the last one ends the run."""
        if plan is None or plan is not self.plan:
            return
        self.apps_left -= 1
        if self.apps_left <= 0:
            self.plan, self.apps_left = None, 0


_migrating = _Migrating()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_retry.after_fork)


def enqueue_dependents(tables: set[str]) -> list[str]:
    """Queue one evaluation for each observer of ``tables`` not already queued.

    Called on commit. Tables and observers a failed call left behind go along.
    Returns the observers sent.
    """
    tables, observers = _retry.take(tables)
    sent: list[str] = []
    try:
        if tables:
            dependents, fresh = locks.queue_dependents(tables)
            tables = set()  # looked up and marked: from now on only the sends are owed
            observers += [oid for oid in fresh if oid not in observers]
            metrics.committed(dependents)
        while observers:
            enqueue_evaluation(observers[0])
            sent.append(observers.pop(0))
    except Exception as exc:
        # The write is committed; failing the caller would not undo it. Retry instead.
        _retry.keep(tables, observers, exc)
        return sent
    _retry.done()
    return sent


def mark(tables: Iterable[str], using: str | None = None) -> None:
    """Remember written tables until the current transaction on ``using`` commits."""
    tables = set(tables) - {_MIGRATIONS_TABLE}
    if not tables or _migrating.running:
        return
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
    pre_migrate.connect(_migrating.started, dispatch_uid="reactive_celery.pre_migrate")
    post_migrate.connect(_migrating.finished, dispatch_uid="reactive_celery.post_migrate")


def disconnect() -> None:
    """Disconnect the receivers (tests, or a process that must stay silent)."""
    post_save.disconnect(dispatch_uid="reactive_celery.post_save")
    post_delete.disconnect(dispatch_uid="reactive_celery.post_delete")
    m2m_changed.disconnect(dispatch_uid="reactive_celery.m2m_changed")
    pre_migrate.disconnect(dispatch_uid="reactive_celery.pre_migrate")
    post_migrate.disconnect(dispatch_uid="reactive_celery.post_migrate")
