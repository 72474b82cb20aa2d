"""The periodic tasks of reactive_celery, added to ``celery beat`` by the package.

    reactive_celery.poll    every second          enqueue due polling observers
    reactive_celery.sweep   every SWEEP_INTERVAL  remove what dead sockets left

``AppConfig.ready()`` calls ``install()``. ``celery -A proj beat`` sets Django
up while loading its app, then finalizes the app and reads ``beat_schedule``:
the finalize hook puts both entries there in between, so the project's
settings need no ``CELERY_BEAT_SCHEDULE`` lines. An entry the project already
defines under the same name is left as it is (to change its queue, say).
"""

from __future__ import annotations

from typing import Any

from celery import Celery, _state

from .conf import reactive_settings

__all__ = ["POLL", "POLL_EVERY", "SWEEP", "entries", "install"]

POLL = "reactive_celery.poll"
SWEEP = "reactive_celery.sweep"

#: Seconds between poll tasks; polling intervals are whole multiples of it at best.
POLL_EVERY = 1.0


def entries() -> dict[str, dict[str, Any]]:
    """The beat entries, built from the current settings."""
    queue = {"queue": reactive_settings.QUEUE} if reactive_settings.QUEUE else {}
    sweep_every = float(reactive_settings.SWEEP_INTERVAL)
    # A task older than its period is dropped by the worker: after an outage the
    # backlog is one claim, not hundreds (claims are idempotent anyway).
    return {
        POLL: {"task": POLL, "schedule": POLL_EVERY, "options": {"expires": 5.0, **queue}},
        SWEEP: {
            "task": SWEEP,
            "schedule": sweep_every,
            "options": {"expires": sweep_every, **queue},
        },
    }


def _add_entries(app: Celery) -> None:
    # Celery's fallback app (created when no project app is current) never runs beat.
    if app.main == "default":
        return
    schedule = dict(app.conf.beat_schedule or {})
    missing = {name: entry for name, entry in entries().items() if name not in schedule}
    if missing:
        # A new dict: the default beat_schedule object may be shared between apps.
        app.conf.beat_schedule = {**schedule, **missing}


def install() -> None:
    """Called from ``AppConfig.ready()``: add the entries to every Celery app.

    Apps finalized later get them from the finalize hook (as ``shared_task``
    tasks do); apps already finalized get them now.
    """
    _state.connect_on_app_finalize(_add_entries)
    for app in list(_state._get_active_apps()):  # type: ignore[attr-defined]
        if app.finalized:
            _add_entries(app)
