"""``manage.py bench_seed --groups G --rows R``: G x R rows, no signals (bulk_create)."""

from django.core.management.base import BaseCommand

from benchapp.models import Row


class Command(BaseCommand):
    help = "Replace every benchmark row with GROUPS x ROWS fresh ones."

    def add_arguments(self, parser):
        parser.add_argument("--groups", type=int, required=True)
        parser.add_argument("--rows", type=int, required=True)

    def handle(self, *args, groups, rows, **options):
        Row.objects.all().delete()
        Row.objects.bulk_create(
            Row(group=g, label=f"g{g}r{r}") for g in range(groups) for r in range(rows)
        )
