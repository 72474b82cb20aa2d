"""Fixtures shared by every test: a clean reactive store, broker and layer after each test."""

import asyncio
import base64
import json

import pytest
import redis
from asgiref.sync import async_to_sync
from channels_redis.core import RedisChannelLayer
from django.conf import settings

from reactive_celery.testing import sentinel


@pytest.fixture
def store_redis():
    """The Redis database holding reactive state, flushed after the test."""
    client = redis.Redis.from_url(settings.REACTIVE_CELERY["REDIS_URL"], decode_responses=True)
    yield client
    client.flushdb()
    client.close()


#: The queue evaluate tasks go to in tests that read the broker: no worker consumes it,
#: so the session's end-to-end workers cannot take messages before the test reads them.
UNCONSUMED = "reactive-unconsumed"


class Broker:
    """The Celery broker's Redis database, as kombu's Redis transport fills it."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def messages(self, queue: str = UNCONSUMED) -> list[dict]:
        """The task messages waiting in ``queue``, oldest first, bodies decoded."""
        found = []
        for raw in reversed(self.redis.lrange(queue, 0, -1)):  # kombu LPUSHes, workers BRPOP
            message = json.loads(raw)
            args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
            found.append({"headers": message["headers"], "args": args, "kwargs": kwargs})
        return found


@pytest.fixture
def broker(settings):
    """The real broker (Redis db 1 of the private server); evaluate tasks queue apart."""
    settings.REACTIVE_CELERY = {**settings.REACTIVE_CELERY, "QUEUE": UNCONSUMED}
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL, decode_responses=True)
    client.delete(UNCONSUMED)
    yield Broker(client)
    client.delete(UNCONSUMED)
    client.close()


#: What ``Listener.next_after_marker`` sends itself.
MARKER = {"type": "test.marker"}


class Listener:
    """A channel of its own on the real channels_redis layer, as an ASGI process holds one.

    Its own layer instance, as another process would have; the code under test
    sends through the project's configured layer.
    """

    def __init__(self) -> None:
        self.layer = RedisChannelLayer(**settings.CHANNEL_LAYERS["default"]["CONFIG"])
        self.channel = async_to_sync(self.layer.new_channel)()

    def join(self, group: str) -> None:
        async_to_sync(self.layer.group_add)(group, self.channel)

    def receive(self, timeout: float = 10) -> dict:
        """The next message on the channel; fails the test if none comes."""

        async def receive() -> dict:
            return await asyncio.wait_for(self.layer.receive(self.channel), timeout)

        return async_to_sync(receive)()

    def next_after_marker(self) -> dict:
        """Send a marker to this channel and return what arrives first.

        The marker is sent after whatever the test did, so receiving it first
        proves nothing was pushed before it, with no waiting on a clock. (A
        receive that times out would leave the layer's buffer on a closed loop.)
        """
        async_to_sync(self.layer.send)(self.channel, MARKER)
        return self.receive()

    def close(self) -> None:
        async_to_sync(self.layer.flush)()


@pytest.fixture
def listener():
    """A channel on the real layer; the layer's Redis database is flushed after the test."""
    channel = Listener()
    yield channel
    channel.close()


@pytest.fixture(autouse=True)
def no_retry_left_behind():
    """An enqueue retry pending in this process must not fire into the next test."""
    yield
    from reactive_celery import signals

    retry = signals._retry
    if retry.timer is not None:
        retry.timer.cancel()
    retry.after_fork()  # forget what is pending, as a fresh process would


@pytest.fixture
def sentinel_group():
    """A master, its replica and three sentinels on loopback (reactive_celery.testing.sentinel)."""
    group = sentinel.start()
    yield group
    group.stop()
