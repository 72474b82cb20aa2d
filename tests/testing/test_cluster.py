"""The cluster helper: three masters on loopback, every slot served, the store's client on it."""

import pytest
from django.test import override_settings
from redis.cluster import RedisCluster

from reactive_celery.store import connection, keys
from reactive_celery.testing import cluster


@pytest.fixture(scope="module")
def nodes():
    started = cluster.start()
    yield started
    started.stop()


def test_three_masters_share_the_slots_and_the_url_names_them(nodes):
    assert len(nodes.ports) == 3
    assert nodes.url == "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in nodes.ports) + "/"


def test_the_store_client_is_a_cluster_client_and_one_observer_script_runs_on_one_slot(
    settings, nodes
):
    with override_settings(REACTIVE_CELERY={**settings.REACTIVE_CELERY, "REDIS_URL": nodes.url}):
        r = connection.client()
        assert isinstance(r, RedisCluster)
        names = [keys.observer("o1"), keys.observer_subscribers("o1"), keys.observer_log("o1")]
        # A multi-key script: without the shared hash tag Redis refuses it (CROSSSLOT).
        script = "redis.call('SET', KEYS[1], 'a'); redis.call('SADD', KEYS[2], 'b');"
        r.eval(script + "return redis.call('LPUSH', KEYS[3], 'c')", 3, *names)
        assert (r.get(names[0]), r.smembers(names[1])) == ("a", {"b"})
        r.delete(*names)
        r.close()


def test_stop_ends_every_node():
    started = cluster.start()
    started.stop()
    assert all(process.poll() is not None for process in started.processes)
