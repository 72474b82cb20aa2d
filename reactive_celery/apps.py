"""Django app config: connects signals, registers checks and Celery tasks."""

from __future__ import annotations

from django.apps import AppConfig

__all__ = ["ReactiveCeleryConfig"]


class ReactiveCeleryConfig(AppConfig):
    """``reactive_celery`` in ``INSTALLED_APPS``."""

    name = "reactive_celery"
    verbose_name = "Reactive Celery"

    def ready(self) -> None:
        """Called once Django's apps are loaded."""
        # Importing the task modules registers their tasks with Celery.
        from . import beat, checks, identity, metrics, signals, tasks, worker  # noqa: F401

        signals.connect()
        identity.connect()
        beat.install()
        metrics.connect()
        worker.connect()
