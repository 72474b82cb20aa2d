"""The process-wide Redis client: built lazily, reset on setting_changed; Redis's clock."""

import pytest
from django.test import override_settings

from reactive_celery.exceptions import ConfigurationError
from reactive_celery.store import connection


def test_the_client_is_shared_and_talks_to_the_configured_database(store_redis):
    assert connection.client() is connection.client()
    connection.client().set("rc:probe", "1")
    assert store_redis.get("rc:probe") == "1"


def test_changing_the_redis_setting_drops_the_client(settings, store_redis):
    before = connection.client()
    url = settings.REACTIVE_CELERY["REDIS_URL"]
    with override_settings(
        REACTIVE_CELERY={**settings.REACTIVE_CELERY, "REDIS_URL": url[:-1] + "4"}
    ):
        other = connection.client()
        assert other is not before
        assert other.connection_pool.connection_kwargs["db"] == 4
    after = connection.client()
    assert after is not other and after.connection_pool.connection_kwargs["db"] == 0


def test_an_unrelated_setting_keeps_the_client():
    before = connection.client()
    with override_settings(USE_I18N=False):
        assert connection.client() is before


def test_the_fallback_redis_url_setting_resets_it_too(settings):
    before = connection.client()
    reactive = {k: v for k, v in settings.REACTIVE_CELERY.items() if k != "REDIS_URL"}
    with override_settings(
        REACTIVE_CELERY=reactive, REDIS_URL=settings.REDIS_URL.rstrip("/") + "/5"
    ):
        assert connection.client().connection_pool.connection_kwargs["db"] == 5
    assert connection.client() is not before


def test_no_redis_url_is_a_configuration_error_naming_both_settings(settings):
    reactive = {k: v for k, v in settings.REACTIVE_CELERY.items() if k != "REDIS_URL"}
    with (
        override_settings(REACTIVE_CELERY=reactive, REDIS_URL=None),
        pytest.raises(ConfigurationError, match=r"REACTIVE_CELERY\['REDIS_URL'\] or REDIS_URL"),
    ):
        connection.client()


def test_now_ms_is_redis_clock_in_milliseconds(store_redis):
    seconds, micros = store_redis.time()
    before = seconds * 1000 + micros // 1000
    now = connection.now_ms()
    seconds, micros = store_redis.time()
    assert before <= now <= seconds * 1000 + micros // 1000
