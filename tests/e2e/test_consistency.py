"""After writes stop, every client's list equals a fresh GET: under load and under faults.

Seeded and reproducible: writer processes make random creates, updates, moves,
filter crossings and signal-less bulk updates while 60 clients with random
filters follow over the batched protocol, across two ASGI servers.
"""

import random
import signal
import subprocess
import sys

import pytest

from tests import processes
from tests.e2e.consistency import ConsistentClient, assert_converged, quiet
from tests.testapp.models import Item

pytestmark = [pytest.mark.e2e]

SEED = 1127
URLS = [
    "/api/items/",
    "/api/items/?enabled=True",
    "/api/items/?enabled=False",
    "/api/items/?ordering=name",
    "/api/items/?ordering=-position",
    "/api/items/?enabled=True&ordering=position",
    "/api/limited/?limit=5",
    "/api/limited/?limit=5&offset=5",
    "/api/paged/?page=1",
    "/api/detailed/",
]


def start_clients(live, count, rng):
    ports = live.cluster["ports"]
    clients = [ConsistentClient(rng.choice(ports), rng.choice(URLS)) for _ in range(count)]
    for client in clients:
        client.start()
    for client in clients:
        assert client.ready.wait(30), client.url
    return clients


def run_writers(count, operations, seed):
    writers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.writer", str(seed + i), str(operations)],
            cwd=processes.ROOT,
        )
        for i in range(count)
    ]
    return writers


def wait_all(writers):
    for writer in writers:
        assert writer.wait(180) == 0


@pytest.fixture
def clients(live):
    started = []
    yield started
    for client in started:
        client.stop()


def test_random_writes_converge_for_every_client(live, clients):
    rng = random.Random(SEED)
    for i in range(10):
        Item.objects.create(name=f"seed-{i}", position=i, enabled=i % 2 == 0)
    clients += start_clients(live, 60, rng)
    wait_all(run_writers(3, 60, SEED))
    quiet(live.redis, clients)
    assert_converged(live.http(), clients)
    assert sum(len(c.items) for c in clients) > 0


def test_worker_killed_mid_evaluation_loses_nothing(live, clients, spawn):
    """Killed as it takes a message from the broker, a worker loses it for good: kombu
    records it unacked only after the pop. The sweep finds the change it carried."""
    spawn(processes.celery_beat, "killed", env={"REACTIVE_TEST_SWEEP_INTERVAL": "2"})
    rng = random.Random(SEED + 1)
    clients += start_clients(live, 5, rng)
    slow = ConsistentClient(live.ws_port, "/api/slow/")
    slow.start()
    assert slow.ready.wait(30)
    clients.append(slow)
    Item.objects.create(name="trigger")
    # Kill every worker while the slow evaluation holds its lock, then start fresh ones.
    live.wait_for(lambda: live.redis.keys("rc:lock:*"), timeout=20)
    for worker in live.cluster["workers"]:
        worker.kill()
    Item.objects.create(name="while no worker runs")
    live.cluster["workers"][:] = [processes.celery_worker(f"w{i}r") for i in range(2)]
    quiet(live.redis, clients, timeout=120)
    assert_converged(live.http(), clients)
    assert [i["name"] for i in slow.items] == ["trigger", "while no worker runs"]


def test_asgi_server_restart_clients_reconnect_and_resume(live, clients):
    rng = random.Random(SEED + 2)
    clients += start_clients(live, 20, rng)
    writers = run_writers(2, 30, SEED + 2)
    server = live.cluster["servers"][0]
    port = live.cluster["ports"][0]
    server.kill()
    live.cluster["servers"][0] = processes.asgi_server(port)
    wait_all(writers)
    quiet(live.redis, clients)
    assert_converged(live.http(), clients)
    assert any(c.reconnects for c in clients if c.port == port)


def test_dropped_sockets_reconnect_and_converge(live, clients):
    rng = random.Random(SEED + 3)
    clients += start_clients(live, 20, rng)
    writers = run_writers(2, 30, SEED + 3)
    for client in clients[::2]:
        client.drop()
    wait_all(writers)
    quiet(live.redis, clients)
    assert_converged(live.http(), clients)
    assert all(c.reconnects for c in clients[::2])


def test_redis_restart_clients_converge(live, clients, redis_restarter):
    rng = random.Random(SEED + 4)
    for i in range(5):
        Item.objects.create(name=f"before-{i}")
    clients += start_clients(live, 10, rng)
    redis_restarter()
    live.redis.connection_pool.disconnect()
    for i in range(5):
        Item.objects.create(name=f"after-{i}")
    quiet(live.redis, clients, timeout=120)
    assert_converged(live.http(), clients)


def test_frames_dropped_by_a_full_channel_are_detected_and_refetched(live, clients, spawn):
    """A stalled ASGI process whose channel is full loses frames; clients see the gap.

    The sender's capacity decides: the only worker here runs with capacity 1.
    """
    for worker in live.cluster["workers"]:
        worker.kill()
    try:
        spawn(processes.celery_worker, "tiny", env={"REACTIVE_TEST_CAPACITY": "1"})
        port = processes.free_port()
        server = spawn(processes.asgi_server, port)
        started = [ConsistentClient(port, "/api/items/?ordering=name") for _ in range(5)]
        for client in started:
            client.start()
        for client in started:
            assert client.ready.wait(30)
        clients += started
        observer = started[0].observer

        def version():
            return int(live.redis.hget(f"rc:obs:{observer}", "version"))

        before = version()
        server.popen.send_signal(signal.SIGSTOP)
        try:
            for i in range(4):  # one diff fits the stalled process's channel; the rest drop
                Item.objects.create(name=f"while stalled {i}")
                live.wait_for(lambda i=i: version() == before + i + 1)
        finally:
            server.popen.send_signal(signal.SIGCONT)
        Item.objects.create(name="after")
        quiet(live.redis, clients)
        assert_converged(live.http(), clients)
        assert all(c.gaps > 0 for c in started), [c.gaps for c in started]
    finally:
        live.cluster["workers"][:] = [processes.celery_worker(f"w{i}b") for i in range(2)]
