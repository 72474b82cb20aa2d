"""Joining and leaving observers: ``?observe=``, a socket's subscribe, unsubscribe.

Requests come from DRF's ``APIRequestFactory``; subscribers are registered in
the real Redis with a channel on the real layer, as a socket's consumer does.
"""

import json

import pytest
from asgiref.sync import async_to_sync
from channels.exceptions import ChannelFull
from django.contrib.auth.models import AnonymousUser, User
from rest_framework.test import APIRequestFactory, force_authenticate

from reactive_celery import fanout, observer, subscriptions
from reactive_celery.exceptions import Refused
from reactive_celery.store import locks, observers, subscribers
from tests.conftest import MARKER, Listener
from tests.testapp import ops_views, security_views, views
from tests.testapp.models import Item

pytestmark = pytest.mark.django_db

SID = "subscriber-1"


def get(view_class, path, sid=SID, user=None, **query):
    request = APIRequestFactory().get(path, {"observe": sid, **query} if sid else query)
    if user is not None:
        force_authenticate(request, user)
    return view_class.as_view({"get": "list"})(request)


def test_an_observing_get_registers_the_subscription(store_redis, listener):
    subscribers.register(SID, listener.channel, "")
    item = Item.objects.create(name="a")
    response = get(views.ItemViewSet, "/api/items/")
    assert response.status_code == 200
    data = response.data
    assert set(data) == {"observer", "version", "items", "primary_key"}
    assert data["primary_key"] == "id"
    assert [row["id"] for row in data["items"]] == [item.pk]
    oid = data["observer"]
    stored = observers.load(oid)
    assert (stored.version, stored.items) == (data["version"], data["items"])
    assert "testapp_item" in stored.tables
    assert subscribers.follows(SID, oid) and subscribers.followers(oid) == {SID}
    assert not store_redis.exists(f"rc:lock:{oid}")
    assert store_redis.zcard("rc:watch") == 0
    # The socket joined the group: the next push reaches it.
    hears_the_next_change(listener, oid, data["version"])


def hears_the_next_change(listener, oid, version):
    """The next change of ``oid`` reaches ``listener``'s socket: joined through its
    process's hub, it is told to follow, then gets the push."""
    Item.objects.create(name="b")
    observer.evaluate(oid)
    assert listener.receive_at_hub() == {
        "type": fanout.FOLLOW,
        "observer": oid,
        "channel": listener.channel,
    }
    assert listener.receive_at_hub()["version"] == version + 1


def test_a_get_without_observe_answers_as_before(store_redis):
    Item.objects.create(name="a")
    response = get(views.ItemViewSet, "/api/items/", sid=None)
    assert [row["name"] for row in response.data] == ["a"]
    assert store_redis.keys("rc:*") == []


@pytest.mark.parametrize("sid", ["short", "has spaces in it", "x" * 65, "semi;colon1"])
def test_a_malformed_subscriber_id_is_400(store_redis, sid):
    response = get(views.ItemViewSet, "/api/items/", sid=sid)
    assert response.status_code == 400
    assert "Malformed subscriber id" in str(response.data["observe"][0])


def test_an_unknown_subscriber_id_is_400(store_redis):
    response = get(views.ItemViewSet, "/api/items/", sid="never-registered")
    assert response.status_code == 400
    assert "open the WebSocket" in str(response.data["observe"][0])


def test_another_users_subscriber_id_gets_the_answer_of_an_unknown_one(store_redis, listener):
    owner = User.objects.create(username="owner")
    subscribers.register(SID, listener.channel, str(owner.pk))
    response = get(views.ItemViewSet, "/api/items/")  # anonymous
    assert response.status_code == 400
    assert "Unknown subscriber id" in str(response.data)
    other = User.objects.create(username="other")
    assert get(views.ItemViewSet, "/api/items/", user=other).status_code == 400
    assert get(views.ItemViewSet, "/api/items/", user=owner).status_code == 200
    assert subscribers.count(SID) == 1


def test_a_refused_view_answers_as_it_would_and_stores_nothing(store_redis, listener):
    subscribers.register(SID, listener.channel, "")
    response = get(views.OwnItemViewSet, "/api/own/")
    assert response.status_code == 403
    assert store_redis.keys("rc:obs:*") == []
    assert subscribers.count(SID) == 0


def test_each_user_gets_an_observer_of_their_own(store_redis, listener):
    alice, bob = User.objects.create(username="alice"), User.objects.create(username="bob")
    subscribers.register("alice-socket", listener.channel, str(alice.pk))
    subscribers.register("bob-socket", listener.channel, str(bob.pk))
    Item.objects.create(name="hers", owner=alice)
    hers = get(views.OwnItemViewSet, "/api/own/", sid="alice-socket", user=alice).data
    his = get(views.OwnItemViewSet, "/api/own/", sid="bob-socket", user=bob).data
    assert hers["observer"] != his["observer"]
    assert ([row["name"] for row in hers["items"]], his["items"]) == (["hers"], [])


def test_a_second_subscriber_shares_the_observer_at_its_version(store_redis, listener):
    subscribers.register(SID, listener.channel, "")
    subscribers.register("subscriber-2", "specific.other!chan", "")
    first = get(views.ItemViewSet, "/api/items/").data
    second = get(views.ItemViewSet, "/api/items/", sid="subscriber-2").data
    assert (second["observer"], second["version"]) == (first["observer"], first["version"])
    assert subscribers.followers(first["observer"]) == {SID, "subscriber-2"}
    assert listener.next_after_marker() == MARKER  # nothing changed: nothing pushed


def test_the_observe_parameter_stays_out_of_pagination_links(store_redis, listener):
    subscribers.register(SID, listener.channel, "")
    Item.objects.bulk_create([Item(name=str(i)) for i in range(6)])
    data = get(views.PagedItemViewSet, "/api/paged/").data
    assert data["count"] == 6 and len(data["items"]) == 5
    assert data["next"] == "http://testserver/api/paged/?page=2"
    assert data["previous"] is None


def test_a_polling_view_is_scheduled(store_redis, listener):
    subscribers.register(SID, listener.channel, "")
    name = f"subscriptions-{SID}"
    try:
        data = get(ops_views.TickViewSet, "/api/ticks/", name=name).data
    finally:
        ops_views.ticks().delete(f"tick:{name}")
    assert data["primary_key"] == "name"
    assert store_redis.zscore("rc:poll", data["observer"]) is not None
    assert store_redis.hget(f"rc:obs:{data['observer']}", "poll") == "1.0"


# --- a socket's subscribe ---------------------------------------------------------


def subscribe(url, user=None, since=None, sid=SID):
    return subscriptions.subscribe_url(
        url, sid, user or AnonymousUser(), "testserver", False, since, "127.0.0.1"
    )


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://elsewhere.example/api/items/", "bad_url"),
        ("//elsewhere.example/api/items/", "bad_url"),
        ("api/items/", "bad_url"),
        ("/api/nothing-here/", "not_found"),
        ("/api/plain/", "not_reactive"),
        ("/api/staff/", "forbidden"),  # 403 from the view
        ("/api/own/", "forbidden"),  # anonymous: not authenticated
        ("/api/items/999999/", "not_found"),  # 404 from retrieve
    ],
)
def test_a_refused_socket_subscribe_names_its_error(store_redis, listener, url, code):
    subscribers.register(SID, listener.channel, "")
    with pytest.raises(Refused) as refused:
        subscribe(url)
    assert refused.value.code == code
    assert refused.value.message
    assert store_redis.keys("rc:obs:*") == []


def test_a_socket_subscribe_with_an_unknown_subscriber_is_bad_message(store_redis):
    with pytest.raises(Refused) as refused:
        subscribe("/api/items/", sid="never-registered")
    assert refused.value.code == "bad_message"


def test_a_socket_subscribe_runs_the_view_with_its_own_subscriber_id(store_redis, listener):
    subscribers.register(SID, listener.channel, "")
    Item.objects.create(name="a", enabled=True)
    Item.objects.create(name="b", enabled=False)
    data = subscribe("/api/items/?enabled=true&observe=someone-elses-id")
    assert [row["name"] for row in data["items"]] == ["a"]
    assert subscribers.follows(SID, data["observer"])
    assert not subscribers.follows("someone-elses-id", data["observer"])


def test_a_resume_gets_the_diffs_it_missed(store_redis, listener):
    subscribers.register(SID, listener.channel, "")
    first = subscribe("/api/items/")
    Item.objects.create(name="a")
    observer.evaluate(first["observer"])
    resumed = subscribe("/api/items/", since=first["version"])
    assert resumed["version"] == first["version"] + 1
    assert "items" not in resumed
    assert [d["version"] for d in resumed["diffs"]] == [resumed["version"]]
    assert resumed["diffs"][0]["changes"][0]["msg"] == "added"
    up_to_date = subscribe("/api/items/", since=resumed["version"])
    assert up_to_date["diffs"] == []


def test_a_resume_from_an_unknown_version_is_a_reset(store_redis, listener):
    subscribers.register(SID, listener.channel, "")
    first = subscribe("/api/items/")
    Item.objects.create(name="a")
    locks.queue([first["observer"]])  # as its commit does; on_commit never fires here
    resumed = subscribe("/api/items/", since=first["version"] - 5)
    assert resumed["reset"] is True
    assert [row["name"] for row in resumed["items"]] == ["a"]
    assert "diffs" not in resumed


def test_a_resume_of_a_lost_observer_is_a_reset(store_redis, listener):
    subscribers.register(SID, listener.channel, "")
    resumed = subscribe("/api/items/", since=12)
    assert resumed["reset"] is True and resumed["items"] == []


# --- unsubscribe ------------------------------------------------------------------


def test_unsubscribe_ends_the_subscription_and_leaves_the_group(store_redis, listener):
    subscribers.register(SID, listener.channel, "")
    subscribers.register("subscriber-2", "specific.other!chan", "")
    oid = subscribe("/api/items/")["observer"]
    subscribe("/api/items/", sid="subscriber-2")
    subscriptions.unsubscribe(oid, subscribers.get(SID))
    assert not subscribers.follows(SID, oid)
    assert subscribers.followers(oid) == {"subscriber-2"}  # kept for the other one
    Item.objects.create(name="a")
    observer.evaluate(oid)  # pushes a diff to the group, which this socket left
    assert listener.next_after_marker() == MARKER


def test_the_last_unsubscribe_drops_the_observer(store_redis, listener):
    subscribers.register(SID, listener.channel, "")
    oid = subscribe("/api/items/")["observer"]
    subscriptions.unsubscribe(oid, subscribers.get(SID))
    assert observers.load(oid) is None
    assert store_redis.keys("rc:dep:*") == []


def test_user_key_is_the_pk_or_empty_for_anonymous():
    user = User.objects.create(username="u")
    assert subscriptions.user_key(user) == str(user.pk)
    assert subscriptions.user_key(AnonymousUser()) == ""
    assert subscriptions.user_key(None) == ""


def test_the_subscribed_socket_hears_when_its_observer_stops(store_redis, listener):
    subscribers.register(SID, listener.channel, "")
    oid = subscribe("/api/items/")["observer"]
    observer.stop(oid, "gone", "bye")
    assert listener.receive_at_hub()["type"] == fanout.FOLLOW
    message = listener.receive_at_hub()
    assert (message["observer"], message["code"]) == (oid, "gone")


def test_a_shared_view_whose_data_moves_between_two_readings_is_not_refused(store_redis, listener):
    # The first reading (the subscriber's own) differs from the shared one; the
    # view does not depend on the user, so the second pair agrees and it is shared.
    security_views.SettlingClockViewSet.readings = 0
    subscribers.register(SID, listener.channel, "")
    data = subscribe("/api/settling/")
    assert data["items"] == [{"id": 1, "settled": True}]
    assert observers.load(data["observer"]).items == data["items"]
    assert security_views.SettlingClockViewSet.readings == 4


def test_a_shared_view_that_depends_on_the_user_is_refused_every_time(store_redis, listener):
    owner = User.objects.create(username="owner")
    Item.objects.create(name="mine", owner=owner)
    subscribers.register(SID, listener.channel, str(owner.pk))
    with pytest.raises(Refused) as refused:
        subscribe("/api/wrongly-shared/", user=owner)
    assert refused.value.code == "depends_on_user"
    assert "per_user=False" in refused.value.message
    assert store_redis.keys("rc:obs:*") == []


def test_the_subscription_that_creates_an_observer_decides_its_invalidation(store_redis, listener):
    subscribers.register(SID, listener.channel, "")
    precise = get(views.GroupItemViewSet, "/api/groups/", position="1").data["observer"]
    paged = get(views.PagedItemViewSet, "/api/paged/").data["observer"]
    found = {
        oid: json.loads(store_redis.hget(f"rc:obs:{oid}", "invalidation"))
        for oid in (precise, paged)
    }
    assert found[precise] == {"table": "testapp_item", "reason": ""}
    assert found[paged]["reason"].startswith("paginated")


def test_a_subscribe_to_a_current_observer_runs_no_query_and_takes_no_lock(
    store_redis, listener, django_assert_num_queries
):
    Item.objects.create(name="a")
    subscribers.register(SID, listener.channel, "")
    first = get(views.ItemViewSet, "/api/items/").data
    other = Listener()
    try:
        subscribers.register("subscriber-2", other.channel, "")
        # The stored result is current: no evaluation (no query), nothing waits on the lock.
        with django_assert_num_queries(0):
            second = get(views.ItemViewSet, "/api/items/", sid="subscriber-2").data
        assert (second["observer"], second["version"]) == (first["observer"], first["version"])
        assert second["items"] == first["items"]
        assert subscribers.followers(first["observer"]) == {SID, "subscriber-2"}
        assert not store_redis.exists(f"rc:lock:{first['observer']}")
        # Joined before the read: the next change reaches it, after its follow.
        hears_the_next_change(other, first["observer"], first["version"])
    finally:
        other.close()


def test_a_subscribe_to_a_current_observer_makes_two_round_trips_to_its_redis(
    store_redis, listener, round_trips
):
    Item.objects.create(name="a")
    subscribers.register(SID, listener.channel, "", "127.0.0.1")
    first = get(views.ItemViewSet, "/api/items/").data
    locks.precise_table(first["observer"])  # a process reads the classification once
    subscribers.register("subscriber-2", listener.channel, "", "127.0.0.1")
    before = round_trips()
    second = get(views.ItemViewSet, "/api/items/", sid="subscriber-2").data
    assert second["version"] == first["version"]
    # Admission (live, this user's, rate, subscriptions, the address follows it already),
    # idle and stored, and the subscription in one; the result with the socket still
    # live. The channel layer's sends are its own connections'.
    assert round_trips() - before == 2
    assert subscribers.followers(first["observer"]) == {SID, "subscriber-2"}


def test_a_subscribe_while_an_evaluation_is_owed_evaluates_under_the_lock(store_redis, listener):
    subscribers.register(SID, listener.channel, "")
    first = get(views.ItemViewSet, "/api/items/").data
    Item.objects.create(name="new")
    # As its commit does (on_commit never fires in this test's transaction).
    assert locks.queue([first["observer"]]) == [first["observer"]]
    subscribers.register("subscriber-2", listener.channel, "")
    second = get(views.ItemViewSet, "/api/items/", sid="subscriber-2").data
    # Evaluated for this subscriber: the answer holds the write the queue still owes.
    assert [item["name"] for item in second["items"]] == ["new"]


def test_a_subscribe_to_a_current_shared_observer_runs_only_the_view_and_takes_no_lock(
    store_redis, listener, django_assert_num_queries
):
    staff = [User.objects.create(username=f"staff{n}", is_staff=True) for n in range(2)]
    Item.objects.create(name="a")
    subscribers.register(SID, listener.channel, str(staff[0].pk))
    first = subscribe("/api/shared-staff/", user=staff[0])
    evaluations = observers.load(first["observer"]).evaluations
    other = Listener()
    try:
        subscribers.register("subscriber-2", other.channel, str(staff[1].pk))
        # The view as this subscriber (its one query), compared with the stored result:
        # no shared evaluation, no lock.
        with django_assert_num_queries(1):
            second = subscribe("/api/shared-staff/", user=staff[1], sid="subscriber-2")
        assert (second["observer"], second["version"]) == (first["observer"], first["version"])
        assert second["items"] == first["items"]
        assert observers.load(first["observer"]).evaluations == evaluations
        assert not store_redis.exists(f"rc:lock:{first['observer']}")
        assert subscribers.followers(first["observer"]) == {SID, "subscriber-2"}
        hears_the_next_change(other, first["observer"], first["version"])
    finally:
        other.close()


def test_a_user_whose_answer_differs_from_a_current_shared_result_never_joins_it(
    store_redis, listener
):
    nobody, owner = User.objects.create(username="nobody"), User.objects.create(username="owner")
    subscribers.register(SID, listener.channel, str(nobody.pk))
    oid = subscribe("/api/wrongly-shared/", user=nobody)["observer"]  # [] for both identities
    Item.objects.create(name="mine", owner=owner)
    observer.evaluate(oid)  # still [] as the shared identity sees it: current
    other = Listener()
    try:
        subscribers.register("subscriber-2", other.channel, str(owner.pk))
        with pytest.raises(Refused) as refused:
            subscribe("/api/wrongly-shared/", user=owner, sid="subscriber-2")
        assert refused.value.code == "depends_on_user"
        assert subscribers.followers(oid) == {SID}
        assert not subscribers.follows("subscriber-2", oid)
    finally:
        other.close()


def test_a_subscribe_that_waited_on_another_holder_of_a_current_observer_does_not_evaluate(
    store_redis, listener, django_assert_num_queries
):
    import threading

    Item.objects.create(name="a")
    subscribers.register(SID, listener.channel, "")
    first = get(views.ItemViewSet, "/api/items/").data
    oid = first["observer"]
    evaluations = observers.load(oid).evaluations
    held, release = threading.Event(), threading.Event()

    def another_subscribe_holds_the_lock():
        with locks.observer_lock(oid):
            held.set()
            release.wait(5)

    holder = threading.Thread(target=another_subscribe_holds_the_lock)
    holder.start()
    assert held.wait(5)
    threading.Timer(0.2, release.set).start()
    subscribers.register("subscriber-2", listener.channel, "")
    try:
        with django_assert_num_queries(0):
            second = get(views.ItemViewSet, "/api/items/", sid="subscriber-2").data
    finally:
        release.set()
        holder.join()
    assert (second["observer"], second["version"]) == (oid, first["version"])
    assert observers.load(oid).evaluations == evaluations
    assert subscribers.followers(oid) == {SID, "subscriber-2"}


def fill_inbox(listener):
    """Send to the listener's process until channels_redis refuses: its hub stopped reading."""

    async def fill():
        while True:
            try:
                await listener.layer.send(fanout.hub_channel(listener.channel), {"type": "x"})
            except ChannelFull:
                return

    async_to_sync(fill)()


@pytest.mark.parametrize("current", [False, True], ids=["new observer", "current observer"])
def test_a_subscribe_to_a_process_whose_inbox_is_full_is_503_and_undone(
    store_redis, listener, current, caplog
):
    Item.objects.create(name="a")
    subscribers.register("subscriber-2", listener.channel, "", "127.0.0.1")
    if current:
        subscribers.register(SID, listener.channel, "", "127.0.0.1")
        assert get(views.ItemViewSet, "/api/items/").status_code == 200
    fill_inbox(listener)
    try:
        response = get(views.ItemViewSet, "/api/items/", sid="subscriber-2")
        assert response.status_code == 503
        assert response.data["detail"].code == "reactive_busy"
        assert response["Retry-After"] == "1"
        assert subscribers.followed("subscriber-2") == set()
        assert sum("inbox of" in r.getMessage() for r in caplog.records) == 1
    finally:
        async_to_sync(listener.layer.flush)()


def test_a_socket_subscribe_to_a_process_whose_inbox_is_full_is_busy_and_undone(
    store_redis, listener
):
    Item.objects.create(name="a")
    subscribers.register(SID, listener.channel, "", "127.0.0.1")
    fill_inbox(listener)
    try:
        with pytest.raises(Refused) as refused:
            subscribe("/api/items/")
        # Not "unavailable": the client retries a busy first subscribe on its own.
        assert refused.value.code == "busy"
        assert subscribers.followed(SID) == set()
    finally:
        async_to_sync(listener.layer.flush)()
