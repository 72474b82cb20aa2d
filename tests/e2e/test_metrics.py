"""Metrics across processes: a worker and an ASGI server share a PROMETHEUS_MULTIPROC_DIR,
and one scrape of the server's metrics view shows what each of them counted."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests import processes
from tests.testapp.models import Item

pytestmark = [pytest.mark.e2e]

QUEUE = "reactive-metrics"


def scraped(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/internal/metrics")
    assert response.status_code == 200, response.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_one_scrape_shows_the_workers_evaluation_and_the_servers_frames_and_sockets(
    live, spawn, settings, tmp_path
):
    # Only this test's processes write to the directory and consume the queue.
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "REACTIVE_TEST_QUEUE": QUEUE}
    spawn(processes.celery_worker, "metrics", env=env, queue=QUEUE)
    port = processes.free_port()
    server = spawn(processes.asgi_server, port, env=env)
    sock = live.socket(port=port)
    oid = live.observe("/api/items/", sock)["observer"]
    # This process stamps the commit and enqueues where the dedicated worker listens.
    settings.REACTIVE_CELERY = {**settings.REACTIVE_CELERY, "QUEUE": QUEUE}

    Item.objects.create(name="a")
    frame = sock.recv()
    assert (frame["msg"], frame["observer"], frame["item"]["name"]) == ("added", oid, "a")
    batched = live.batched(port=port)
    batched.send_raw("{not json")
    refused = batched.recv()
    assert (refused["type"], refused["code"]) == ("error", "bad_json")

    scrape = live.http(port=port)
    found = scraped(scrape)
    evaluations = {
        labels: count
        for (name, labels), count in found.items()
        if name == "reactive_celery_evaluations_total"
    }
    assert evaluations == {(("outcome", "changed"),): 1}
    assert found[("reactive_celery_evaluation_seconds_count", ())] == 1
    assert found[("reactive_celery_commit_to_push_seconds_count", ())] == 1
    assert found[("reactive_celery_frames_sent_total", (("protocol", "seed"),))] == 1
    pid = str(server.popen.pid)
    assert found[("reactive_celery_frames_sent_total", (("protocol", "batched"),))] == 1
    assert (
        found[("reactive_celery_errors_total", (("code", "bad_json"), ("source", "request")))] == 1
    )
    assert found[("reactive_celery_sockets", (("pid", pid),))] == 2
    assert found[("reactive_celery_observers", ())] == 1
    assert found[("reactive_celery_subscribers", ())] == 2
    assert found[("reactive_celery_store_up", ())] == 1

    sock.close()
    batched.close()
    live.wait_for(lambda: scraped(scrape)[("reactive_celery_sockets", (("pid", pid),))] == 0)
