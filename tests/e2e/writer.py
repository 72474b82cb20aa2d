"""A writer process for the consistency tests: random creates, updates, moves, deletes.

python -m tests.e2e.writer <seed> <operations>
"""

import os
import random
import sys
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.project.settings")

import django  # noqa: E402

django.setup()

from django.db import transaction  # noqa: E402

from tests.testapp.models import Item  # noqa: E402

NAMES = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
]


def main(seed: int, operations: int) -> None:
    rng = random.Random(seed)
    for _ in range(operations):
        pks = list(Item.objects.values_list("pk", flat=True))
        choice = rng.random()
        if choice < 0.35 or len(pks) < 5:
            Item.objects.create(
                name=f"{rng.choice(NAMES)}-{rng.randint(0, 99)}",
                enabled=rng.random() < 0.6,
                position=rng.randint(0, 50),
            )
        elif choice < 0.55:
            Item.objects.filter(pk=rng.choice(pks)).delete()
        elif choice < 0.75:
            item = Item.objects.filter(pk=rng.choice(pks)).first()
            if item:
                item.position = rng.randint(0, 50)  # moves it under ?ordering=position
                item.save()
        elif choice < 0.9:
            item = Item.objects.filter(pk=rng.choice(pks)).first()
            if item:
                item.enabled = not item.enabled  # crosses ?enabled= filters
                item.save()
        else:
            with transaction.atomic():
                # Row locks taken in one order: two batches cannot deadlock on PostgreSQL.
                chosen = sorted(rng.sample(pks, min(3, len(pks))))
                for pk in chosen:
                    Item.objects.filter(pk=pk).update(name=f"batch-{rng.randint(0, 999)}")
                from reactive_celery import notify

                # Half name their rows, as the trigger listener will: precise invalidation.
                notify(Item, pks=chosen if rng.random() < 0.5 else None)
        time.sleep(rng.random() * 0.02)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
