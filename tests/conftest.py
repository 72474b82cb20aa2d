"""Fixtures shared by every test: a clean reactive store, broker and layer after each test."""

import asyncio
import base64
import json
import os
from collections import Counter

import pytest
import redis
from asgiref.sync import async_to_sync
from channels_redis.core import RedisChannelLayer
from django.conf import settings
from django.core.management import call_command
from redis.cluster import RedisCluster

from reactive_celery import fanout
from reactive_celery.pg import triggers
from reactive_celery.testing import cluster, sentinel


def pytest_collection_modifyitems(config, items):
    """Deselect tests marked for the other database cell: that cell runs them, and a skip
    would count as missing. In the postgres cell a missing server fails them (noxfile.py)."""
    other = "sqlite" if os.environ.get("REACTIVE_DATABASE", "sqlite") == "postgres" else "postgres"
    kept = [item for item in items if item.get_closest_marker(other) is None]
    if len(kept) < len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in kept])
        items[:] = kept


@pytest.fixture
def watched(transactional_db):
    """PostgreSQL triggers on the test app's tables for one test, removed after."""
    tables = triggers.install(triggers.observed_tables(["testapp"]))
    yield tables
    call_command("reactive_triggers", "remove")


@pytest.fixture
def store_redis():
    """The Redis database holding reactive state, flushed after the test."""
    from reactive_celery import signals

    client = redis.Redis.from_url(settings.REACTIVE_CELERY["REDIS_URL"], decode_responses=True)
    yield client
    signals.flush(10)  # nothing the test committed may land after the flush
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def cluster_nodes():
    """A 3-master Redis Cluster on loopback, shared by the session (reactive_celery.testing)."""
    nodes = cluster.start()
    yield nodes
    nodes.stop()


@pytest.fixture
def cluster_store(cluster_nodes, settings):
    """The reactive store on the cluster for one test: its cluster client, flushed after.

    Broker and channel layer stay on the private server, as in a cluster deployment.
    """
    from reactive_celery.store import connection

    settings.REACTIVE_CELERY = {**settings.REACTIVE_CELERY, "REDIS_URL": cluster_nodes.url}
    client = connection.client()
    yield client
    client.flushdb(target_nodes=client.PRIMARIES)
    connection.reset_client()


#: The queue evaluate tasks go to in tests that read the broker: no worker consumes it,
#: so the session's end-to-end workers cannot take messages before the test reads them.
UNCONSUMED = "reactive-unconsumed"


class Broker:
    """The Celery broker's Redis database, as kombu's Redis transport fills it."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def messages(self, queue: str = UNCONSUMED) -> list[dict]:
        """The task messages waiting in ``queue``, oldest first, bodies decoded.

        What this process's commits handed to the sender thread is sent first.
        """
        from reactive_celery import signals

        assert signals.flush(10), "the sender thread did not finish within 10 s"
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

    def receive_at_hub(self, timeout: float = 10) -> dict:
        """The next message to the process hub of this channel, where subscribes steer it."""

        async def receive() -> dict:
            hub = fanout.hub_channel(self.channel)
            return await asyncio.wait_for(self.layer.receive(hub), timeout)

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
def no_cached_probes():
    """Each test builds its probes afresh, as a new worker process would."""
    from reactive_celery import dispatch, probing

    probing.clear()
    dispatch.forget()
    yield
    probing.clear()
    dispatch.forget()


@pytest.fixture(autouse=True)
def no_retry_left_behind():
    """Sends and enqueue retries pending in this process must not fire into the next test."""
    yield
    from reactive_celery import signals

    signals.flush(10)
    retry = signals._retry
    if retry.timer is not None:
        retry.timer.cancel()
    retry.after_fork()  # forget what is pending, as a fresh process would


class CountingConnection(redis.Connection):
    """A real Redis connection that counts its writes per node: one per command or pipeline."""

    sent: Counter[str] = Counter()

    def send_packed_command(self, command, check_health=True):
        CountingConnection.sent[f"{self.host}:{self.port}"] += 1
        super().send_packed_command(command, check_health)


class RoundTrips:
    """The round trips the package has made to its Redis since the fixture began.

    ``round_trips()`` counts them all; ``round_trips.per_node()`` by node, named
    ``host:port`` as redis-py's cluster nodes are (``ClusterNode.name``).
    """

    def __call__(self) -> int:
        return CountingConnection.sent.total()

    def per_node(self) -> Counter[str]:
        """A copy: subtract an earlier one to get what a step sent where."""
        return Counter(CountingConnection.sent)


@pytest.fixture
def round_trips(store_redis):
    """Counts the round trips the package makes to its Redis, on one server or a cluster.

    The package's client is swapped for one of the same topology whose
    connections count; ``store_redis`` still reads the same Redis uncounted.
    """
    from reactive_celery.store import connection

    topology = connection.parse_url(settings.REACTIVE_CELERY["REDIS_URL"])
    if topology.kind == "cluster":
        # One node is enough to find the others. from_url, because only then do the
        # node clients get pools built with the connection_class (Redis() refuses one).
        host, port = topology.hosts[0]
        counted = RedisCluster.from_url(
            f"redis://{host}:{port}/",
            password=topology.password,
            decode_responses=True,
            connection_class=CountingConnection,
        )
    else:
        counted = redis.Redis.from_url(
            topology.url, connection_class=CountingConnection, decode_responses=True
        )
    # Not monkeypatch: pytest-django's autouse fixtures take it first, so it undoes
    # last and would bring the cluster client back after cluster_store dropped it.
    connection._client = counted
    CountingConnection.sent = Counter()
    yield RoundTrips()
    connection.reset_client()
    counted.close()


@pytest.fixture
def sentinel_group():
    """A master, its replica and three sentinels on loopback (reactive_celery.testing.sentinel)."""
    group = sentinel.start()
    yield group
    group.stop()
