"""The channel layer sharded over two Redis servers: a change reaches every socket on both.

channels_redis places each group and each process channel on one of its
``hosts`` by a hash of the name. Two ASGI servers and two workers of their own
share a layer over two servers; sockets on both servers follow observers whose
groups land on either shard, and one write reaches all of them.
"""

from __future__ import annotations

import httpx
import pytest
import redis

from reactive_celery.testing import redis_server
from tests import processes
from tests.e2e.conftest import Socket

pytestmark = [pytest.mark.e2e]

URLS = [
    "/api/items/",
    "/api/items/?ordering=position",
    "/api/items/?ordering=-position",
    "/api/items/?ordering=name",
    "/api/items/?enabled=True",
    "/api/items/?enabled=True&ordering=position",
]

#: A queue of their own: the session's workers send through the unsharded layer.
QUEUE = "reactive-sharded"


@pytest.fixture
def shards():
    started = [redis_server.start() for _ in range(2)]
    yield [url for _, url in started]
    for process, _ in started:
        redis_server.stop_process(process)


def test_a_change_reaches_every_socket_on_both_servers_over_both_shards(
    shards, spawn, transactional_db, store_redis
):
    env = {
        "REACTIVE_TEST_LAYER_HOSTS": ",".join(f"{url}/2" for url in shards),
        "REACTIVE_TEST_QUEUE": QUEUE,
    }
    for name in ("shard-a", "shard-b"):
        spawn(processes.celery_worker, name, concurrency=1, env=env, queue=QUEUE)
    ports = [processes.free_port() for _ in range(2)]
    for port in ports:
        spawn(processes.asgi_server, port, env=env)

    sockets, clients = [], [httpx.Client(base_url=f"http://127.0.0.1:{p}") for p in ports]
    try:
        # Each URL on both servers; subscribed over HTTP through the other server.
        for index, port in enumerate(ports):
            for url in URLS:
                sock = Socket(port)
                sockets.append(sock)
                separator = "&" if "?" in url else "?"
                answer = clients[1 - index].get(f"{url}{separator}observe={sock.id}")
                assert answer.status_code == 200, answer.text
                assert answer.json()["items"] == []

        layer_keys = []
        for url in shards:
            with redis.Redis.from_url(f"{url}/2") as shard:
                layer_keys.append(len(shard.keys("asgi:group:*")))
        assert all(layer_keys), layer_keys  # both shards hold groups of these observers

        created = clients[0].post("/api/items/", json={"name": "n", "enabled": True})
        assert created.status_code == 201, created.text
        for sock in sockets:
            frame = sock.recv()
            assert (frame["msg"], frame["item"]["id"]) == ("added", created.json()["id"])
    finally:
        for sock in sockets:
            sock.close()
        for client in clients:
            client.close()
