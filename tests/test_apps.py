"""``AppConfig.ready()``: receivers connected, tasks and checks registered, beat entries added."""

from django.apps import apps
from django.core import checks
from django.db.models.signals import m2m_changed, post_delete, post_save

from reactive_celery import beat, signals
from reactive_celery import checks as reactive_checks
from reactive_celery.apps import ReactiveCeleryConfig
from tests.project.celery_app import app as celery_app

SIGNALS = {
    "reactive_celery.post_save": post_save,
    "reactive_celery.post_delete": post_delete,
    "reactive_celery.m2m_changed": m2m_changed,
}


def connected(uid: str) -> int:
    return sum(1 for receiver in SIGNALS[uid].receivers if receiver[0][0] == uid)


def test_the_app_config_is_the_packages():
    config = apps.get_app_config("reactive_celery")
    assert isinstance(config, ReactiveCeleryConfig)
    assert config.verbose_name == "Reactive Celery"


def test_ready_connected_each_receiver_once_even_when_run_again():
    assert all(connected(uid) == 1 for uid in SIGNALS)
    apps.get_app_config("reactive_celery").ready()
    assert [connected(uid) for uid in SIGNALS] == [1, 1, 1]


def test_ready_registered_the_tasks_with_the_project_celery_app():
    names = {"reactive_celery.evaluate", "reactive_celery.poll", "reactive_celery.sweep"}
    assert names <= set(celery_app.tasks)
    assert {beat.POLL, beat.SWEEP} <= set(celery_app.conf.beat_schedule)


def test_ready_registered_the_system_checks():
    registered = checks.registry.registry.get_checks()
    for check in (
        reactive_checks.check_settings,
        reactive_checks.check_channel_layer,
        reactive_checks.check_celery,
    ):
        assert check in registered
    assert checks.run_checks() == []  # the test project is configured as the docs say


def test_with_triggers_as_change_source_ready_leaves_the_receivers_off(settings):
    signals.disconnect()
    try:
        settings.REACTIVE_CELERY = {**settings.REACTIVE_CELERY, "CHANGE_SOURCE": "triggers"}
        apps.get_app_config("reactive_celery").ready()
        assert [connected(uid) for uid in SIGNALS] == [0, 0, 0]
    finally:
        signals.connect()
    assert [connected(uid) for uid in SIGNALS] == [1, 1, 1]
