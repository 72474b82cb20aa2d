import os

import redis
from celery import Celery
from celery.signals import worker_process_init
from django.conf import settings
from django.db.backends.signals import connection_created

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.project.settings")

app = Celery("tests")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

#: Redis database 3 of the test run's server: a counter per worker process that
#: opened a database connection, read by tests/e2e/test_connections.py.
CONNECTIONS_DB = 3


def connections_opened_key(process: str) -> str:
    """The counter of database connections opened by a worker's pool processes."""
    return f"test:db-connections:{process}"


def _count_connection(**kwargs) -> None:
    client = redis.Redis.from_url(f"{settings.REDIS_URL.rstrip('/')}/{CONNECTIONS_DB}")
    try:
        client.incr(connections_opened_key(os.environ.get("REACTIVE_TEST_PROCESS", "")))
    finally:
        client.close()


@worker_process_init.connect
def _count_connections_in_pool_processes(**kwargs) -> None:
    connection_created.connect(_count_connection)
