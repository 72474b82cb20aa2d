"""The Celery tasks, their bodies called in process; their messages read from the real broker."""

import pytest

from reactive_celery import tasks
from reactive_celery.store import locks, observers, schedule, subscribers
from tests.project.celery_app import app as celery_app
from tests.test_observer import create, spec_for
from tests.testapp.models import Item


def test_every_task_is_registered_by_name_and_speaks_json():
    names = ("reactive_celery.evaluate", "reactive_celery.poll", "reactive_celery.sweep")
    for name in names:
        registered = celery_app.tasks[name]
        assert registered.serializer == "json" and registered.ignore_result
    assert [t.name for t in (tasks.evaluate, tasks.poll, tasks.sweep)] == list(names)
    evaluate = celery_app.tasks["reactive_celery.evaluate"]
    # A worker killed mid-evaluation gives the message back: the crash cap counts it.
    assert evaluate.acks_late and evaluate.reject_on_worker_lost
    assert evaluate.acks_on_timeout is False


def test_enqueue_evaluation_sends_one_message_with_the_time_limits(broker):
    tasks.enqueue_evaluation("o1")
    (message,) = broker.messages()
    headers = message["headers"]
    assert headers["task"] == "reactive_celery.evaluate"
    assert (message["args"], message["kwargs"]) == (["o1"], {"retry": False})
    assert headers["timelimit"] == [7.0, 5.0]  # hard = soft + 2 s (EVALUATION_TIME_LIMIT 5)
    assert headers["eta"] is None


def test_a_retry_is_sent_with_its_countdown_to_the_configured_queue(broker, settings):
    settings.REACTIVE_CELERY = {**settings.REACTIVE_CELERY, "QUEUE": "live"}
    broker.redis.delete("live")
    tasks.enqueue_evaluation("o1", countdown=3, retry=True)
    assert broker.messages() == []
    (message,) = broker.messages("live")
    broker.redis.delete("live")
    assert message["kwargs"] == {"retry": True}
    assert message["headers"]["eta"] is not None


@pytest.mark.django_db
def test_evaluate_runs_one_evaluation(store_redis, broker):
    oid = create(spec_for())
    Item.objects.create(name="a")
    assert tasks.evaluate(oid) is None
    stored = observers.load(oid)
    assert (stored.evaluations, stored.version, len(stored.items)) == (1, 2, 1)
    assert broker.messages() == []


@pytest.mark.django_db
def test_a_contended_evaluate_sends_its_retry_to_the_broker(store_redis, broker):
    oid = create(spec_for())
    locks.begin(oid, "holder")
    tasks.evaluate(oid)
    (message,) = broker.messages()
    assert (message["args"], message["kwargs"]) == ([oid], {"retry": True})
    assert message["headers"]["eta"] is not None
    assert observers.load(oid).evaluations == 0


def polling(oid: str, interval: float = 5) -> None:
    observers.save(oid, spec="{}", items=[], meta={}, version=1, tables=[], creator="")
    subscribers.register("sub12345", "chan", "")
    subscribers.subscribe(oid, "sub12345")
    schedule.schedule(oid, interval)


def test_poll_enqueues_each_due_observer_and_returns_the_count(store_redis, broker):
    for oid in ("due1", "due2", "later"):
        polling(oid)
    store_redis.zadd("rc:poll", {"due1": 0, "due2": 0})
    assert tasks.poll() == 2
    assert sorted(m["args"][0] for m in broker.messages()) == ["due1", "due2"]
    assert tasks.poll() == 0  # each moved on by its interval
    assert len(broker.messages()) == 2


def test_sweep_returns_what_it_removed(store_redis):
    observers.save("o1", spec="{}", items=[], meta={}, version=1, tables=["t"], creator="")
    subscribers.register("dead-sub-1", "chan", "")
    subscribers.subscribe("o1", "dead-sub-1")
    store_redis.delete("rc:sub:dead-sub-1")  # its socket's key expired long ago
    store_redis.sadd("rc:dep:t", "vanished")
    assert tasks.sweep() == {
        "subscribers": 1,
        "subscriptions": 0,
        "observers": 1,
        "dependencies": 1,
        "polls": 0,
        "rescheduled": 0,
        "requeued": 0,
        "dispatches": 0,
    }
    assert store_redis.keys("rc:*") == []
    assert tasks.sweep() == dict.fromkeys(
        (
            "subscribers",
            "subscriptions",
            "observers",
            "dependencies",
            "polls",
            "rescheduled",
            "requeued",
            "dispatches",
        ),
        0,
    )
