"""``manage.py bench_saves --saves N --group G``: time N autocommitted ``save()`` calls.

Scenario (f) runs this under ``benchproject.settings`` and
``benchproject.settings_plain`` (no ``reactive_celery``): the difference is
what the signal path adds to a plain save. Each batch is timed until its
commits were sent: a revision that sends them from a thread of the process
(``signals.flush``) is charged for that thread's work, not only the saves'.
Besides the wall time, the process's CPU time per save (every thread of it):
with a dependent observer its evaluations run meanwhile on the same cores and
slow the loop down; the CPU time is what the save's own path costs.
Prints one JSON object.
"""

import json
import statistics
import time

from django.apps import apps
from django.core.management.base import BaseCommand

from benchapp.models import Row


class Command(BaseCommand):
    help = "Time N save() calls of the rows of one group; print JSON."

    def add_arguments(self, parser):
        parser.add_argument("--saves", type=int, default=2000)
        parser.add_argument("--group", type=int, default=0)
        parser.add_argument("--batches", type=int, default=5)

    def handle(self, *args, saves, group, batches, **options):
        flush = self.flush()
        rows = list(Row.objects.filter(group=group).order_by("id"))
        # Warm up: the connection, prepared paths, the signal path's Redis and broker clients.
        for row in rows[:50]:
            row.save(update_fields=["stamp"])
        flush()
        per_batch = max(1, saves // batches)
        batch_us, batch_cpu_us = [], []
        for b in range(batches):
            started, cpu = time.perf_counter(), time.process_time()
            for i in range(per_batch):
                row = rows[(b * per_batch + i) % len(rows)]
                row.stamp = time.time()
                row.save(update_fields=["stamp"])
            flush()
            batch_us.append((time.perf_counter() - started) / per_batch * 1e6)
            batch_cpu_us.append((time.process_time() - cpu) / per_batch * 1e6)
        self.stdout.write(
            json.dumps(
                {
                    "saves": per_batch * batches,
                    # The median batch: one stall (a checkpoint, another process) moves it less.
                    "us_per_save": round(statistics.median(batch_us), 1),
                    "us_per_save_batches": [round(x, 1) for x in batch_us],
                    "cpu_us_per_save": round(statistics.median(batch_cpu_us), 1),
                }
            )
        )

    def flush(self):
        """What waits for the commits' sends: nothing where they are sent inline."""
        if not apps.is_installed("reactive_celery"):
            return lambda: None
        from reactive_celery import signals

        return getattr(signals, "flush", lambda: None)
