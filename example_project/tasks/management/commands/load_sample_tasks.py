from django.core.management.base import BaseCommand

from tasks.models import Task

SAMPLES = [
    "Open this page in a second window",
    "Run manage.py make_changes --rate 2 --duration 30",
    "Tick a task in the admin",
    "POST a task to /api/tasks/",
    "Try /?done=false&ordering=title",
]


class Command(BaseCommand):
    help = "Create a few sample tasks when there are none."

    def handle(self, *args, **options):
        if Task.objects.exists():
            self.stdout.write("Tasks exist; no samples loaded.")
            return
        # One at a time and oldest first, so the first sample is listed on top.
        for title in reversed(SAMPLES):
            Task.objects.create(title=title)
        self.stdout.write(f"Loaded {len(SAMPLES)} sample tasks.")
