"""Worker-process setup: database connections kept across tasks stay healthy.

With ``CELERY_DB_REUSE_MAX`` (docs/deployment.md) a pool process keeps its
connection for many tasks, and nothing in a worker calls Django's
``close_old_connections``: a connection broken by a database restart would
fail every evaluation until Celery recycles it. Before each task this does the
part of that check which suits a worker: drop a connection that failed and is
no longer usable, and let ``CONN_HEALTH_CHECKS`` test it again on first use.

A pool process leaves through ``os._exit``, past ``atexit``: before it does,
what its tasks' commits handed to the sender thread is sent (``signals.flush``).
"""

from __future__ import annotations

from typing import Any

from celery.signals import task_prerun, worker_process_shutdown
from django.db import connections

from . import signals
from .sending import EXIT_FLUSH_SECONDS

__all__ = ["check_connections", "connect", "send_before_exit"]


def check_connections(**kwargs: Any) -> None:
    """Called before each task: close connections that failed and no longer answer."""
    for conn in connections.all(initialized_only=True):
        if conn.connection is None:
            continue
        # Django resets this per request; per task is a worker's equivalent.
        # (django-stubs does not know the attribute, Django 4.1+ has it.)
        conn.health_check_done = False  # type: ignore[attr-defined]
        if not conn.errors_occurred:
            continue
        if not conn.is_usable():
            conn.close()
        else:
            conn.errors_occurred = False


def send_before_exit(**kwargs: Any) -> None:
    """Called in a pool process about to exit: send what its commits left to the sender."""
    signals.flush(EXIT_FLUSH_SECONDS)


def connect() -> None:
    """Called from ``AppConfig.ready``; connected once however often it is called."""
    task_prerun.connect(check_connections, dispatch_uid="reactive_celery.worker")
    worker_process_shutdown.connect(send_before_exit, dispatch_uid="reactive_celery.worker")
