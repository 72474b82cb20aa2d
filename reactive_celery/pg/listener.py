"""LISTEN for the triggers' wake-ups and drain the change log into ``notify()``.

The log, not the notification, is the source of truth: NOTIFY only says "look
now", and is lost while nobody listens. On every (re)connect the listener
LISTENs first and then drains the log, so a write committed while it was down,
or between its LISTEN and its first read, is still seen.

A drain deletes log rows and feeds them on inside one transaction: a listener
killed before it commits leaves the rows for the next drain (at least once:
a change may be fed twice, and evaluations coalesce). ``FOR UPDATE SKIP
LOCKED`` lets two listeners run at once, each row fed by one of them, so a
second listener during a rolling deploy is safe.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import psycopg
from django.apps import apps

from ..signals import flush, notify
from .triggers import CHANNEL, LOG_TABLE, postgres_connection

__all__ = [
    "APPLICATION_NAME",
    "BACKOFF",
    "Feed",
    "BATCH",
    "POLL",
    "Listener",
    "connect",
    "drain",
    "feed",
]

logger = logging.getLogger(__name__)

#: Seconds before each reconnect attempt in a row; the last repeats.
BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
#: The listener's connections' application_name, unless the database's OPTIONS name one.
APPLICATION_NAME = "reactive_listen"
#: Log rows deleted and fed per transaction.
BATCH = 500
#: Seconds between drains without a notification: rows a killed listener left locked, then
#: rolled back, are fed by the other listener within this time.
POLL = 5.0

#: What a drain hands its rows to: a table and its changed keys (None: the whole table).
Feed = Callable[[str, "list[Any] | None"], None]


def feed(table: str, pks: list[Any] | None) -> None:
    """Tell observers of ``table`` that it changed; the one place the listener calls notify."""
    notify(table, pks=pks)


def connect(using: str = "default") -> psycopg.Connection[Any]:
    """A new autocommit psycopg connection with the settings of Django's ``using``."""
    params = postgres_connection(using).get_connection_params()
    # Django's cursor class and adapters are for its own connections; we read text only.
    for key in ("cursor_factory", "context"):
        params.pop(key, None)
    # Operators find the listener in pg_stat_activity by this name.
    params.setdefault("application_name", APPLICATION_NAME)
    return psycopg.connect(**params, autocommit=True)


def drain(conn: psycopg.Connection[Any], on_change: Feed = feed) -> int:
    """Feed every row of the change log to ``on_change`` and delete it; return the rows.

    Rows of one batch are merged per table first: a thousand statements on one
    table cost one call.
    """
    total = 0
    while True:
        with conn.transaction():
            rows = conn.execute(
                f"DELETE FROM {LOG_TABLE} WHERE id IN (SELECT id FROM {LOG_TABLE} "
                "ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING table_name, pks",
                [BATCH],
            ).fetchall()
            for table, pks in _merged(rows).items():
                on_change(table, _typed(table, pks))
            # notify() hands the sends to a thread: they leave before the delete commits.
            flush()
        total += len(rows)
        if len(rows) < BATCH:
            return total


def _merged(rows: list[tuple[str, list[str] | None]]) -> dict[str, set[str] | None]:
    changes: dict[str, set[str] | None] = {}
    for table, pks in rows:
        if table in changes and changes[table] is None:
            continue
        if pks is None:
            changes[table] = None
        else:
            changes.setdefault(table, set()).update(pks)  # type: ignore[union-attr]
    return changes


def _typed(table: str, pks: set[str] | None) -> list[Any] | None:
    """Keys as the model's primary key field reads them (the log holds text)."""
    if pks is None:
        return None
    for model in apps.get_models(include_auto_created=True):
        if model._meta.db_table == table and model._meta.pk is not None:
            return sorted(model._meta.pk.to_python(pk) for pk in pks)
    return sorted(pks)


class Listener:
    """``manage.py reactive_listen``: listen, drain, and reconnect with backoff, forever."""

    def __init__(
        self,
        using: str = "default",
        on_change: Feed = feed,
        poll: float = POLL,
        on_ready: Callable[[int], None] | None = None,
    ) -> None:
        self.using = using
        self.on_change = on_change
        self.poll = poll
        #: Called after each (re)connect's catch-up with the rows it drained.
        self.on_ready = on_ready
        self.failures = 0
        self._stopping = threading.Event()

    def stop(self) -> None:
        """Ask ``run()`` to return, within ``poll`` seconds; called from another thread."""
        self._stopping.set()

    def run(self) -> None:
        """Serve until ``stop()``; connection failures are retried with backoff."""
        while not self._stopping.is_set():
            try:
                self.serve()
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                # Lost or refused connections; a bug in feeding still ends the process.
                delay = BACKOFF[min(self.failures, len(BACKOFF) - 1)]
                self.failures += 1
                logger.warning(
                    "reactive_listen lost PostgreSQL (%s); reconnecting in %g s",
                    str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                    delay,
                )
                self._stopping.wait(delay)

    def serve(self) -> None:
        """One connection's life: LISTEN, catch up, then drain on every wake-up."""
        with connect(self.using) as conn:
            # LISTEN before the first drain: a commit between the two still wakes us.
            conn.execute(f"LISTEN {CHANNEL}")
            caught_up = drain(conn, self.on_change)
            self.failures = 0
            if self.on_ready is not None:
                self.on_ready(caught_up)
            while not self._stopping.is_set():
                # Any number of queued wake-ups are answered by one drain.
                for _ in conn.notifies(timeout=self.poll, stop_after=1):
                    pass
                drain(conn, self.on_change)
