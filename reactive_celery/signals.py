"""Database writes -> on commit -> one evaluate task per dependent observer.

Receivers remember the tables a transaction wrote and, per table, the primary
keys of the rows saved or deleted (read in the receiver: ``delete()`` clears the
pk afterwards); an m2m change or ``notify()`` without ``pks`` marks the whole
table. One ``on_commit`` callback per transaction and database does a single
Redis lookup, records the keys for each dependent observer (``locks.queue_dependents``)
and enqueues each that is not already queued. A rollback drops the callback, so
nothing is sent. More than ``TOUCHED_CAP`` keys for one table mark it whole.
With ``PRECISE_INVALIDATION``, the observers classified precise on a written
table whose keys are known are not looked at one by one: the same lookup
script pends the keys for one ``dispatch`` task of that table, which probes
them all in one query (``dispatch.py``). A commit then costs one script
however many such observers there are.

Who runs that script: with ``SEND_IN_BACKGROUND``, a commit made outside a
request (a task, a command, a script) hands its writes to this process's
sender thread (``sending.py``) and its caller goes on at once; a request's
commits run it before the request answers, so a client's ``sync`` after the
response finds its write. ``flush()`` waits for the sender.

The write is committed whatever happens next, so a commit whose enqueue fails
(Redis or the broker unreachable) is not lost: its tables (and observers
marked queued but not sent) stay in this process and are retried after
``RETRY_DELAYS`` (about 30 s in all) and with this process's next commit,
which ever comes first. Each failure logs one line. A process that exits
before Redis comes back loses them (the next write to the table catches up).
A retried enqueue marks its tables whole: it keeps no primary keys.

While ``migrate`` runs in this process nothing is marked, and writes to
``django_migrations`` never are: a deploy migrates before Redis may be up,
and no observer follows Django's own bookkeeping.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from django.core.signals import request_finished, request_started
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
from .conf import reactive_settings
from .dependencies import tables_for, tables_of_model
from .sending import Sender
from .store import locks, probes
from .tasks import enqueue_dispatch, enqueue_evaluation

__all__ = [
    "RETRY_DELAYS",
    "connect",
    "disconnect",
    "enqueue_dependents",
    "flush",
    "mark",
    "notify",
]

logger = logging.getLogger(__name__)

#: Seconds before each retry of a failed enqueue; after the last, the next commit retries.
RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0, 15.0)

_M2M_ACTIONS = frozenset({"post_add", "post_remove", "post_clear"})

#: MigrationRecorder's table, written once per applied migration.
_MIGRATIONS_TABLE = "django_migrations"


def _merge(
    into: dict[str, set[str] | None], tables: Iterable[str], pks: Collection[str] | None
) -> None:
    """Add a write of ``pks`` (None: every row) to each of ``tables``."""
    for table in tables:
        known = into.get(table, set()) if table in into or pks is not None else None
        if known is None or pks is None:
            into[table] = None
            continue
        known.update(pks)
        into[table] = None if len(known) > locks.TOUCHED_CAP else known


class _PendingTables:
    """The tables (and their written primary keys) of one transaction; called when it commits."""

    def __init__(self, tables: Iterable[str], pks: Collection[str] | None = None) -> None:
        self.pks: dict[str, set[str] | None] = {}
        _merge(self.pks, tables, pks)

    @property
    def tables(self) -> set[str]:
        """The tables written so far."""
        return set(self.pks)

    def add(self, tables: Iterable[str], pks: Collection[str] | None) -> None:
        """Called by ``mark()`` for each further write in the transaction."""
        _merge(self.pks, tables, pks)

    def __call__(self) -> None:
        written, self.pks = self.pks, {}
        # A request's commits are sent before it answers: a client that calls sync()
        # after its write's response must find the write already pending in Redis.
        if reactive_settings.SEND_IN_BACKGROUND and not getattr(_request, "active", False):
            _sender.submit(written)
        else:
            _send(written, time.time())


class _Retry:
    """What failed enqueues left behind in this process, and the timer that retries them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tables: set[str] = set()
        #: Marked queued in Redis, their task not sent: sent as they are, never looked up again.
        self.observers: list[str] = []
        #: Tables whose dispatch is marked queued, its task not sent.
        self.dispatches: list[str] = []
        self.attempt = 0
        self.timer: threading.Timer | None = None

    def take(self, tables: Iterable[str]) -> tuple[set[str], list[str], set[str], list[str]]:
        """Called by each enqueue: its tables plus everything pending, which it now owns.

        The third set: the pending tables alone (they changed whole); the fourth,
        the tables whose dispatch task is owed.
        """
        with self.lock:
            pending = self.tables
            tables = set(tables) | pending
            observers, self.tables, self.observers = self.observers, set(), []
            dispatches, self.dispatches = self.dispatches, []
        return tables, observers, pending, dispatches

    def keep(
        self, tables: set[str], observers: list[str], dispatches: list[str], exc: Exception
    ) -> None:
        """Called when an enqueue failed: keep what it did not do, retry later, say so."""
        with self.lock:
            self.tables |= tables
            self.observers += [oid for oid in observers if oid not in self.observers]
            self.dispatches += [t for t in dispatches if t not in self.dispatches]
            what = (
                ("tables", sorted(self.tables))
                if self.tables
                else ("observers", list(self.observers))
                if self.observers
                else ("table dispatches", list(self.dispatches))
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
            if self.tables or self.observers or self.dispatches:
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
        self.dispatches = []


_retry = _Retry()


def _send(written: Mapping[str, Collection[str] | None], committed: float) -> None:
    enqueue_dependents(
        set(written),
        {table: rows for table, rows in written.items() if rows is not None},
        committed=committed,
    )


_sender = Sender(_send, _merge)

#: Whether this thread handles a request (Django runs a sync view, and its ASGI
#: request signals, on one thread per request).
_request = threading.local()


def _request_started(**kwargs: Any) -> None:
    _request.active = True


def _request_finished(**kwargs: Any) -> None:
    _request.active = False


def flush(timeout: float | None = None) -> bool:
    """Wait until this process has sent what its commits so far wrote.

    With ``SEND_IN_BACKGROUND`` a commit hands its writes to a thread and
    returns; call this where the next step needs them sent (a test asserting
    on the broker, a script about to ``os._exit``). False if ``timeout``
    seconds passed first. A clean exit and a Celery pool process's exit do it.
    """
    return _sender.flush(timeout)


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


def enqueue_dependents(
    tables: set[str],
    pks: Mapping[str, Collection[str]] | None = None,
    committed: float | None = None,
) -> list[str]:
    """Queue one evaluation for each observer of ``tables`` not already queued.

    Called on commit. ``pks``: the primary keys written, for the tables whose
    rows are known (the others changed whole). Idle precise observers of such a
    table go to its dispatch instead (one task for all). Tables and observers a
    failed call left behind go along, as whole tables. ``committed``: when the
    first of these writes committed (default: now). Returns the observers sent.
    """
    tables, observers, whole, dispatches = _retry.take(tables)
    pks = {t: rows for t, rows in (pks or {}).items() if t not in whole}
    now = time.time() if committed is None else committed
    # One token per commit: a dispatch clears its table's pending token only if it took it.
    token = probes.token(now) if reactive_settings.PRECISE_INVALIDATION else ""
    stamp = f"{now:.6f}" if metrics.enabled() else ""
    sent: list[str] = []
    try:
        if tables:
            # The commit stamps (metrics) go in the same script as the touched entries.
            found = locks.queue_or_probe(tables, pks, token=token, stamp=stamp)
            observers += [oid for oid in found.fresh if oid not in observers]
            dispatches += [t for t in found.dispatches if t not in dispatches]
            tables = set()  # looked up and marked: from now on only the sends are owed
        while observers:
            enqueue_evaluation(observers[0])
            sent.append(observers.pop(0))
        while dispatches:
            enqueue_dispatch(dispatches[0])
            dispatches.pop(0)
    except Exception as exc:
        # The write is committed; failing the caller would not undo it. Retry instead.
        _retry.keep(tables, observers, dispatches, exc)
        return sent
    _retry.done()
    return sent


def mark(
    tables: Iterable[str], using: str | None = None, pks: Collection[str] | None = None
) -> None:
    """Remember written tables until the current transaction on ``using`` commits.

    ``pks``: the primary keys (strings) of the rows written in each of ``tables``;
    None when any row may have changed.
    """
    tables = set(tables) - {_MIGRATIONS_TABLE}
    if not tables or _migrating.running:
        return
    using = using or DEFAULT_DB_ALIAS
    connection = connections[using]
    pending = getattr(connection, "_reactive_pending", None)
    # A rollback drops our callback but leaves the attribute behind: check the queue.
    if pending is not None and any(entry[1] is pending for entry in connection.run_on_commit):
        pending.add(tables, pks)
        return
    pending = _PendingTables(tables, pks)
    connection._reactive_pending = pending  # type: ignore[attr-defined]
    transaction.on_commit(pending, using=using)


def notify(*targets: Any, using: str | None = None, pks: Iterable[Any] | None = None) -> None:
    """Tell observers that these models or tables changed without signals.

    Use after ``QuerySet.update()``, ``bulk_create()`` or raw SQL. Targets are
    model classes, ``"app_label.Model"`` strings or table names; the notice is
    sent when the current transaction on ``using`` commits (at once outside one).
    ``pks``: the primary keys of the rows changed in every target (None: any
    row may have), so only the observers those rows concern are evaluated.
    """
    if not targets:
        raise TypeError("notify() needs at least one model or table, e.g. notify(Task).")
    if isinstance(pks, (str, bytes)):
        raise TypeError("notify(pks=...) takes a list of primary keys, e.g. pks=[3, 5].")
    mark(tables_for(targets), using, None if pks is None else {str(pk) for pk in pks})


def _on_save_or_delete(sender: type[Model], using: str, instance: Model, **kwargs: Any) -> None:
    if kwargs.get("raw"):
        return
    # Read now: delete() sets instance.pk to None after post_delete.
    pk = instance.pk
    mark(tables_of_model(sender), using, None if pk is None else {str(pk)})


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
    request_started.connect(_request_started, dispatch_uid="reactive_celery.request_started")
    request_finished.connect(_request_finished, dispatch_uid="reactive_celery.request_finished")


def disconnect() -> None:
    """Disconnect the receivers (tests, or a process that must stay silent)."""
    post_save.disconnect(dispatch_uid="reactive_celery.post_save")
    post_delete.disconnect(dispatch_uid="reactive_celery.post_delete")
    m2m_changed.disconnect(dispatch_uid="reactive_celery.m2m_changed")
    pre_migrate.disconnect(dispatch_uid="reactive_celery.pre_migrate")
    post_migrate.disconnect(dispatch_uid="reactive_celery.post_migrate")
    request_started.disconnect(dispatch_uid="reactive_celery.request_started")
    request_finished.disconnect(dispatch_uid="reactive_celery.request_finished")
