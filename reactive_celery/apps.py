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
        from .conf import load_settings

        # With triggers every write reaches observers through reactive_listen: receivers
        # too would notify each ORM write twice. Bad settings are the system checks' to report.
        if load_settings()[0]["CHANGE_SOURCE"] != "triggers":
            signals.connect()
        identity.connect()
        beat.install()
        metrics.connect()
        worker.connect()
