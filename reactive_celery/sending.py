"""A thread of each process that sends what commits wrote, so a commit never waits for Redis.

A commit's callback hands its written tables (and primary keys) to ``Sender``
and returns: the save or request that committed goes on while this process's
sender thread runs the lookup script and sends the evaluate and dispatch tasks
(``signals.enqueue_dependents``). Commits that arrive while a send is under way
are merged into the next one: one script for all of them, with the time of the
first as their commit time. Under a stream of commits the thread starts at most
one send per ``MIN_INTERVAL``, so the commits in between share it; the first
commit after a quiet moment goes at once.

Nothing handed over is dropped by a clean exit: ``flush`` waits until all of it
is sent, and runs at interpreter exit and when a Celery pool process stops
(those leave through ``os._exit``, past ``atexit``). A forked child starts
with nothing pending and no thread; what was pending at the fork is its
parent's to send.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping

__all__ = ["EXIT_FLUSH_SECONDS", "MIN_INTERVAL", "Merge", "Send", "Sender"]

logger = logging.getLogger(__name__)

#: Seconds from the start of one send to the start of the next. A commit in a stream waits
#: up to this long; a loop of 0.5 ms saves then sends one script per 10 commits, not
#: one per commit, and the thread's work no longer slows the loop (Kafka's linger.ms).
MIN_INTERVAL = 0.005

#: How long an exiting process waits for its last sends (a dead Redis must not hang it).
EXIT_FLUSH_SECONDS = 5.0

#: What the sender calls: the tables written, their keys where known, the commit time.
Send = Callable[[dict[str, "set[str] | None"], float], None]

#: Adds one write to the pending ones: (pending, tables, keys or None for whole tables).
Merge = Callable[[dict[str, "set[str] | None"], Iterable[str], "Collection[str] | None"], None]


class Sender:
    """Collects committed writes from any thread and sends them from one of its own."""

    def __init__(self, send: Send, merge: Merge) -> None:
        self._send = send
        self._merge = merge
        self._reset()
        atexit.register(self.flush, EXIT_FLUSH_SECONDS)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._ready = threading.Condition()
        self._pending: dict[str, set[str] | None] = {}
        self._since: float | None = None
        self._busy = False
        self._thread: threading.Thread | None = None

    def submit(self, written: Mapping[str, Collection[str] | None]) -> None:
        """Called by a commit's callback: hand over its writes and return at once."""
        with self._ready:
            for table, rows in written.items():
                self._merge(self._pending, (table,), rows)
            if self._since is None:
                self._since = time.time()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="reactive_celery-sender", daemon=True
                )
                self._thread.start()
            self._ready.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything handed over so far is sent; False if ``timeout`` passed first."""
        with self._ready:
            return self._ready.wait_for(lambda: not self._pending and not self._busy, timeout)

    def _run(self) -> None:
        started = 0.0
        while True:
            with self._ready:
                self._ready.wait_for(lambda: bool(self._pending))
            rest = started + MIN_INTERVAL - time.monotonic()
            if rest > 0:
                time.sleep(rest)  # the commits of this moment join this send
            started = time.monotonic()
            with self._ready:
                written, self._pending = self._pending, {}
                since, self._since = self._since or time.time(), None
                self._busy = True
            try:
                self._send(written, since)
            except Exception:
                # send() keeps and retries what failed; this is a bug in it, not a dead Redis.
                logger.exception("reactive_celery could not send committed writes")
            finally:
                with self._ready:
                    self._busy = False
                    self._ready.notify_all()
