"""Commit-time delivery: rollbacks send nothing, a transaction costs one evaluation."""

import subprocess
import sys

import pytest
from django.db import transaction

from tests import processes
from tests.testapp.models import Item

pytestmark = [pytest.mark.e2e]


def test_rollback_pushes_nothing(live):
    sock = live.socket()
    answer = live.observe("/api/items/", sock)
    with pytest.raises(RuntimeError), transaction.atomic():
        Item.objects.create(name="rolled back")
        raise RuntimeError
    sentinel = Item.objects.create(name="sentinel")
    frame = sock.recv()
    assert frame["item"]["id"] == sentinel.pk
    assert frame["version"] == answer["version"] + 1
    assert live.evaluations(answer["observer"]) == 1


def test_savepoint_rollback_then_commit_is_pushed(live):
    sock = live.socket()
    live.observe("/api/items/", sock)
    with transaction.atomic():
        try:
            with transaction.atomic():
                Item.objects.create(name="inner")
                raise RuntimeError
        except RuntimeError:
            pass
        kept = Item.objects.create(name="kept")
    frame = sock.recv()
    assert (frame["msg"], frame["item"]["id"]) == ("added", kept.pk)


def test_500_saves_in_one_transaction_cost_one_evaluation_per_observer(live):
    first, second = live.socket(), live.socket()
    items_answer = live.observe("/api/items/", first)
    ordered_answer = live.observe("/api/items/?ordering=-id", second)
    with transaction.atomic():
        for i in range(500):
            Item.objects.create(name=f"n{i}")
    assert len(first.recv_many(500)) == 500
    assert len(second.recv_many(500)) == 500
    assert live.evaluations(items_answer["observer"]) == 1
    assert live.evaluations(ordered_answer["observer"]) == 1


def test_write_from_another_process_is_pushed(live):
    sock = live.socket()
    live.observe("/api/items/", sock)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "django",
            "shell",
            "-c",
            "from tests.testapp.models import Item; Item.objects.create(name='from shell')",
        ],
        cwd=processes.ROOT,
        check=True,
        env={**__import__("os").environ, "DJANGO_SETTINGS_MODULE": "tests.project.settings"},
        timeout=60,
    )
    frame = sock.recv()
    assert (frame["msg"], frame["item"]["name"]) == ("added", "from shell")


def test_shared_observer_one_evaluation_three_sockets(live):
    sockets = [live.socket() for _ in range(3)]
    answers = [live.observe("/api/items/?enabled=True", sock) for sock in sockets]
    assert len({a["observer"] for a in answers}) == 1
    item = Item.objects.create(name="shared")
    for sock in sockets:
        frame = sock.recv()
        assert (frame["msg"], frame["item"]["id"]) == ("added", item.pk)
    assert live.evaluations(answers[0]["observer"]) == 1
