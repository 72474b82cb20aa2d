"""The store's tests run twice: on the private single server and on a real 3-master cluster.

One cluster per session (``cluster_nodes`` in tests/conftest.py); a test runs on it
with ``REDIS_URL`` pointed there, so every key gets its hash tags and every
script meets Redis Cluster's one-slot rule. Tests of the single-server client
itself (``@pytest.mark.single_server``) and round-trip counts run on one server
only, tests of the cluster's own steps (``@pytest.mark.cluster``, their round-trip
counts among them) on the cluster only.
"""

import pytest
import redis
from django.conf import settings as django_settings


def pytest_generate_tests(metafunc):
    """Called per test function: the store's tests get a ``topology`` to run on."""
    if "store_redis" not in metafunc.fixturenames:
        return
    marked = metafunc.definition.get_closest_marker
    if marked("cluster"):
        topologies = ["cluster"]  # a guarantee of the cluster's own steps
    elif marked("single_server") or "round_trips" in metafunc.fixturenames:
        # A round-trip count holds for one topology: unmarked, it is the single server's.
        topologies = ["single"]
    else:
        topologies = ["single", "cluster"]
    metafunc.parametrize("topology", topologies, scope="function")


@pytest.fixture
def store_redis(request, topology):
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
    yield request.getfixturevalue("cluster_store")
