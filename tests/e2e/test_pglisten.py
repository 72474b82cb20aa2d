"""Writes from outside Django's signals reach sockets through triggers and reactive_listen.

Each test runs the listener as its own process beside the cluster's workers
and servers; the writes come from psql, ``QuerySet.update()`` and
``bulk_create()``, none of which sends a Django signal.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings

from reactive_celery import signals
from tests import processes
from tests.testapp.models import Item

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

PSQL = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"


@pytest.fixture
def listen(watched, spawn):
    """Start a listener process (the triggers are installed first)."""

    def start(name: str = "a") -> processes.Process:
        return spawn(processes.reactive_listener, name)

    return start


def psql(sql: str) -> None:
    db = settings.DATABASES["default"]
    assert Path(PSQL).exists(), "psql is needed beside the PostgreSQL server"
    subprocess.run(
        [
            PSQL,
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            db["HOST"],
            "-p",
            str(db["PORT"]),
            "-U",
            db["USER"],
            "-d",
            db["NAME"],
            "-c",
            sql,
        ],
        check=True,
        env={**os.environ, "PGPASSWORD": db["PASSWORD"]},
        capture_output=True,
    )


def names(answer_or_list) -> list[str]:
    return [item["name"] for item in answer_or_list]


def test_a_row_changed_by_psql_reaches_the_socket(live, listen):
    item = Item.objects.create(name="before")
    listen()
    sock = live.socket()
    live.observe("/api/items/", sock)
    psql(f"UPDATE testapp_item SET name = 'from psql' WHERE id = {item.pk}")
    frame = sock.recv()
    assert (frame["msg"], frame["item"]["id"], frame["item"]["name"]) == (
        "changed",
        item.pk,
        "from psql",
    )


def test_queryset_update_and_bulk_create_reach_the_socket(live, listen):
    listen()
    sock = live.socket()
    base = live.observe("/api/items/", sock)["version"]
    a, b = Item.objects.bulk_create([Item(name="a"), Item(name="b")])
    frames = sock.recv_many(2)
    assert [(f["msg"], f["item"]["name"]) for f in frames] == [("added", "a"), ("added", "b")]
    Item.objects.filter(pk__in=[a.pk, b.pk]).update(enabled=False)
    frames = sock.recv_many(2)
    assert {(f["msg"], f["item"]["id"], f["item"]["enabled"]) for f in frames} == {
        ("changed", a.pk, False),
        ("changed", b.pk, False),
    }
    assert frames[-1]["version"] > base


def test_a_killed_listener_misses_nothing_committed_while_it_was_down(live, listen):
    listener = listen("first")
    sock = live.socket()
    live.observe("/api/items/", sock)
    Item.objects.bulk_create([Item(name="seen live")])
    assert sock.recv()["item"]["name"] == "seen live"

    listener.kill()  # SIGKILL: no goodbye, its LISTEN ends with its connection
    Item.objects.bulk_create([Item(name="while down 1")])
    psql("INSERT INTO testapp_item (name, enabled, position) VALUES ('while down 2', true, 0)")
    Item.objects.filter(name="seen live").update(name="renamed while down")

    restarted = listen("second")
    assert "caught up 3 changes" in restarted.output()
    # Every client ends equal to a fresh GET.
    expected = names(live.http().get("/api/items/").json())
    assert expected == ["renamed while down", "while down 1", "while down 2"]
    state: dict[int, str] = {}
    while sorted(state.values()) != sorted(expected):
        frame = sock.recv()
        if frame["msg"] == "removed":
            state.pop(frame["item"]["id"], None)
        else:
            state[frame["item"]["id"]] = frame["item"]["name"]


def test_with_receivers_off_orm_saves_still_arrive_through_the_listener(live, listen):
    # CHANGE_SOURCE = "triggers" leaves the receivers off in every process; here, this one.
    listen()
    sock = live.socket()
    base = live.observe("/api/items/", sock)["version"]
    signals.disconnect()
    try:
        item = Item.objects.create(name="saved")
        item.name = "saved again"
        item.save()
    finally:
        signals.connect()
    frames = [sock.recv()]
    while frames[-1]["item"]["name"] != "saved again":
        frames.append(sock.recv())
    assert frames[0]["msg"] == "added"
    assert [f["version"] for f in frames] == list(range(base + 1, base + 1 + len(frames)))
