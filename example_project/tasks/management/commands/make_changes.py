import itertools
import random
import time
from collections import Counter

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from tasks.models import Task

VERBS = ["Write", "Review", "Fix", "Plan", "Test", "Ship", "Sketch", "Measure"]
THINGS = ["the release", "a dashboard", "the login page", "the docs", "a benchmark", "the API"]

#: The board keeps between these many tasks, so it neither empties nor grows.
FEWEST, MOST = 5, 30


class Command(BaseCommand):
    help = (
        "Create, update and delete tasks at a steady rate, each change in its own "
        "transaction, to watch the open pages follow."
    )

    def add_arguments(self, parser):
        parser.add_argument("--rate", type=float, default=2.0, help="changes per second (2)")
        parser.add_argument(
            "--duration", type=float, default=10.0, help="seconds; 0 runs until Ctrl-C (10)"
        )
        parser.add_argument("--seed", type=int, default=None, help="random seed")

    def handle(self, *args, rate, duration, seed, verbosity, **options):
        if rate <= 0:
            raise CommandError("--rate must be a positive number of changes per second.")
        if duration < 0:
            raise CommandError("--duration must be 0 (until Ctrl-C) or a positive number.")
        if settings.PRIVATE_REDIS:
            self.stderr.write(
                "REDIS_URL is not set, so this command started a Redis of its own: a running "
                "demo will not see these changes. Run it as REDIS_URL=<the URL run.py printed> "
                "python manage.py make_changes ..."
            )
        rng = random.Random(seed)
        users = list(get_user_model().objects.all()[:10])
        total = round(rate * duration) if duration else None
        counts = Counter()
        started = time.monotonic()
        try:
            for number in itertools.count():
                if total is not None and number >= total:
                    break
                # Scheduled from the start, so slow changes do not lower the rate.
                time.sleep(max(0.0, started + number / rate - time.monotonic()))
                action, task = self.change(rng, users)
                counts[action] += 1
                if verbosity > 1:
                    self.stdout.write(f"{action} #{task.pk}: {task.title}")
        except KeyboardInterrupt:
            pass
        elapsed = time.monotonic() - started
        self.stdout.write(
            f"{sum(counts.values())} changes in {elapsed:.1f} s: {counts['created']} created, "
            f"{counts['updated']} updated, {counts['deleted']} deleted."
        )

    def change(self, rng, users):
        """Make one change; returns what it did and to which task."""
        count = Task.objects.count()
        if count < FEWEST:
            action = "created"
        elif count >= MOST:
            action = "deleted"
        else:
            action = rng.choice(["created", "updated", "updated", "deleted"])
        task = None if action == "created" else Task.objects.order_by("?").first()
        if task is None:
            action = "created"
            task = Task.objects.create(
                title=f"{rng.choice(VERBS)} {rng.choice(THINGS)}",
                owner=rng.choice([None, *users]),
            )
        elif action == "updated":
            task.done = not task.done
            task.save(update_fields=["done"])
        else:
            pk = task.pk
            task.delete()
            task.pk = pk
        return action, task
