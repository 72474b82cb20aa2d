"""Fixtures shared by every test: a clean reactive store after each test."""

import pytest
import redis
from django.conf import settings


@pytest.fixture
def store_redis():
    """The Redis database holding reactive state, flushed after the test."""
    client = redis.Redis.from_url(settings.REACTIVE_CELERY["REDIS_URL"], decode_responses=True)
    yield client
    client.flushdb()
    client.close()
