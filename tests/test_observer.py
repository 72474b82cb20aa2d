"""One observer's life against the real Redis, database and channel layer.

``publish`` (versions, replay buffer, pushes), ``evaluate`` (the view as the
spec's user; stops with a code) and ``refresh`` (the lock protocol). Requeues
go to a recording function, so what would be sent is counted exactly.
"""

from dataclasses import replace

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.contrib.auth.models import User
from django.db import OperationalError, connection
from django.urls import path
from rest_framework import viewsets
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory

from reactive_celery import broadcast, fanout, observer, protocol, reactive
from reactive_celery.evaluation import Result
from reactive_celery.spec import ObserverSpec
from reactive_celery.store import locks, observers, stats, subscribers
from reactive_celery.store.connection import now_ms
from tests.conftest import MARKER, Listener
from tests.specs import spec_for
from tests.testapp.models import Item


def create(spec: ObserverSpec, items=(), creator="") -> str:
    """Store an observer as a subscription would have, at version 1."""
    fields = dict(spec=spec.to_json(), items=list(items), meta={}, tables=[], creator=creator)
    observers.save(spec.id, **fields, version=1)
    return spec.id


class Requeues:
    """Stands in for ``tasks.enqueue_evaluation``: records each call."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __call__(self, oid, countdown=None, retry=False):
        self.calls.append((oid, countdown, retry))


# --- publish ----------------------------------------------------------------------


def test_the_first_publish_starts_the_version_at_redis_clock_in_ms(store_redis):
    spec = spec_for()
    before = now_ms()
    version = observer.publish(
        spec.id, spec, Result([{"id": 1}], tables={"t"}), stored=None, creator="7", declared={"d"}
    )
    assert before <= version <= now_ms()
    stored = observers.load(spec.id)
    assert (stored.version, stored.items, stored.creator) == (version, [{"id": 1}], "7")
    assert (stored.tables, stored.declared) == (["d", "t"], ["d"])
    assert stored.evaluations == 0
    assert observers.replay(spec.id, version - 1, version) is None  # no diff of its own


def test_a_change_bumps_the_version_by_one_logs_it_and_pushes_it(store_redis, listener):
    spec = spec_for()
    first = observer.publish(spec.id, spec, Result([{"id": 1}]), stored=None)
    listener.join(broadcast.group_name(spec.id))
    stored = observers.load(spec.id)
    version = observer.publish(
        spec.id, spec, Result([{"id": 1}, {"id": 2}]), stored=stored, evaluated=True
    )
    assert version == first + 1
    changes = [{"msg": "added", "order": 1, "item": {"id": 2}}]
    assert observers.replay(spec.id, first, version) == [
        {"version": version, "primary_key": "id", "changes": changes}
    ]
    assert listener.receive() == protocol.diff_message(spec.id, version, "id", changes)
    assert observers.load(spec.id).evaluations == 1


def test_no_change_keeps_the_version_and_pushes_nothing(store_redis, listener):
    spec = spec_for()
    first = observer.publish(spec.id, spec, Result([{"id": 1}]), stored=None)
    listener.join(broadcast.group_name(spec.id))
    stored = observers.load(spec.id)
    assert observer.publish(spec.id, spec, Result([{"id": 1}]), stored=stored) == first
    assert listener.next_after_marker() == MARKER
    assert store_redis.llen(f"rc:obs:{spec.id}:log") == 0


def test_a_worker_publish_never_revives_a_dropped_observer(store_redis, listener):
    spec = spec_for()
    observer.publish(spec.id, spec, Result([{"id": 1}], tables={"t"}), stored=None)
    listener.join(broadcast.group_name(spec.id))
    stored = observers.load(spec.id)
    observers.drop(spec.id)  # its last subscriber left during the evaluation
    result = Result([{"id": 2}], tables={"t"})
    assert observer.publish(spec.id, spec, result, stored=stored, evaluated=True) is None
    assert store_redis.keys("rc:*") == []
    assert listener.next_after_marker() == MARKER


def test_a_joining_channel_starts_after_the_catch_up_push(store_redis, listener):
    spec = spec_for()
    group = broadcast.group_name(spec.id)
    observer.publish(spec.id, spec, Result([{"id": 1}]), stored=None)
    listener.join(group)
    joining = Listener()
    try:
        stored = observers.load(spec.id)
        version = observer.publish(
            spec.id, spec, Result([{"id": 2}]), stored=stored, joining=joining.channel
        )
        assert listener.receive()["version"] == version  # the existing subscriber catches up
        # The new one starts at ``version``: its process hub hears of it before any push.
        assert joining.receive_at_hub()["type"] == fanout.FOLLOW
        stored = observers.load(spec.id)
        observer.publish(spec.id, spec, Result([]), stored=stored)
        assert joining.receive_at_hub()["version"] == version + 1
        assert joining.next_after_marker() == MARKER  # nothing to the socket's own channel
    finally:
        joining.close()


def test_items_without_unique_primary_keys_are_a_value_error(store_redis):
    spec = spec_for()
    observer.publish(spec.id, spec, Result([{"id": 1}]), stored=None)
    stored = observers.load(spec.id)
    with pytest.raises(ValueError, match="appears twice"):
        observer.publish(spec.id, spec, Result([{"id": 2}, {"id": 2}]), stored=stored)
    with pytest.raises(ValueError, match="no primary key field 'id'"):
        observer.publish(spec.id, spec, Result([{"name": "x"}]), stored=stored)
    assert observers.load(spec.id) == stored


# --- evaluate ---------------------------------------------------------------------


@pytest.mark.django_db
def test_evaluate_runs_the_view_and_publishes_what_changed(store_redis):
    oid = create(spec_for())
    item = Item.objects.create(name="a")
    assert observer.evaluate(oid) is True
    stored = observers.load(oid)
    assert [row["id"] for row in stored.items] == [item.pk]
    assert "testapp_item" in stored.tables
    assert store_redis.smembers("rc:dep:testapp_item") == {oid}
    assert observer.evaluate(oid) is False  # nothing changed since
    assert observers.load(oid).version == stored.version == 2
    assert (observers.load(oid).evaluations, stats.summary()["evaluations"]) == (2, 2)


@pytest.mark.django_db
def test_evaluate_of_an_observer_that_is_gone_does_nothing(store_redis):
    assert observer.evaluate(spec_for().id) is False
    assert store_redis.keys("rc:*") == []


@pytest.mark.django_db
def test_evaluate_runs_as_the_spec_user_and_a_shared_observer_as_no_one(store_redis):
    alice, bob = User.objects.create(username="alice"), User.objects.create(username="bob")
    Item.objects.create(name="hers", owner=alice)
    Item.objects.create(name="his", owner=bob)
    per_user = create(spec_for("/api/own/", "OwnItemViewSet", user=alice.pk))
    shared = create(spec_for("/api/own/", "OwnItemViewSet"), creator=str(bob.pk))
    observer.evaluate(per_user)
    observer.evaluate(shared)
    assert [row["name"] for row in observers.load(per_user).items] == ["hers"]
    # Never the creator's rows: as no one, this user-filtered view cannot be computed.
    assert observers.load(shared) is None


def stopped(oid: str, listener: Listener) -> tuple[str, dict]:
    """Evaluate a doomed observer; return the code recorded and the group's message."""
    listener.join(broadcast.group_name(oid))
    assert observer.evaluate(oid) is False
    assert observers.load(oid) is None
    message = listener.receive()
    assert message["type"] == protocol.GROUP_ERROR and message["observer"] == oid
    (error,) = stats.last_errors()
    assert error["code"] == message["code"]
    return message["code"], message


@pytest.mark.django_db
def test_a_path_that_no_longer_resolves_stops_the_observer_as_gone(store_redis, listener):
    code, message = stopped(create(spec_for("/api/nothing/")), listener)
    assert code == "gone" and "no longer resolves" in message["message"]


@pytest.mark.django_db
def test_a_deleted_user_stops_the_observer_as_gone(store_redis, listener):
    user = User.objects.create(username="left")
    oid = create(spec_for("/api/own/", "OwnItemViewSet", user=user.pk))
    user.delete()
    code, message = stopped(oid, listener)
    assert code == "gone" and message["message"] == "The observing user no longer exists."


@pytest.mark.django_db
def test_a_withdrawn_permission_stops_the_observer_as_forbidden(store_redis, listener):
    user = User.objects.create(username="was-staff", is_staff=False)
    code, message = stopped(
        create(spec_for("/api/staff/", "StaffItemViewSet", user=user.pk)), listener
    )
    assert code == "forbidden"


@pytest.mark.django_db
def test_a_deactivated_user_stops_the_observer_as_forbidden(store_redis, listener):
    user = User.objects.create(username="inactive", is_active=False)
    code, message = stopped(create(spec_for("/api/own/", "OwnItemViewSet", user=user.pk)), listener)
    assert code == "forbidden" and "deactivated" in message["message"]


class TeapotViewSet(viewsets.ViewSet):
    """Answers neither 200 nor a permission error nor 404."""

    def list(self, request):
        return Response({"detail": "short and stout"}, status=418)


@reactive(primary_key="name")
class DuplicateNamesViewSet(viewsets.ViewSet):
    def list(self, request):
        return Response([{"name": "twin"}, {"name": "twin"}])


urlpatterns = [
    path("teapot/", TeapotViewSet.as_view({"get": "list"})),
    path("twins/", DuplicateNamesViewSet.as_view({"get": "list"})),
]


@pytest.mark.django_db
@pytest.mark.urls(__name__)
def test_a_view_answering_another_status_stops_the_observer_with_an_error(store_redis, listener):
    spec = replace(spec_for("/teapot/"), view=f"{__name__}.TeapotViewSet")
    code, message = stopped(create(spec), listener)
    assert (code, message["message"]) == ("error", "The view answered 418.")


@pytest.mark.django_db
def test_a_view_that_raises_stops_the_observer_and_logs_it(store_redis, listener, caplog):
    def database_down(execute, sql, params, many, context):
        raise OperationalError("database is locked")

    oid = create(spec_for())
    with connection.execute_wrapper(database_down):
        code, message = stopped(oid, listener)
    assert code == "error" and "(error " in message["message"]
    assert "database is locked" not in message["message"]  # the detail stays in the log
    error_id = message["message"].split("(error ")[1].rstrip(").")
    assert any(
        r.exc_info and r.name == "reactive_celery.tasks" and error_id in r.getMessage()
        for r in caplog.records
    )


@pytest.mark.django_db
def test_the_soft_time_limit_stops_the_observer_as_timeout(store_redis, listener):
    def over_the_limit(execute, sql, params, many, context):
        raise SoftTimeLimitExceeded()  # what Celery raises wherever the task is at that moment

    oid = create(spec_for())
    with connection.execute_wrapper(over_the_limit):
        code, message = stopped(oid, listener)
    assert code == "timeout" and message["message"] == "Evaluation took longer than 5.0 s."


@pytest.mark.django_db
def test_a_stored_result_without_unique_keys_stops_the_observer_with_an_error(
    store_redis, listener
):
    Item.objects.create(name="a")
    code, message = stopped(create(spec_for(), items=[{"id": 9}, {"id": 9}]), listener)
    assert code == "error" and "appears twice" in message["message"]


# --- refresh ----------------------------------------------------------------------


@pytest.mark.django_db
def test_refresh_evaluates_once_and_leaves_no_lock_behind(store_redis):
    oid = create(spec_for())
    Item.objects.create(name="a")
    store_redis.set(f"rc:queued:{oid}", "1")
    requeue = Requeues()
    observer.refresh(oid, retry=False, requeue=requeue)
    assert observers.load(oid).evaluations == 1
    assert requeue.calls == []
    for key in ("queued", "lock", "dirty", "starts"):
        assert not store_redis.exists(f"rc:{key}:{oid}"), key


@pytest.fixture(params=[False, True], ids=["metrics-off", "metrics-on"])
def metrics_on(request, settings):
    """Before ``round_trips``: a settings change replaces the store's client."""
    settings.REACTIVE_CELERY = {**settings.REACTIVE_CELERY, "METRICS": request.param}
    return request.param


@pytest.mark.django_db
def test_refresh_of_a_changed_observer_makes_four_round_trips_to_redis(
    store_redis, metrics_on, round_trips
):
    expected = 5 if metrics_on else 4
    oid = create(spec_for(user="1"), creator="1")
    User.objects.create(id=1, username="u")
    Item.objects.create(name="a")
    before = round_trips()
    observer.refresh(oid, retry=False, requeue=Requeues())
    # begin, load, save (with the statistics), then one script releases the lock,
    # answers the waiting clients and clears the starts; metrics take the commit
    # stamp in one more.
    assert round_trips() - before == expected
    assert observers.load(oid).version == 2
    assert stats.summary()["evaluations"] == 1


@pytest.mark.django_db
def test_a_contended_refresh_leaves_the_change_to_the_holder_and_schedules_one_retry(
    store_redis,
):
    oid = create(spec_for())
    assert locks.begin(oid, "holder").acquired
    requeue = Requeues()
    observer.refresh(oid, retry=False, requeue=requeue)
    observer.refresh(oid, retry=False, requeue=requeue)
    ((called_oid, countdown, retry),) = requeue.calls
    assert (called_oid, retry) == (oid, True)
    assert 0 < countdown <= 10.05  # after the holder's lock would have expired
    assert observers.load(oid).evaluations == 0
    assert locks.finish(oid, "holder") == 1  # the holder reruns for the change


@pytest.mark.django_db
def test_the_crash_cap_stops_an_observer_started_too_often(store_redis, listener):
    oid = create(spec_for())
    listener.join(broadcast.group_name(oid))
    store_redis.set(f"rc:starts:{oid}", observer.MAX_STARTS)  # killed workers left these
    requeue = Requeues()
    observer.refresh(oid, retry=False, requeue=requeue)
    message = listener.receive()
    assert (message["type"], message["code"]) == (protocol.GROUP_ERROR, "crashed")
    assert observers.load(oid) is None
    assert requeue.calls == []
    assert not store_redis.exists(f"rc:lock:{oid}", f"rc:starts:{oid}")


@pytest.mark.django_db
def test_the_last_start_under_the_cap_still_evaluates(store_redis):
    oid = create(spec_for())
    store_redis.set(f"rc:starts:{oid}", observer.MAX_STARTS - 1)
    observer.refresh(oid, retry=False, requeue=Requeues())
    assert observers.load(oid).evaluations == 1
    assert not store_redis.exists(f"rc:starts:{oid}")


def change_arrives_during(oid: str, then=None):
    """A query hook: the first query of the view meets another task's begin (a change)."""
    arrived = []

    def hook(execute, sql, params, many, context):
        if not arrived:
            arrived.append(locks.begin(oid, "another-task"))
            if then is not None:
                raise then
        return execute(sql, params, many, context)

    return hook


@pytest.mark.django_db
def test_a_change_during_the_evaluation_runs_it_again(store_redis):
    oid = create(spec_for())
    requeue = Requeues()
    with connection.execute_wrapper(change_arrives_during(oid)):
        observer.refresh(oid, retry=False, requeue=requeue)
    assert observers.load(oid).evaluations == 2
    assert requeue.calls == []
    assert not store_redis.exists(f"rc:lock:{oid}", f"rc:dirty:{oid}")


@pytest.mark.django_db
def test_a_change_during_a_failed_run_is_requeued_and_the_failure_raised(store_redis):
    oid = create(spec_for())
    requeue = Requeues()
    with (
        connection.execute_wrapper(change_arrives_during(oid, then=SystemExit(1))),
        pytest.raises(SystemExit),
    ):
        observer.refresh(oid, retry=False, requeue=requeue)
    assert requeue.calls == [(oid, None, False)]
    assert not store_redis.exists(f"rc:lock:{oid}", f"rc:starts:{oid}")


@pytest.mark.django_db
def test_past_half_the_time_limit_a_pending_change_goes_to_a_new_task(store_redis, settings):
    # Any evaluation outlasts half of this limit, so the first run hands over.
    settings.REACTIVE_CELERY = {**settings.REACTIVE_CELERY, "EVALUATION_TIME_LIMIT": 0.001}
    oid = create(spec_for())
    requeue = Requeues()
    with connection.execute_wrapper(change_arrives_during(oid)):
        observer.refresh(oid, retry=False, requeue=requeue)
    assert observers.load(oid).evaluations == 1
    assert requeue.calls == [(oid, None, False)]
    assert not store_redis.exists(f"rc:lock:{oid}")


# --- stop ---------------------------------------------------------------------------


def test_stop_drops_the_observer_records_why_and_tells_the_group(store_redis, listener):
    oid = create(spec_for())
    listener.join(broadcast.group_name(oid))
    observer.stop(oid, "gone", "bye")
    assert listener.receive() == protocol.stop_message(oid, "gone", "bye")
    assert observers.load(oid) is None
    (error,) = stats.last_errors()
    assert (error["view"], error["code"], error["error"]) == (
        "tests.testapp.views.ItemViewSet",
        "gone",
        "bye",
    )


def test_the_first_publish_refuses_items_without_unique_primary_keys(store_redis):
    spec = spec_for()
    with pytest.raises(ValueError):
        observer.publish(spec.id, spec, Result([{"id": 1}, {"id": 1}]), stored=None)
    assert observers.load(spec.id) is None


@pytest.mark.django_db
@pytest.mark.urls(__name__)
def test_the_first_subscriber_of_a_view_with_duplicate_keys_is_refused(store_redis):
    subscribers.register("subscriber-1", "specific.x!y", "")
    view = DuplicateNamesViewSet.as_view({"get": "list"})
    request = APIRequestFactory().get("/twins/", {"observe": "subscriber-1"})
    response = view(request)
    # A JSON answer that names the fix, not a bare 500 page.
    assert response.status_code == 500
    assert "appears twice" in str(response.data["detail"])
    assert subscribers.count("subscriber-1") == 0  # the refused subscribe left nothing
