"""``manage.py reactive_clear [--noinput]``: delete every key under the reactive prefix."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from ...conf import reactive_settings
from ...store import keys
from ...store.connection import client

__all__ = ["BATCH", "Command", "clear"]

#: Keys deleted per round trip.
BATCH = 1000


def clear() -> int:
    """Delete all reactive state (observers, subscribers, schedules, stats); return the count."""
    r = client()
    deleted = 0
    batch: list[str] = []
    for name in r.scan_iter(match=keys.pattern("*"), count=BATCH):
        batch.append(name)
        if len(batch) >= BATCH:
            deleted += r.unlink(*batch)
            batch = []
    if batch:
        deleted += r.unlink(*batch)
    return deleted


class Command(BaseCommand):
    """Drop all reactive state, e.g. during a deploy."""

    help = (
        "Delete every Redis key under the reactive_celery prefix. Open sockets lose "
        "their subscriptions and are closed at their next heartbeat; clients reconnect "
        "and resubscribe. Queued Celery tasks are left and find nothing to do."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """Called by Django to declare the options."""
        parser.add_argument(
            "--noinput",
            "--no-input",
            action="store_false",
            dest="interactive",
            help="Do not ask for confirmation.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Called for ``manage.py reactive_clear``."""
        prefix = reactive_settings.KEY_PREFIX
        if options["interactive"]:
            answer = input(
                f"This deletes every Redis key under {prefix!r}: all observers and "
                f"subscriptions. Type 'yes' to continue: "
            )
            if answer.strip().lower() != "yes":
                # As Django's flush: a cancelled run is not an error.
                self.stdout.write("Cancelled; nothing was deleted.")
                return
        deleted = clear()
        self.stdout.write(f"Deleted {deleted} keys under {prefix!r}.")
