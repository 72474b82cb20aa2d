"""The Prometheus scrape endpoint; mount it where your scraper, and only it, reaches::

    from reactive_celery.metrics_view import metrics_view
    urlpatterns += [path("internal/metrics", metrics_view)]

A scrape is answered when the client address is in ``METRICS_ALLOWED_IPS``
(default: loopback) or it sends ``Authorization: Bearer <METRICS_TOKEN>``;
anything else gets a 403 and one log line. It serves every metric of the
process, or of every process sharing ``PROMETHEUS_MULTIPROC_DIR``, plus the
store's gauges, read from Redis and the broker while it answers.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Iterator

import redis
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from . import metrics, status
from .conf import reactive_settings

try:
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.exposition import choose_encoder
    from prometheus_client.metrics_core import GaugeMetricFamily, Metric
    from prometheus_client.multiprocess import MultiProcessCollector
    from prometheus_client.registry import Collector
except ImportError:  # the metrics extra is optional: the view then says how to install it
    Collector = object  # type: ignore[assignment,misc]

__all__ = ["StoreCollector", "allowed", "metrics_view", "registry"]

logger = logging.getLogger(__name__)


class StoreCollector(Collector):
    """The store's gauges, read when a scrape asks (SCAN: cost grows with the keys)."""

    def collect(self) -> Iterator[Metric]:
        """Called by each scrape: counts from Redis, the queue's depth from the broker."""
        name = metrics.NAMESPACE
        up = GaugeMetricFamily(f"{name}_store_up", "Whether the reactive store answered.")
        try:
            counts = status.count_state()
        except (redis.RedisError, OSError) as exc:
            logger.warning("Metrics scrape could not read the reactive store: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        helps = {
            "observers": "Observers in the store.",
            "subscribers": "Subscribers (open sockets known to the store).",
            "subscriptions": "Subscriptions: subscriber-observer pairs.",
            "polling": "Polling observers.",
        }
        for key, help_text in helps.items():
            suffix = "polling_observers" if key == "polling" else key
            yield GaugeMetricFamily(f"{name}_{suffix}", help_text, value=counts[key])
        queue = status.queue_depth()
        depth = GaugeMetricFamily(
            f"{name}_queue_depth", "Evaluate tasks waiting in the broker.", labels=["queue"]
        )
        if queue["depth"] is not None:
            depth.add_metric([queue["name"]], queue["depth"])
        yield depth


def registry() -> CollectorRegistry:
    """What one scrape collects: this process's metrics or all processes', and the store's."""
    scrape = CollectorRegistry(auto_describe=False)
    if metrics.multiprocess_dir():
        MultiProcessCollector(scrape, metrics.multiprocess_dir())  # type: ignore[no-untyped-call]
    else:
        scrape.register(REGISTRY)
    scrape.register(StoreCollector())
    return scrape


def allowed(request: HttpRequest) -> bool:
    """Whether the request's address is allowed or it carries the metrics token."""
    token = reactive_settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    presented = header[len("Bearer ") :] if header.startswith("Bearer ") else ""
    if token and presented and hmac.compare_digest(presented.encode(), token.encode()):
        return True
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(
        address in ipaddress.ip_network(entry, strict=False)
        for entry in reactive_settings.METRICS_ALLOWED_IPS
    )


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """``GET``: the Prometheus text (or OpenMetrics, as the scraper's Accept asks)."""
    if not metrics.installed():
        return HttpResponse(
            "prometheus-client is not installed: pip install 'reactive-celery[metrics]'.\n",
            status=501,
            content_type="text/plain",
        )
    if not reactive_settings.METRICS:
        return HttpResponse(
            "Metrics are off: REACTIVE_CELERY['METRICS'] is False.\n",
            status=404,
            content_type="text/plain",
        )
    if not allowed(request):
        logger.warning(
            "Refused a metrics scrape from %s: address not in METRICS_ALLOWED_IPS, no valid token",
            request.META.get("REMOTE_ADDR", "?"),
        )
        return HttpResponse(
            "Forbidden: scrape from an address in REACTIVE_CELERY['METRICS_ALLOWED_IPS'] "
            "or send Authorization: Bearer <METRICS_TOKEN>.\n",
            status=403,
            content_type="text/plain",
        )
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(registry()), content_type=content_type)
