"""System checks name the misconfiguration and the fix."""

from django.test import override_settings

from reactive_celery import checks

REDIS_LAYER = {
    "BACKEND": "channels_redis.core.RedisChannelLayer",
    "CONFIG": {"hosts": [{"address": "redis://x/2", "socket_timeout": None}]},
}


def ids(errors):
    return [e.id for e in errors]


def test_test_project_passes_every_check():
    assert checks.check_settings() == []
    assert checks.check_channel_layer() == []
    assert checks.check_celery() == []


def test_missing_channel_layer_is_e001():
    with override_settings(CHANNEL_LAYERS={}):
        assert ids(checks.check_channel_layer()) == ["reactive_celery.E001"]


def test_in_memory_layer_is_e002():
    layer = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    with override_settings(CHANNEL_LAYERS=layer):
        assert ids(checks.check_channel_layer()) == ["reactive_celery.E002"]


def test_missing_redis_is_e004():
    with override_settings(REACTIVE_CELERY={}, REDIS_URL=None):
        errors = checks.check_settings()
    assert ids(errors) == ["reactive_celery.E004"]
    assert "REDIS_URL" in errors[0].hint


def test_invalid_settings_are_e005():
    with override_settings(REACTIVE_CELERY={"NOPE": 1}):
        assert ids(checks.check_settings()) == ["reactive_celery.E005"]


def test_socket_timeout_left_default_is_e006():
    for host in ({"address": "redis://x/2"}, "redis://x/2"):
        layer = {"default": {**REDIS_LAYER, "CONFIG": {"hosts": [host]}}}
        with override_settings(CHANNEL_LAYERS=layer):
            assert ids(checks.check_channel_layer()) == ["reactive_celery.E006"]
    with override_settings(CHANNEL_LAYERS={"default": REDIS_LAYER}):
        assert checks.check_channel_layer() == []


def test_no_celery_app_is_e003(monkeypatch):
    from celery import _state

    # Pure logic of the check: pretend this process created no Celery app.
    monkeypatch.setattr(_state, "_get_active_apps", lambda: [])
    errors = checks.check_celery()
    assert ids(errors) == ["reactive_celery.E003"]
    assert "celery.py" in errors[0].hint


def test_short_visibility_timeout_is_w001():
    from tests.project.celery_app import app

    saved = app.conf.broker_transport_options
    try:
        app.conf.broker_transport_options = {"visibility_timeout": 5}
        warnings = checks.check_celery()
        assert ids(warnings) == ["reactive_celery.W001"]
        assert "visibility_timeout" in warnings[0].hint
        app.conf.broker_transport_options = {"visibility_timeout": 3600}
        assert checks.check_celery() == []
    finally:
        app.conf.broker_transport_options = saved
