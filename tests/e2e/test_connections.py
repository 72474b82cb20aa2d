"""Database sessions in real workers: each pool process keeps one across evaluations."""

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
