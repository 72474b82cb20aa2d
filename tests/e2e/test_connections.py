"""Database sessions in real workers and ASGI servers: kept across tasks, pooled per server."""

import os

import pytest
import redis
from django.conf import settings
from django.db import connection

from tests.project.celery_app import CONNECTIONS_DB, connections_opened_key
from tests.testapp.models import Item

pytestmark = [pytest.mark.e2e]

#: The session's workers: two, of two pool processes each (tests/e2e/conftest.py).
POOL_PROCESSES = 4
WRITES = 20


def _opened(counters: redis.Redis, cluster: dict) -> int:
    names = [connections_opened_key(worker.name) for worker in cluster["workers"]]
    return sum(int(value or 0) for value in counters.mget(names))


def _sessions() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        return int(cursor.fetchone()[0])


def test_evaluations_in_workers_reuse_their_database_connections(live, cluster):
    counters = redis.Redis.from_url(f"{settings.REDIS_URL.rstrip('/')}/{CONNECTIONS_DB}")
    postgres = connection.vendor == "postgresql"
    sock = live.socket()
    base = live.observe("/api/items/", sock)["version"]
    opened = _opened(counters, cluster)
    sessions = _sessions() if postgres else 0
    for n in range(WRITES):
        Item.objects.create(name=f"item-{n}")
        # One write at a time, so each is its own evaluation in some pool process.
        assert sock.recv()["version"] == base + n + 1
    # Celery's fixup would close the connection around each task: one per evaluation.
    assert _opened(counters, cluster) - opened <= POOL_PROCESSES
    if postgres:
        # The whole database: the workers' sessions, and none per request or task.
        assert _sessions() - sessions <= POOL_PROCESSES
    counters.close()


#: docs/deployment.md's bounded pool for an ASGI server, as tests/project/settings.py
#: reads it.
ASGI_POOL = 3


@pytest.mark.postgres
def test_an_asgi_server_on_the_documented_pool_never_holds_more_connections(
    cluster, transactional_db
):
    """40 concurrent requests to one uvicorn share the pool's connections: no new
    PostgreSQL session per request, never more than ``max_size`` at once."""
    import asyncio

    import httpx

    from tests.processes import asgi_server, free_port

    name = f"reactive-asgi-pool-{os.getpid()}"
    port = free_port()
    server = asgi_server(port, env={"REACTIVE_TEST_PG_POOL": str(ASGI_POOL), "PGAPPNAME": name})
    Item.objects.create(name="pooled")
    seen: set[int] = set()
    most = 0

    def backends() -> list[int]:
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = %s", [name]
                )
                return [row[0] for row in cursor.fetchall()]
        finally:
            connection.close()  # this helper thread's own connection

    async def load() -> list[int]:
        nonlocal most
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            requests = [asyncio.create_task(http.get("/api/items/")) for _ in range(40)]
            while not all(r.done() for r in requests):
                pids = await asyncio.to_thread(backends)
                seen.update(pids)
                most = max(most, len(pids))
                await asyncio.sleep(0.005)
            return [r.result().status_code for r in requests]

    try:
        statuses = asyncio.run(load())
        seen.update(backends())
    finally:
        server.stop()
    assert statuses == [200] * 40
    assert 1 <= most <= ASGI_POOL
    # Each connection served many requests: a per-request connection shows 40 backends.
    assert len(seen) <= ASGI_POOL
