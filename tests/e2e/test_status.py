"""``manage.py reactive_status`` reports what a test created on the real cluster."""

import io
import json
import re
import secrets

import pytest
from django.core.management import call_command

from reactive_celery import tasks
from tests.project.celery_app import app as celery_app
from tests.testapp.models import Item

pytestmark = [pytest.mark.e2e]

#: A queue no worker consumes, so enqueued tasks stay countable.
IDLE_QUEUE = "reactive-idle"


def status(*args: str) -> str:
    out = io.StringIO()
    call_command("reactive_status", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def idle_queue():
    yield IDLE_QUEUE
    with celery_app.connection_for_write() as conn:
        conn.default_channel.queue_purge(IDLE_QUEUE)


def test_status_json_reports_the_numbers_the_test_created(live, settings, idle_queue):
    a, b = live.socket(), live.socket()
    items = live.observe("/api/items/", a)["observer"]
    live.observe("/api/items/", b)
    live.observe(f"/api/ticks/?name={secrets.token_hex(6)}", a)  # polling; no beat runs
    for name in ("x", "y", "z"):
        Item.objects.create(name=name)
        assert a.recv()["item"]["name"] == b.recv()["item"]["name"] == name

    # An observer whose view raises stops with "error" at its next evaluation.
    c = live.socket()
    broken = live.observe("/api/exploding/", c)["observer"]
    Item.objects.create(name="explode")  # a change for /api/items/, a raise for /api/exploding/
    error = c.recv()
    assert (error["msg"], error["observer"], error["code"]) == ("error", broken, "error")
    live.wait_for(lambda: live.evaluations(items) == 4)

    settings.REACTIVE_CELERY = {**settings.REACTIVE_CELERY, "QUEUE": idle_queue}
    for _ in range(3):
        tasks.enqueue_evaluation("0" * 64)

    data = json.loads(status("--json"))
    assert {k: data[k] for k in ("observers", "subscribers", "subscriptions", "polling")} == {
        "observers": 2,
        "subscribers": 3,
        "subscriptions": 3,
        "polling": 1,
    }
    assert data["queue"] == {"name": idle_queue, "depth": 3}
    assert data["evaluations"] == 4  # four changes; the raising evaluation is not counted
    timing = data["evaluation_ms"]
    assert timing["samples"] == 4
    assert 0 < timing["p50"] <= timing["p99"]
    assert [(e["observer"], e["code"], e["view"]) for e in data["errors"]] == [
        (broken, "error", "tests.testapp.security_views.ExplodingViewSet")
    ]

    table = status()
    assert re.search(r"^  polling observers +1$", table, re.M)
    assert re.search(rf"^  queue '{idle_queue}' +3$", table, re.M)
    assert "error" in table and broken[:12] in table
