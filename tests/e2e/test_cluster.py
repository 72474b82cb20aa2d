"""The store on a real 3-master Redis Cluster, across real processes.

A worker, a beat and two ASGI servers of their own keep the store on the
cluster (``redis+cluster://``); the broker and the channel layer stay on the
plain Redis, as they must (kombu and channels_redis do not speak Cluster).
This test process writes to the same store. Observe, per-user, polling, the
sweep, resume and a worker killed mid-evaluation, each once: the rest of the
suite covers their details on one server, and ``tests/store`` runs every
store operation on a cluster.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User

from reactive_celery.store import connection, keys
from reactive_celery.testing import cluster as redis_cluster
from tests import processes
from tests.e2e.conftest import Live, check_resume
from tests.testapp.models import Item

# The store's topology does not depend on the database: the sqlite cell runs these
# (about 35 s), the postgres cell deselects them. tests/store runs on the cluster in both.
pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.sqlite]

#: The queue of these processes: the suite's own workers do not take their tasks.
QUEUE = "reactive-cluster"
#: A sweep each second; the slow view (1.5 s) fits a 2 s limit, so a lock lives 7 s;
#: a killed worker's task comes back from the broker only after 300 s.
ENV = {
    "REACTIVE_TEST_QUEUE": QUEUE,
    "REACTIVE_TEST_SWEEP_INTERVAL": "1",
    "REACTIVE_TEST_TIME_LIMIT": "2",
    "REACTIVE_TEST_VISIBILITY_TIMEOUT": "300",
}
#: The sweep test's server: subscribers live 2 s unless renewed.
SHORT_LIVED = {"REACTIVE_TEST_SUBSCRIBER_TTL": "2", "REACTIVE_TEST_HEARTBEAT": "0.5"}


@pytest.fixture(scope="module")
def deployment(django_db_setup, django_db_blocker) -> Iterator[dict]:
    """The cluster, then a worker, two ASGI servers and a beat with the store on it."""
    nodes = redis_cluster.start()
    env = {**ENV, "REACTIVE_TEST_STORE_URL": nodes.url}
    running: dict = {"nodes": nodes, "env": env, "workers": [], "servers": [], "ports": []}
    try:
        running["workers"].append(processes.celery_worker("cluster", env=env, queue=QUEUE))
        running["ports"] += [processes.free_port() for _ in range(2)]
        running["servers"] += [processes.asgi_server(p, env=env) for p in running["ports"]]
        running["beat"] = processes.celery_beat("cluster", env=env)
        yield running
    finally:
        for process in [*running["workers"], *running["servers"], running.get("beat")]:
            if process is not None:
                process.stop()
        nodes.stop()


@pytest.fixture
def on_cluster(deployment, transactional_db, settings) -> Iterator[Live]:
    """This process's store on the cluster too; the cluster flushed after the test."""
    settings.REACTIVE_CELERY = {
        **settings.REACTIVE_CELERY,
        "REDIS_URL": deployment["nodes"].url,
        "QUEUE": QUEUE,
        "EVALUATION_TIME_LIMIT": 2.0,
    }
    store = connection.client()
    harness = Live(deployment, store)
    yield harness
    harness.close()
    store.flushdb(target_nodes=store.PRIMARIES)
    connection.reset_client()


def reactive_keys(store) -> set[str]:
    """Every key under the prefix, on every master (SCAN goes to each)."""
    return set(store.scan_iter(match=keys.pattern("*"), count=1000))


def test_a_change_reaches_the_socket_and_the_store_is_the_cluster(on_cluster):
    sock = on_cluster.socket()
    answer = on_cluster.observe("/api/items/", sock)
    oid = answer["observer"]
    store = on_cluster.redis
    assert store.exists(keys.observer(oid)) and "{" in keys.observer(oid)
    assert oid in store.smembers(keys.dependents("testapp_item"))

    Item.objects.create(name="through the cluster")
    frame = sock.recv()
    assert (frame["msg"], frame["item"]["name"]) == ("added", "through the cluster")
    assert frame["version"] == answer["version"] + 1
    # The ASGI servers wrote to the cluster, not to the plain Redis beside it.
    assert keys.subscriber(sock.id) in reactive_keys(store)


def test_two_users_get_their_own_results(on_cluster):
    alice = User.objects.create_user("alice")
    bob = User.objects.create_user("bob")
    alice_cookies, bob_cookies = on_cluster.login(alice), on_cluster.login(bob)
    alice_sock, bob_sock = on_cluster.socket(alice_cookies), on_cluster.socket(bob_cookies)
    alice_answer = on_cluster.observe("/api/own/", alice_sock, alice_cookies)
    bob_answer = on_cluster.observe("/api/own/", bob_sock, bob_cookies)
    assert alice_answer["observer"] != bob_answer["observer"]

    Item.objects.create(name="a1", owner=alice)
    Item.objects.create(name="b1", owner=bob)
    assert alice_sock.recv()["item"]["name"] == "a1"
    frame = bob_sock.recv()
    assert (frame["item"]["name"], frame["observer"]) == ("b1", bob_answer["observer"])


def test_a_polling_observer_is_polled_by_beat(on_cluster):
    name = secrets.token_hex(6)
    sock = on_cluster.socket()
    answer = on_cluster.observe(f"/api/ticks/?name={name}", sock)
    assert on_cluster.redis.zscore(keys.poll(), answer["observer"]) is not None
    frames = [sock.recv(timeout=10) for _ in range(2)]
    assert [(f["item"]["value"], f["version"]) for f in frames] == [
        (2, answer["version"] + 1),
        (3, answer["version"] + 2),
    ]


def test_resume_gets_the_missing_diffs(on_cluster):
    check_resume(on_cluster, changes=2)


def test_the_state_of_a_killed_server_is_swept_from_every_master(on_cluster, spawn):
    store = on_cluster.redis
    port = processes.free_port()
    server = spawn(processes.asgi_server, port, env={**on_cluster.cluster["env"], **SHORT_LIVED})
    socks = [on_cluster.socket(port=port) for _ in range(3)]
    paths = ["/api/items/", "/api/items/?enabled=True", f"/api/ticks/?name={secrets.token_hex(6)}"]
    observers = {
        on_cluster.observe(path, sock, port=port)["observer"]
        for path, sock in zip(paths, socks, strict=True)
    }
    assert all(store.exists(keys.observer(oid)) for oid in observers)

    server.kill()  # SIGKILL: no socket closes cleanly

    stats = {keys.stats_evaluations(), keys.stats_timings(), keys.stats_errors()}
    on_cluster.wait_for(lambda: not reactive_keys(store) - stats, timeout=20)
    assert store.zcard(keys.poll()) == 0


def test_a_worker_killed_mid_evaluation_is_recovered_by_the_sweep(on_cluster, spawn):
    deployment = on_cluster.cluster
    store = on_cluster.redis
    sock = on_cluster.socket()
    answer = on_cluster.observe("/api/slow/", sock)
    oid = answer["observer"]
    doomed = deployment["workers"].pop()
    try:
        Item.objects.create(name="lost with its worker")
        on_cluster.wait_for(lambda: store.exists(keys.lock(oid)), timeout=20)
        doomed.kill()  # SIGKILL to the process group: parent and pool children
        assert store.exists(keys.starts(oid))
    finally:
        fresh = processes.celery_worker("cluster-fresh", env=deployment["env"], queue=QUEUE)
        deployment["workers"].append(fresh)
    frame = sock.recv(timeout=30)
    assert (frame["msg"], frame["item"]["name"]) == ("added", "lost with its worker")
    assert frame["version"] == answer["version"] + 1
    on_cluster.wait_for(lambda: f"Requeued observer {oid}" in fresh.output(), timeout=5)
