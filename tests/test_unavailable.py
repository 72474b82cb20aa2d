"""A dead Redis: subscribing answers 503 clearly; writes still succeed."""

import logging

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from reactive_celery import signals
from tests.testapp.models import Item

DEAD = {"REDIS_URL": "redis://127.0.0.1:1/0"}


@pytest.mark.django_db(transaction=True)
def test_subscribe_with_redis_down_is_503():
    with override_settings(REACTIVE_CELERY=DEAD):
        response = APIClient().get("/api/items/?observe=subscriber123")
    assert response.status_code == 503
    assert "unavailable" in response.json()["detail"]


@pytest.mark.django_db(transaction=True)
def test_unsubscribe_with_redis_down_is_503():
    with override_settings(REACTIVE_CELERY=DEAD):
        response = APIClient().post(
            "/api/queryobserver/unsubscribe?observer=abc&subscriber=subscriber123"
        )
    assert response.status_code == 503


@pytest.mark.django_db(transaction=True)
def test_write_with_redis_down_commits_and_logs(caplog):
    with override_settings(REACTIVE_CELERY=DEAD), caplog.at_level(logging.ERROR):
        Item.objects.create(name="still saved")
        signals.flush()  # the sender thread reads the settings when it sends
    assert Item.objects.filter(name="still saved").exists()
    assert "could not queue evaluations" in caplog.text
