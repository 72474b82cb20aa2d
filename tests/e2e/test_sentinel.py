"""Store, broker and channel layer behind Redis Sentinel: the master dies, no client ends stale.

One master, one replica and three sentinels on loopback; an ASGI server and a
worker of their own reach all three parts through the sentinels. A writer
keeps changing items over HTTP while the master is SIGKILLed and the sentinels
promote the replica; a write refused during the failover is retried, as a
user would. After the last write every client equals a fresh GET.
"""

from __future__ import annotations

import threading

import httpx
import pytest
from redis.sentinel import Sentinel

from reactive_celery.testing import sentinel
from tests import processes
from tests.e2e.consistency import ConsistentClient, assert_converged, quiet

pytestmark = [pytest.mark.e2e]

URLS = ["/api/items/", "/api/items/?ordering=position", "/api/items/?enabled=True"]


class Writer(threading.Thread):
    """Creates and updates items over HTTP, retrying each write until it is answered."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
        self.written = 0
        self.refused = 0
        self.halt = threading.Event()

    def write(self) -> None:
        n = self.written
        while True:
            try:
                if n % 3 == 2:
                    response = self.http.patch(
                        f"/api/items/{self.last}/", json={"position": 100 - n, "enabled": False}
                    )
                else:
                    response = self.http.post(
                        "/api/items/", json={"name": f"w{n}", "position": n, "enabled": True}
                    )
            except httpx.HTTPError:
                response = None
            if response is not None and response.status_code in (200, 201):
                if n % 3 != 2:
                    self.last = response.json()["id"]
                self.written += 1
                return
            self.refused += 1

    def run(self) -> None:
        while not self.halt.is_set():
            self.write()


class Supervisor(threading.Thread):
    """Starts the worker again whenever it exits, as systemd's Restart=always would.

    Celery's prefork pool can die of a broker connection lost mid-task
    (``Unrecoverable error: UnpicklingError`` from asynpool, seen here in about
    one failover of three) and then linger in warm shutdown; a deployment runs
    workers under a supervisor with a liveness check for that.
    """

    def __init__(self, spawn, env: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.spawn, self.env = spawn, env
        self.worker = spawn(processes.celery_worker, "sentinel", env=env)
        self.restarts = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(0.2):
            if "Unrecoverable error" in self.worker.output():
                self.worker.kill()  # it lingers half a minute in warm shutdown otherwise
            if self.worker.popen.poll() is not None:
                self.restarts += 1
                self.worker = self.spawn(processes.celery_worker, "sentinel", env=self.env)


def wait_for_writes(writer: Writer, count: int) -> None:
    target = writer.written + count
    while writer.written < target and writer.is_alive():
        threading.Event().wait(0.05)


def test_clients_converge_after_the_master_is_killed_and_the_replica_promoted(
    sentinel_group, spawn, transactional_db
):
    group = sentinel_group
    env = {"REACTIVE_TEST_SENTINELS": ",".join(f"{h}:{p}" for h, p in group.addresses)}
    supervisor = Supervisor(spawn, env)
    supervisor.start()
    port = processes.free_port()
    spawn(processes.asgi_server, port, env=env)
    clients = [ConsistentClient(port, url) for url in URLS for _ in range(2)]
    for client in clients:
        client.start()
    for client in clients:
        assert client.ready.wait(30), client.url

    writer = Writer(port)
    writer.write()
    writer.start()
    try:
        wait_for_writes(writer, 10)  # through the first master
        group.kill_master()
        promoted = group.wait_for_failover()
        wait_for_writes(writer, 10)  # through the promoted replica
    finally:
        writer.halt.set()
        writer.join(60)
        writer.http.close()
    assert promoted == ("127.0.0.1", group.replica_port)

    found = Sentinel(group.addresses, socket_timeout=5)
    store = found.master_for(sentinel.MASTER_NAME, db=0, decode_responses=True)
    broker = found.master_for(sentinel.MASTER_NAME, db=1)
    try:
        quiet(store, clients, timeout=150, broker=broker)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20) as http:
            assert_converged(http, clients)
            # Writes on both sides of the failover are in what the clients hold.
            unfiltered = [c for c in clients if c.url == "/api/items/"]
            assert len(unfiltered[0].items) == len(http.get("/api/items/").json()) > 10
    finally:
        supervisor.halt.set()
        supervisor.join(90)
        for client in clients:
            client.stop()
        store.close()
        broker.close()
        for one in found.sentinels:
            one.close()
