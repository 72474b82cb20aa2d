"""WebSocket consumers: the seed protocol (``ws/<id>``) and the batched one (``ws/reactive/``)."""

from .batched import BatchedConsumer
from .seed import SubscriberConsumer

__all__ = ["BatchedConsumer", "SubscriberConsumer"]
