"""The scrape endpoint: who may read it, what it serves, the store's gauges from real Redis."""

import logging

import pytest
from django.test import RequestFactory
from prometheus_client.parser import text_string_to_metric_families

from reactive_celery import metrics, tasks
from reactive_celery.metrics_view import allowed, metrics_view
from reactive_celery.store import observers, subscribers
from tests.conftest import UNCONSUMED
from tests.processes import free_port

TOKEN = "a-token-of-sixteen-or-more"


def scrape(address: str = "127.0.0.1", **headers: str):
    request = RequestFactory().get("/internal/metrics", REMOTE_ADDR=address, headers=headers)
    return metrics_view(request)


def samples(response) -> dict[tuple[str, tuple], float]:
    text = response.content.decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_a_loopback_scrape_gets_the_process_metrics_and_the_store_gauges(store_redis, broker):
    subscribers.register("sub-a-1234", "chan-a", "")
    observers.save("o1", spec="{}", items=[], meta={}, version=1, tables=["t"], creator="")
    subscribers.subscribe("o1", "sub-a-1234")
    tasks.enqueue_evaluation("o1")
    metrics.frame_sent("seed")

    response = scrape()

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    found = samples(response)
    assert found[("reactive_celery_store_up", ())] == 1
    assert found[("reactive_celery_observers", ())] == 1
    assert found[("reactive_celery_subscribers", ())] == 1
    assert found[("reactive_celery_subscriptions", ())] == 1
    assert found[("reactive_celery_polling_observers", ())] == 0
    assert found[("reactive_celery_queue_depth", (("queue", UNCONSUMED),))] == 1
    assert found[("reactive_celery_frames_sent_total", (("protocol", "seed"),))] >= 1


def test_an_openmetrics_scraper_gets_openmetrics(store_redis):
    response = scrape(Accept="application/openmetrics-text; version=1.0.0")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.decode().endswith("# EOF\n")


def test_another_address_is_refused_with_one_log_line(caplog):
    caplog.set_level(logging.WARNING, logger="reactive_celery")
    response = scrape("203.0.113.9")
    assert response.status_code == 403
    assert "METRICS_ALLOWED_IPS" in response.content.decode()
    (record,) = caplog.records
    assert "203.0.113.9" in record.getMessage()
    assert record.exc_info is None


def test_a_bearer_token_admits_any_address_and_a_wrong_one_nothing(settings, store_redis):
    settings.REACTIVE_CELERY = {**settings.REACTIVE_CELERY, "METRICS_TOKEN": TOKEN}
    assert scrape("203.0.113.9", Authorization=f"Bearer {TOKEN}").status_code == 200
    assert scrape("203.0.113.9", Authorization="Bearer wrong-token").status_code == 403
    assert scrape("203.0.113.9", Authorization=TOKEN).status_code == 403


@pytest.mark.parametrize(
    ("address", "admitted"),
    [("10.1.2.3", True), ("11.0.0.1", False), ("127.0.0.1", False), ("not-an-ip", False)],
)
def test_allowed_ips_take_networks(settings, address, admitted):
    settings.REACTIVE_CELERY = {**settings.REACTIVE_CELERY, "METRICS_ALLOWED_IPS": ["10.0.0.0/8"]}
    request = RequestFactory().get("/internal/metrics", REMOTE_ADDR=address)
    assert allowed(request) is admitted


def test_only_get_is_answered():
    request = RequestFactory().post("/internal/metrics", REMOTE_ADDR="127.0.0.1")
    assert metrics_view(request).status_code == 405


def test_metrics_off_is_a_404_that_names_the_setting(settings):
    settings.REACTIVE_CELERY = {**settings.REACTIVE_CELERY, "METRICS": False}
    response = scrape()
    assert response.status_code == 404
    assert "REACTIVE_CELERY['METRICS']" in response.content.decode()


def test_an_unreachable_store_is_store_up_0_and_one_log_line(settings, caplog):
    caplog.set_level(logging.WARNING, logger="reactive_celery")
    settings.REACTIVE_CELERY = {
        **settings.REACTIVE_CELERY,
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
    }
    response = scrape()
    assert response.status_code == 200
    found = samples(response)
    assert found[("reactive_celery_store_up", ())] == 0
    assert ("reactive_celery_observers", ()) not in found
    (record,) = caplog.records
    assert "could not read the reactive store" in record.getMessage()
