"""Django app config: connects signals, registers checks and Celery tasks."""

from __future__ import annotations

from django.apps import AppConfig


class ReactiveCeleryConfig(AppConfig):
    """``reactive_celery`` in ``INSTALLED_APPS``."""

    name = "reactive_celery"
    verbose_name = "Reactive Celery"

    def ready(self) -> None:
        """Called once Django's apps are loaded."""
        from . import checks, signals, tasks  # noqa: F401  (tasks register with Celery)

        signals.connect()
