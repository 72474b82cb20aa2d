"""The REACTIVE_CELERY settings dict: defaults, validation, reload."""

import pytest
from django.test import override_settings

from reactive_celery.conf import DEFAULTS, reactive_settings
from reactive_celery.exceptions import ConfigurationError


def test_defaults_apply_to_missing_keys():
    assert DEFAULTS["KEY_PREFIX"] == reactive_settings.KEY_PREFIX


def test_override_settings_reloads():
    with override_settings(REACTIVE_CELERY={"REDIS_URL": "redis://x/0", "KEY_PREFIX": "other"}):
        assert reactive_settings.KEY_PREFIX == "other"
    assert reactive_settings.KEY_PREFIX == "rc"


def test_unknown_key_names_the_key():
    with (
        override_settings(REACTIVE_CELERY={"KEY_PREFX": "x"}),
        pytest.raises(ConfigurationError, match="KEY_PREFX"),
    ):
        _ = reactive_settings.KEY_PREFIX


@pytest.mark.parametrize("value", [0, -1, "10", True, None])
def test_numbers_must_be_positive(value):
    with (
        override_settings(REACTIVE_CELERY={"SUBSCRIBER_TTL": value}),
        pytest.raises(ConfigurationError, match="SUBSCRIBER_TTL"),
    ):
        _ = reactive_settings.SUBSCRIBER_TTL


@pytest.mark.parametrize("value", [-1, float("nan"), "5", True, None])
def test_the_probe_cache_takes_zero_or_more_seconds(value):
    with (
        override_settings(REACTIVE_CELERY={"PROBE_CACHE_SECONDS": value}),
        pytest.raises(ConfigurationError, match=r"PROBE_CACHE_SECONDS.*>= 0"),
    ):
        _ = reactive_settings.PROBE_CACHE_SECONDS
    with override_settings(REACTIVE_CELERY={"PROBE_CACHE_SECONDS": 0}):
        assert reactive_settings.PROBE_CACHE_SECONDS == 0


def test_heartbeat_must_be_shorter_than_subscriber_ttl():
    with (
        override_settings(REACTIVE_CELERY={"SUBSCRIBER_TTL": 10, "HEARTBEAT_INTERVAL": 10}),
        pytest.raises(ConfigurationError, match="HEARTBEAT_INTERVAL"),
    ):
        _ = reactive_settings.HEARTBEAT_INTERVAL


def test_redis_url_falls_back_to_django_setting():
    with override_settings(REACTIVE_CELERY={}, REDIS_URL="redis://fallback:1/0"):
        assert reactive_settings.REDIS_URL == "redis://fallback:1/0"


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError):
        _ = reactive_settings.NOT_A_SETTING


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("METRICS", "yes", "True or False"),
        ("METRICS_ALLOWED_IPS", "10.0.0.0/8", "list of addresses"),
        ("METRICS_ALLOWED_IPS", ["10.0.0.0/8", "intranet"], "'intranet'"),
        ("METRICS_TOKEN", "short", "at least 16"),
        ("METRICS_TOKEN", 1234567890123456, "at least 16"),
    ],
)
def test_metrics_settings_are_validated(key, value, message):
    with (
        override_settings(REACTIVE_CELERY={key: value}),
        pytest.raises(ConfigurationError, match=f"{key}.*{message}"),
    ):
        _ = reactive_settings.METRICS


def test_metrics_are_on_for_loopback_scrapers_by_default():
    assert reactive_settings.METRICS is True
    assert reactive_settings.METRICS_ALLOWED_IPS == ["127.0.0.1", "::1"]
    assert reactive_settings.METRICS_TOKEN is None


def test_change_source_is_signals_or_triggers():
    with (
        override_settings(REACTIVE_CELERY={"CHANGE_SOURCE": "wal"}),
        pytest.raises(ConfigurationError, match=r"'CHANGE_SOURCE'\] must be one of signals, "),
    ):
        _ = reactive_settings.CHANGE_SOURCE
    with override_settings(REACTIVE_CELERY={"CHANGE_SOURCE": "triggers"}):
        assert reactive_settings.CHANGE_SOURCE == "triggers"


@pytest.mark.parametrize("key", ["PRECISE_INVALIDATION", "SEND_IN_BACKGROUND"])
@pytest.mark.parametrize("value", [1, "yes", None])
def test_switches_must_be_a_bool(key, value):
    with (
        override_settings(REACTIVE_CELERY={key: value}),
        pytest.raises(ConfigurationError, match=rf"{key}'\] must be True or False, got"),
    ):
        getattr(reactive_settings, key)


@pytest.mark.parametrize("key", ["PRECISE_INVALIDATION", "SEND_IN_BACKGROUND"])
def test_switches_are_on_by_default(key):
    assert getattr(reactive_settings, key) is True
