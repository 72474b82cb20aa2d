"""``manage.py reactive_status [--json]``: observers, subscribers, queue, timings, errors."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from ...status import collect, render

__all__ = ["Command"]


class Command(BaseCommand):
    """Print the reactive state of this deployment."""

    help = (
        "Show observers, subscribers, polling observers, the evaluate queue's depth, "
        "evaluation count and p50/p99 time, and the last stopped observers."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """Called by Django to declare the options."""
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")

    def handle(self, *args: Any, **options: Any) -> None:
        """Called for ``manage.py reactive_status``."""
        data = collect()
        if options["json"]:
            self.stdout.write(json.dumps(data, indent=2, sort_keys=True))
        else:
            self.stdout.write(render(data))
