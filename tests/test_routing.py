"""routing.py: the two WebSocket routes resolve to the two consumers."""

import pytest

from reactive_celery.consumers import BatchedConsumer, SubscriberConsumer
from reactive_celery.routing import websocket_urlpatterns


def resolve(path: str):
    """The consumer class and kwargs of the first route matching ``path``, as URLRouter picks."""
    # URLRouter matches the path without its leading slash.
    for route in websocket_urlpatterns:
        match = route.pattern.match(path.lstrip("/"))
        if match:
            _, _, kwargs = match
            return route.callback.consumer_class, kwargs
    return None


def test_the_batched_route_resolves_to_the_batched_consumer():
    assert resolve("/ws/reactive/") == (BatchedConsumer, {})


def test_a_subscriber_id_route_resolves_to_the_seed_consumer_with_the_id():
    assert resolve("/ws/abc-DEF_123") == (SubscriberConsumer, {"subscriber_id": "abc-DEF_123"})


@pytest.mark.parametrize("path", ["/ws/", "/ws/abc12345/", "/ws/abc12345/extra", "/other/abc12345"])
def test_other_paths_resolve_to_no_consumer(path):
    assert resolve(path) is None


def test_exactly_two_routes_are_exported():
    assert [route.callback.consumer_class for route in websocket_urlpatterns] == [
        BatchedConsumer,
        SubscriberConsumer,
    ]
