"""What ``reactive_status`` collects and renders; the queue depth read from the real broker.

The end-to-end status tests (tests/e2e/test_status.py) run the command against a cluster.
"""

import json
import re

import pytest

from reactive_celery import status, tasks
from reactive_celery.invalidation import FIELD
from reactive_celery.store import keys, observers, schedule, stats, subscribers
from tests.conftest import UNCONSUMED
from tests.project.celery_app import app as celery_app


def some_state() -> None:
    for sid in ("sub-a-1234", "sub-b-1234"):
        subscribers.register(sid, f"chan-{sid}", "")
    for oid in ("o1", "o2"):
        spec = '{"view": "app.views.V"}'
        observers.save(oid, spec=spec, items=[], meta={}, version=1, tables=["t"], creator="")
    subscribers.subscribe("o1", "sub-a-1234")
    subscribers.subscribe("o1", "sub-b-1234")
    subscribers.subscribe("o2", "sub-a-1234")
    schedule.schedule("o2", 5)


def test_collect_counts_the_state_and_the_queue(store_redis, broker):
    some_state()
    for elapsed in (0.010, 0.020, 0.030):
        stats.record_evaluation(elapsed)
    stats.record_error("o2", "gone", "its view moved")
    tasks.enqueue_evaluation("o1")
    tasks.enqueue_evaluation("o2")
    data = status.collect()
    assert data["prefix"] == "rc"
    assert (data["observers"], data["subscribers"], data["subscriptions"], data["polling"]) == (
        2,
        2,
        3,
        1,
    )
    assert data["queue"] == {"name": UNCONSUMED, "depth": 2}
    assert data["evaluations"] == 3
    assert data["evaluation_ms"] == {"samples": 3, "p50": 20.0, "p99": 30.0}
    (error,) = data["errors"]
    assert (error["observer"], error["view"], error["code"]) == ("o2", "app.views.V", "gone")


def test_collect_and_render_show_how_observers_are_invalidated(store_redis, broker):
    some_state()
    store_redis.hset("rc:obs:o1", FIELD, json.dumps({"table": "t", "reason": ""}))
    store_redis.hset("rc:obs:o2", FIELD, json.dumps({"table": "", "reason": "paginated"}))
    store_redis.set(keys.stats_skipped(), 7)
    store_redis.set(keys.stats_dispatches(), 2)
    store_redis.set(keys.stats_probes(), 3)
    found = status.collect()["invalidation"]
    assert found == {
        "enabled": True,
        "precise": 1,
        "table_level": {"paginated": 1},
        "undecided": 0,
        "skipped": 7,
        "dispatches": 2,
        "probe_queries": 3,
    }
    lines = status.render(status.collect()).splitlines()
    assert [tuple(re.split(r"\s{2,}", line.strip())) for line in lines[-6:]] == [
        ("precise observers", "1"),
        ("not decided yet", "0"),
        ("evaluations left out", "7"),
        ("probe dispatches", "2"),
        ("probe queries", "3"),
        ("table-level: paginated", "1"),
    ]


def test_an_empty_store_and_a_queue_never_declared(store_redis, broker):
    data = status.collect()
    assert (data["observers"], data["subscribers"], data["subscriptions"], data["polling"]) == (
        0,
        0,
        0,
        0,
    )
    assert data["queue"] == {"name": UNCONSUMED, "depth": 0}
    assert data["evaluation_ms"] == {"samples": 0, "p50": None, "p99": None}


def test_queue_depth_reads_the_configured_queue(broker, settings):
    settings.REACTIVE_CELERY = {**settings.REACTIVE_CELERY, "QUEUE": "live"}
    tasks.enqueue_evaluation("o1")
    assert status.queue_depth() == {"name": "live", "depth": 1}


@pytest.fixture
def unreachable_broker():
    before = celery_app.conf.broker_read_url
    celery_app.conf.broker_read_url = "redis://127.0.0.1:1/1"
    yield
    celery_app.conf.broker_read_url = before


def test_an_unreachable_broker_has_an_unknown_depth(unreachable_broker):
    assert status.queue_depth() == {"name": "celery", "depth": None}


def test_render_shows_every_row_and_the_errors(store_redis, broker):
    some_state()
    stats.record_evaluation(0.0125)
    long_id = "0123456789abcdef" * 4
    spec = '{"view": "app.views.V"}'
    observers.save(long_id, spec=spec, items=[], meta={}, version=1, tables=[], creator="")
    stats.record_error(long_id, "timeout", "too slow")
    observers.drop(long_id)
    text = status.render(status.collect())
    lines = text.splitlines()
    assert lines[0] == "Reactive state under prefix 'rc'"
    rows = [tuple(re.split(r"\s{2,}", line.strip())) for line in lines[1:9]]
    assert rows == [
        ("observers", "2"),
        ("subscribers", "2"),
        ("subscriptions", "3"),
        ("polling observers", "1"),
        (f"queue '{UNCONSUMED}'", "0"),
        ("evaluations", "1"),
        ("evaluation p50", "12.5 ms"),
        ("evaluation p99", "12.5 ms (last 1)"),
    ]
    assert lines[9] == "Last errors (1)"
    when, code, observer, view, error = re.split(r"Z?\s{2,}", lines[10].strip(), maxsplit=4)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", when)
    assert (code, observer, view, error) == ("timeout", "0123456789ab", "app.views.V", "too slow")
    assert lines[11] == "Precise invalidation (on)"
    assert len(lines) == 17


def test_render_says_unknown_and_dashes_when_nothing_is_known():
    data = {
        "prefix": "rc",
        "observers": 0,
        "subscribers": 0,
        "subscriptions": 0,
        "polling": 0,
        "queue": {"name": UNCONSUMED, "depth": None},
        "evaluations": 0,
        "evaluation_ms": {"samples": 0, "p50": None, "p99": None},
        "errors": [],
    }
    lines = status.render(data).splitlines()
    assert lines[5].endswith("unknown")
    assert lines[7].endswith("-") and lines[8].endswith("- (last 0)")
    assert lines[-1] == "Last errors (0)"


def test_collect_counts_the_state_of_a_cluster_on_every_master(cluster_store, broker):
    some_state()
    data = status.collect()
    assert (data["observers"], data["subscribers"], data["subscriptions"], data["polling"]) == (
        2,
        2,
        3,
        1,
    )
