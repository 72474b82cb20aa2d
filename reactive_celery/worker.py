"""Worker-process setup: database connections kept across tasks stay healthy.

With ``CELERY_DB_REUSE_MAX`` (docs/deployment.md) a pool process keeps its
connection for many tasks, and nothing in a worker calls Django's
``close_old_connections``: a connection broken by a database restart would
fail every evaluation until Celery recycles it. Before each task this does the
part of that check which suits a worker: drop a connection that failed and is
no longer usable, and let ``CONN_HEALTH_CHECKS`` test it again on first use.
"""

from __future__ import annotations

from typing import Any

from celery.signals import task_prerun
from django.db import connections

__all__ = ["check_connections", "connect"]


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


def connect() -> None:
    """Called from ``AppConfig.ready``; connected once however often it is called."""
    task_prerun.connect(check_connections, dispatch_uid="reactive_celery.worker")
