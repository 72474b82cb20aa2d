"""``manage.py reactive_triggers install|remove|list [labels]``: PostgreSQL change triggers."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...exceptions import ConfigurationError
from ...pg import triggers

__all__ = ["Command"]


class Command(BaseCommand):
    """Install, remove or list the triggers of the ``triggers`` change source."""

    help = (
        "install: create the change log and the statement-level triggers on the observed "
        "tables (every managed model's, or those of the given app labels / app_label.Model); "
        "idempotent, run it after migrations that add tables. remove: drop triggers, "
        "function and change log. list: the tables that carry triggers. PostgreSQL only."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """Called by Django to declare the arguments."""
        parser.add_argument("action", choices=["install", "remove", "list"])
        parser.add_argument("labels", nargs="*", help="App labels or app_label.Model (install).")
        parser.add_argument("--database", default="default", help="Database alias.")

    def handle(self, *args: Any, **options: Any) -> None:
        """Called for ``manage.py reactive_triggers``."""
        using, action = options["database"], options["action"]
        try:
            if action == "install":
                tables = triggers.install(triggers.observed_tables(options["labels"]), using)
                self.stdout.write(f"Triggers installed on {len(tables)} tables.")
            elif options["labels"]:
                raise CommandError(f"'{action}' takes no labels; it acts on every table.")
            elif action == "remove":
                tables = triggers.remove(using)
                self.stdout.write(f"Triggers removed from {len(tables)} tables.")
            else:
                for table in triggers.installed_tables(using):
                    self.stdout.write(table)
        except ConfigurationError as exc:
            raise CommandError(str(exc)) from None
