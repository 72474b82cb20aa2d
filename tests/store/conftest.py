"""The store's tests run twice: on the private single server and on a real 3-master cluster.

One cluster per session (``reactive_celery.testing.cluster``); a test runs on it
with ``REDIS_URL`` pointed there, so every key gets its hash tags and every
script meets Redis Cluster's one-slot rule. Tests of the single-server client
itself (``@pytest.mark.single_server``) and round-trip counts run on one server
only, tests of the cluster's own steps (``@pytest.mark.cluster``) on the cluster only.
"""

import pytest
import redis
from django.conf import settings as django_settings

from reactive_celery.store import connection
from reactive_celery.testing import cluster


def pytest_generate_tests(metafunc):
    """Called per test function: the store's tests get a ``topology`` to run on."""
    if "store_redis" not in metafunc.fixturenames:
        return
    marked = metafunc.definition.get_closest_marker
    if marked("single_server") or "round_trips" in metafunc.fixturenames:
        topologies = ["single"]
    elif marked("cluster"):
        topologies = ["cluster"]  # a guarantee of the cluster's own steps
    else:
        topologies = ["single", "cluster"]
    metafunc.parametrize("topology", topologies, scope="function")


@pytest.fixture(scope="session")
def cluster_nodes():
    """Three cluster masters on loopback, shared by the session's store tests."""
    nodes = cluster.start()
    yield nodes
    nodes.stop()


@pytest.fixture
def store_redis(request, topology, settings):
    """The Redis holding reactive state for this test, flushed after it.

    On the cluster: ``REDIS_URL`` names it for the test, and the client is a
    cluster client (every command routed to the master of its slot).
    """
    if topology == "single":
        client = redis.Redis.from_url(
            django_settings.REACTIVE_CELERY["REDIS_URL"], decode_responses=True
        )
        yield client
        client.flushdb()
        client.close()
        return
    nodes = request.getfixturevalue("cluster_nodes")
    settings.REACTIVE_CELERY = {**settings.REACTIVE_CELERY, "REDIS_URL": nodes.url}
    client = connection.client()
    yield client
    client.flushdb(target_nodes=client.PRIMARIES)
    connection.reset_client()
