"""``manage.py reactive_listen``: feed PostgreSQL's change log to the observers."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...exceptions import ConfigurationError
from ...pg import triggers
from ...pg.listener import Listener

__all__ = ["Command"]


class Command(BaseCommand):
    """Run the listener of the ``triggers`` change source until stopped."""

    help = (
        "LISTEN for the reactive triggers' notifications and feed each change to the "
        "observers, catching up on whatever committed while no listener ran. Reconnects "
        "with backoff; safe to run twice. Install the triggers first (reactive_triggers "
        "install, or --install)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """Called by Django to declare the options."""
        parser.add_argument("--database", default="default", help="Database alias to listen on.")
        parser.add_argument(
            "--install",
            action="store_true",
            help="Install (or refresh) the triggers on every observed table before listening.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Called for ``manage.py reactive_listen``."""
        using = options["database"]
        try:
            if options["install"]:
                tables = triggers.install(triggers.observed_tables(), using)
                self.stdout.write(f"Triggers installed on {len(tables)} tables.")
            elif not triggers.installed_tables(using):
                raise CommandError(
                    f"No reactive triggers on database {using!r}: run "
                    "'manage.py reactive_triggers install' (or reactive_listen --install)."
                )
        except ConfigurationError as exc:
            raise CommandError(str(exc)) from None

        def ready(caught_up: int) -> None:
            self.stdout.write(f"Listening on {triggers.CHANNEL!r}; caught up {caught_up} changes.")
            self.stdout.flush()

        Listener(using, on_ready=ready).run()
