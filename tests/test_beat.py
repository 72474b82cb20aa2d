"""Beat's entries: added to every project Celery app, a project's own entry kept."""

from celery import Celery

from reactive_celery import beat
from tests.project.celery_app import app as celery_app


def test_the_project_app_gets_both_beat_entries():
    celery_app.finalize()
    schedule = celery_app.conf.beat_schedule
    assert schedule[beat.POLL]["task"] == "reactive_celery.poll"
    assert schedule[beat.POLL]["schedule"] == 1.0
    assert schedule[beat.SWEEP]["task"] == "reactive_celery.sweep"
    assert schedule[beat.SWEEP]["schedule"] == 30.0
    assert {"reactive_celery.poll", "reactive_celery.sweep"} <= set(celery_app.tasks)


def test_an_entry_the_project_defines_is_kept_and_queue_follows_settings(settings):
    settings.REACTIVE_CELERY = {**settings.REACTIVE_CELERY, "QUEUE": "live"}
    app = Celery("other", set_as_current=False)
    own = {"task": "reactive_celery.poll", "schedule": 2.0, "options": {"queue": "mine"}}
    app.conf.beat_schedule = {beat.POLL: own}
    app.finalize()
    assert app.conf.beat_schedule[beat.POLL] == own
    assert app.conf.beat_schedule[beat.SWEEP]["options"]["queue"] == "live"
