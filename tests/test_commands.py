"""``reactive_clear`` and ``reactive_status`` against the real Redis."""

import io
import json
import os
import subprocess
import sys

from django.core.management import call_command

from reactive_celery.store import observers, schedule, subscribers
from tests.processes import ROOT


def some_state() -> None:
    subscribers.register("sub12345", "chan", "")
    observers.save("o1", spec="{}", items=[], meta={}, version=1, tables=["t"], creator="")
    subscribers.subscribe("o1", "sub12345")
    schedule.schedule("o1", 5)


def manage(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "tests.project.settings",
    }
    return subprocess.run(
        [sys.executable, "-m", "django", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )


def test_clear_noinput_deletes_every_key_under_the_prefix_only(store_redis):
    some_state()
    store_redis.set("unrelated:key", "kept")
    out = io.StringIO()
    call_command("reactive_clear", "--noinput", stdout=out)
    assert "Deleted 6 keys under 'rc'" in out.getvalue()
    assert store_redis.keys("*") == ["unrelated:key"]


def test_clear_asks_first_and_anything_but_yes_keeps_the_state(store_redis):
    some_state()
    before = sorted(store_redis.keys("*"))
    result = manage("reactive_clear", stdin="no\n")
    assert result.returncode == 0, result.stderr
    assert "Type 'yes' to continue" in result.stdout
    assert "Cancelled" in result.stdout
    assert sorted(store_redis.keys("*")) == before
    result = manage("reactive_clear", stdin="yes\n")
    assert result.returncode == 0, result.stderr
    assert store_redis.keys("rc:*") == []


def test_status_counts_state_without_a_cluster(store_redis):
    some_state()
    out = io.StringIO()
    call_command("reactive_status", "--json", stdout=out)
    data = json.loads(out.getvalue())
    assert (data["observers"], data["subscribers"], data["subscriptions"], data["polling"]) == (
        1,
        1,
        1,
        1,
    )
    assert data["evaluations"] == 0
    assert data["evaluation_ms"] == {"samples": 0, "p50": None, "p99": None}
    assert data["errors"] == []
    assert data["queue"]["name"] == "celery"
    assert isinstance(data["queue"]["depth"], int)


def test_clear_deletes_the_state_on_every_master_of_a_cluster(cluster_store):
    some_state()
    for sid in ("sub-b-1234", "sub-c-1234", "sub-d-1234"):  # ids whose keys hash apart
        subscribers.register(sid, "chan", "")
    masters = {cluster_store.get_node_from_key(name).name for name in all_keys(cluster_store)}
    assert len(masters) > 1
    out = io.StringIO()
    call_command("reactive_clear", "--noinput", stdout=out)
    assert "Deleted 9 keys under 'rc'" in out.getvalue()
    assert all_keys(cluster_store) == []


def all_keys(store) -> list[str]:
    return sorted(store.scan_iter("*"))
