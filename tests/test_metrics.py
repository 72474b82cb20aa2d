"""The metrics each engine event records, against the real Redis and prometheus-client.

Values are read from prometheus-client's default registry as deltas, since the
registry lives as long as the test process. The multiprocess mode runs in
child processes sharing one directory, as prefork workers and ASGI servers do;
tests/e2e/test_metrics.py scrapes a real worker and server.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from reactive_celery import metrics, observer, signals
from reactive_celery.metrics_view import StoreCollector
from reactive_celery.spec import ObserverSpec
from reactive_celery.store import observers
from tests.processes import ROOT
from tests.testapp.models import Item

DASHBOARD = ROOT / "docs" / "grafana" / "reactive_celery.json"


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def item_observer() -> str:
    spec = ObserverSpec.build(
        view="tests.testapp.views.ItemViewSet",
        action="list",
        path="/api/items/",
        query=[],
        kwargs={},
        user=None,
        host="testserver",
        secure=False,
        primary_key="id",
    )
    observers.save(
        spec.id, spec=spec.to_json(), items=[], meta={}, tables=[], creator="", version=1
    )
    return spec.id


@pytest.fixture(autouse=True)
def single_process():
    # The unit tests read this process's registry; the multiprocess ones start children.
    assert not metrics.multiprocess_dir()


@pytest.mark.django_db
def test_a_committed_change_is_counted_timed_and_measured_to_its_push(store_redis, broker):
    oid = item_observer()
    observer.evaluate(oid)  # stores its dependency on testapp_item
    before = {
        "changed": value("reactive_celery_evaluations_total", outcome="changed"),
        "timed": value("reactive_celery_evaluation_seconds_count"),
        "latency": value("reactive_celery_commit_to_push_seconds_count"),
    }
    Item.objects.create(name="a")
    assert signals.enqueue_dependents({"testapp_item"}) == [oid]
    assert store_redis.exists(f"rc:committed:{oid}")

    assert observer.evaluate(oid) is True

    assert value("reactive_celery_evaluations_total", outcome="changed") == before["changed"] + 1
    assert value("reactive_celery_evaluation_seconds_count") == before["timed"] + 1
    assert value("reactive_celery_commit_to_push_seconds_count") == before["latency"] + 1
    assert not store_redis.exists(f"rc:committed:{oid}")  # taken by the evaluation


def test_the_earliest_commit_is_kept_until_an_evaluation_takes_it(store_redis):
    metrics.committed(["o1"])
    first = float(store_redis.get("rc:committed:o1"))
    metrics.committed(["o1", "o2"])
    assert float(store_redis.get("rc:committed:o1")) == first
    assert 0 < store_redis.ttl("rc:committed:o1") <= metrics.COMMIT_STAMP_TTL
    assert metrics.commit_time("o1") == first
    # A change committed while that evaluation runs stamps the rerun.
    assert metrics.commit_time("o1") is None
    metrics.committed(["o1"])
    assert metrics.commit_time("o1") >= first


def test_unchanged_and_dropped_evaluations_push_nothing_so_no_latency():
    latency = value("reactive_celery_commit_to_push_seconds_count")
    unchanged = value("reactive_celery_evaluations_total", outcome="unchanged")
    dropped = value("reactive_celery_evaluations_total", outcome="dropped")
    metrics.evaluated(3, 3, 0.0, committed=1.0)
    metrics.evaluated(3, None, 0.0, committed=1.0)
    assert value("reactive_celery_evaluations_total", outcome="unchanged") == unchanged + 1
    assert value("reactive_celery_evaluations_total", outcome="dropped") == dropped + 1
    assert value("reactive_celery_commit_to_push_seconds_count") == latency


def test_a_stopped_observer_is_an_outcome_and_an_error_by_code(store_redis):
    outcome = value("reactive_celery_evaluations_total", outcome="gone")
    errors = value("reactive_celery_errors_total", source="observer", code="gone")
    observer.stop(item_observer(), "gone", "Its view moved.")
    assert value("reactive_celery_evaluations_total", outcome="gone") == outcome + 1
    assert value("reactive_celery_errors_total", source="observer", code="gone") == errors + 1


def test_socket_frame_layer_and_request_events():
    sockets = value("reactive_celery_sockets")
    frames = value("reactive_celery_frames_sent_total", protocol="batched")
    layer = value("reactive_celery_channel_layer_errors_total")
    refused = value("reactive_celery_errors_total", source="request", code="bad_json")
    metrics.socket_opened()
    metrics.socket_opened()
    metrics.socket_closed(True)
    metrics.socket_closed(False)  # refused before its handshake: never counted open
    metrics.frame_sent("batched")
    metrics.layer_error()
    metrics.answered({"type": "error", "code": "bad_json", "message": "..."})
    metrics.answered({"type": "subscribed", "observer": "o"})
    assert value("reactive_celery_sockets") == sockets + 1
    assert value("reactive_celery_frames_sent_total", protocol="batched") == frames + 1
    assert value("reactive_celery_channel_layer_errors_total") == layer + 1
    assert value("reactive_celery_errors_total", source="request", code="bad_json") == refused + 1
    metrics.socket_closed(True)


def test_metrics_off_records_nothing_and_writes_no_stamp(settings, store_redis):
    settings.REACTIVE_CELERY = {**settings.REACTIVE_CELERY, "METRICS": False}
    changed = value("reactive_celery_evaluations_total", outcome="changed")
    frames = value("reactive_celery_frames_sent_total", protocol="seed")
    metrics.committed(["o1"])
    metrics.evaluated(1, 2, 0.0, None)
    metrics.frame_sent("seed")
    assert not metrics.enabled()
    assert metrics.commit_time("o1") is None
    assert store_redis.keys("rc:*") == []
    assert value("reactive_celery_evaluations_total", outcome="changed") == changed
    assert value("reactive_celery_frames_sent_total", protocol="seed") == frames


def run_python(code: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.project.settings", **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_without_prometheus_client_every_call_is_a_no_op_and_the_view_says_what_to_install():
    out = run_python(
        "import sys; sys.modules['prometheus_client'] = None\n"
        "import django; django.setup()\n"
        "from django.test import RequestFactory\n"
        "from reactive_celery import metrics\n"
        "from reactive_celery.metrics_view import metrics_view\n"
        "assert not metrics.installed() and not metrics.enabled()\n"
        "metrics.committed(['o']); metrics.evaluated(1, 2, 0.0, None); metrics.stopped('gone')\n"
        "metrics.socket_opened(); metrics.socket_closed(True); metrics.frame_sent('seed')\n"
        "metrics.layer_error(); metrics.answered({'type': 'error', 'code': 'x'})\n"
        "metrics.connect(); metrics.process_exited()\n"
        "response = metrics_view(RequestFactory().get('/metrics'))\n"
        "print(response.status_code, response.content.decode())\n"
    )
    assert out.startswith("501 prometheus-client is not installed")
    assert "reactive-celery[metrics]" in out


def test_processes_sharing_a_directory_are_summed_and_a_dead_ones_sockets_leave(tmp_path):
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    record = (
        "import os, django; django.setup()\n"
        "from reactive_celery import metrics\n"
        "metrics.socket_opened(); metrics.frame_sent('seed'); metrics.frame_sent('seed')\n"
        "print(os.getpid()); os._exit(0)\n"  # killed: no exit hook marks it dead
    )
    pids = [int(run_python(record, env)) for _ in range(2)]
    scrape = (
        "import sys, django; django.setup()\n"
        "from prometheus_client import generate_latest\n"
        "from prometheus_client.multiprocess import MultiProcessCollector\n"
        "from prometheus_client import CollectorRegistry\n"
        "from reactive_celery import metrics\n"
        "if len(sys.argv) > 1: metrics.process_exited(int(sys.argv[1]))\n"
        "registry = CollectorRegistry(); MultiProcessCollector(registry)\n"
        "print(generate_latest(registry).decode())\n"
    )
    text = run_python(scrape, env)
    assert 'reactive_celery_frames_sent_total{protocol="seed"} 4.0' in text
    assert sorted(re.findall(r'reactive_celery_sockets\{pid="(\d+)"\} 1.0', text)) == sorted(
        map(str, pids)
    )
    text = run_python(scrape.replace("sys.argv", f"[0, {pids[0]}]"), env)
    assert re.findall(r'reactive_celery_sockets\{pid="(\d+)"\} 1.0', text) == [str(pids[1])]
    assert 'reactive_celery_frames_sent_total{protocol="seed"} 4.0' in text  # counts stay


def exported_names(families) -> set[str]:
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"], "gauge": [""]}
    return {f.name + suffix for f in families for suffix in suffixes[f.type]}


def dashboard_exprs(node) -> list[str]:
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return found + [e for child in node.values() for e in dashboard_exprs(child)]
    if isinstance(node, list):
        return [e for child in node for e in dashboard_exprs(child)]
    return []


def test_every_dashboard_expr_names_exported_metrics_and_every_metric_has_a_panel(
    store_redis, broker
):
    ours = [f for f in REGISTRY.collect() if f.name.startswith("reactive_celery_")]
    exported = exported_names(ours) | exported_names(StoreCollector().collect())
    exprs = dashboard_exprs(json.loads(Path(DASHBOARD).read_text()))
    assert exprs
    used: set[str] = set()
    for expr in exprs:
        names = set(re.findall(r"\breactive_celery_[a-z_]+", expr))
        assert names, expr
        assert names <= exported, (expr, names - exported)
        used |= names
    families = {f.name for f in ours} | {f.name for f in StoreCollector().collect()}
    unused = {f for f in families if not any(name.startswith(f) for name in used)}
    assert not unused


def test_a_slow_sockets_outbox_records_its_high_water_mark_and_what_it_coalesced():
    from reactive_celery.consumers.outbox import Outbox

    coalesced = value("reactive_celery_frames_coalesced_total")
    box = Outbox(limit=3)
    for version in range(1, 11):
        box.put("a", version, [f"a{version}"])
    # Ten diffs into a limit of three: seven superseded, never more than three waiting.
    assert value("reactive_celery_frames_coalesced_total") == coalesced + box.coalesced
    assert box.coalesced > 0
    peak = value("reactive_celery_outbox_peak_frames")
    assert peak >= 3
    metrics.outbox_filled(int(peak) + 5)
    metrics.outbox_filled(1)  # a high-water mark does not fall
    assert value("reactive_celery_outbox_peak_frames") == peak + 5
