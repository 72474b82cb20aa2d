"""The batched protocol: subscribe over the socket, one diff frame per evaluation, resume."""

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from websockets.exceptions import ConnectionClosed

from tests.e2e.conftest import check_resume
from tests.testapp.models import Item

pytestmark = [pytest.mark.e2e]


def test_subscribe_and_receive_one_frame_per_evaluation(live):
    first = Item.objects.create(name="b")
    sock = live.batched()
    answer = sock.subscribe("/api/items/?ordering=name")
    assert [i["name"] for i in answer["items"]] == ["b"]
    base = answer["version"]
    assert answer["primary_key"] == "id"

    with transaction.atomic():
        added = Item.objects.create(name="a")
        first.name = "c"
        first.save()
    frame = sock.next_push()
    assert frame["type"] == "diff"
    assert frame["version"] == base + 1
    assert frame["added"] == [{"order": 0, "item": {**frame["added"][0]["item"], "id": added.pk}}]
    assert [(c["order"], c["item"]["name"]) for c in frame["changed"]] == [(1, "c")]

    added.name = "d"
    added.save()
    frame = sock.next_push()
    assert frame["version"] == base + 2
    assert frame["added"] == []
    assert [(c["order"], c["item"]["name"]) for c in frame["changed"]] == [(1, "d")]
    assert frame["moved"] == [{"order": 0, "pk": first.pk}]

    pk = added.pk
    added.delete()
    frame = sock.next_push()
    assert (frame["removed"], frame["version"]) == ([pk], base + 3)


def test_refused_subscriptions_name_the_reason(live):
    sock = live.batched()
    cases = {
        "/api/plain/": "not_reactive",
        "/nowhere/": "not_found",
        "http://evil.example/api/items/": "bad_url",
        "/api/own/": "forbidden",
        "/api/staff/": "forbidden",
    }
    for url, code in cases.items():
        answer = sock.request({"type": "subscribe", "url": url})
        assert (answer["type"], answer["code"]) == ("error", code), url
        assert answer["message"]
    assert live.redis.keys("rc:obs:*") == []


def test_unsubscribe_over_the_socket(live):
    sock = live.batched()
    answer = sock.subscribe("/api/items/")
    done = sock.request({"type": "unsubscribe", "observer": answer["observer"]})
    assert done == {"type": "unsubscribed", "observer": answer["observer"], "id": done["id"]}
    again = sock.request({"type": "unsubscribe", "observer": answer["observer"]})
    assert again["code"] == "not_subscribed"
    assert live.redis.keys("rc:obs:*") == []


def test_ping(live):
    sock = live.batched()
    assert sock.request({"type": "ping"})["type"] == "pong"


def test_resume_gets_the_missing_diffs(live):
    check_resume(live, changes=3)


def test_resume_beyond_the_buffer_is_a_reset(live):
    keeper = live.batched()
    answer = keeper.subscribe("/api/items/")
    Item.objects.create(name="x")
    keeper.next_push()
    back = live.batched()
    resumed = back.subscribe("/api/items/", observer=answer["observer"], version=0)
    assert resumed["reset"] is True
    assert [i["name"] for i in resumed["items"]] == ["x"]


def test_forged_observer_on_resume_yields_only_own_data(live):
    alice = User.objects.create_user("alice")
    bob = User.objects.create_user("bob")
    Item.objects.create(name="alice's", owner=alice)
    alice_sock = live.batched(live.login(alice))
    alice_answer = alice_sock.subscribe("/api/own/")
    bob_sock = live.batched(live.login(bob))
    resumed = bob_sock.subscribe("/api/own/", observer=alice_answer["observer"], version=0)
    assert resumed["observer"] != alice_answer["observer"]
    assert resumed["reset"] is True and resumed["items"] == []
    forged = bob_sock.request({"type": "unsubscribe", "observer": alice_answer["observer"]})
    assert forged["code"] == "not_subscribed"
    # Alice's subscription is intact.
    Item.objects.create(name="alice's second", owner=alice)
    assert alice_sock.next_push()["added"][0]["item"]["name"] == "alice's second"


def test_item_leaving_a_users_reach_is_removed(live):
    alice = User.objects.create_user("alice")
    bob = User.objects.create_user("bob")
    item = Item.objects.create(name="shared", owner=alice)
    alice_sock = live.batched(live.login(alice))
    bob_sock = live.batched(live.login(bob))
    alice_sock.subscribe("/api/own/")
    bob_sock.subscribe("/api/own/")
    item.owner = bob
    item.save()
    assert alice_sock.next_push()["removed"] == [item.pk]
    assert bob_sock.next_push()["added"][0]["item"]["id"] == item.pk


def test_revoked_permission_ends_the_subscription_with_an_error(live):
    staff = User.objects.create_user("staff", is_staff=True)
    sock = live.batched(live.login(staff))
    answer = sock.subscribe("/api/staff/")
    staff.is_staff = False
    staff.save()
    Item.objects.create(name="next change")
    frame = sock.next_push()
    assert (frame["type"], frame["code"], frame["observer"]) == (
        "error",
        "forbidden",
        answer["observer"],
    )
    assert live.redis.keys("rc:obs:*") == []


def test_cross_origin_socket_is_refused(live):
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus):
        live.batched(origin="http://evil.example")


def test_deactivated_user_loses_the_subscription(live):
    alice = User.objects.create_user("alice")
    sock = live.batched(live.login(alice))
    answer = sock.subscribe("/api/own/")
    alice.is_active = False
    alice.save()
    # The socket is held to the session's rules at once: closed, its subscriptions ended.
    with pytest.raises(ConnectionClosed) as closed:
        sock.next_push()
    assert closed.value.rcvd.code == 4401
    live.wait_for(lambda: not live.redis.exists(f"rc:obs:{answer['observer']}:subs"))
    Item.objects.create(name="next change", owner=alice)
    assert not live.redis.exists(f"rc:obs:{answer['observer']}")


def test_evaluations_do_not_spend_the_users_request_quota(live):
    sock = live.batched()
    sock.subscribe("/api/throttled/")  # the one request a minute this client may make
    for name in ("first", "second", "third"):
        Item.objects.create(name=name)
        frame = sock.next_push()
        assert frame["type"] == "diff", frame
        assert frame["added"][-1]["item"]["name"] == name


def _has_synced(frames: list[dict]) -> bool:
    return any(f["type"] == "synced" for f in frames)


def _diff_of(frames: list[dict], name: str) -> dict | None:
    """The diff frame that added the item called ``name``, if it arrived."""
    for frame in frames:
        if frame["type"] == "diff" and any(
            row["item"]["name"] == name for row in frame.get("added") or []
        ):
            return frame
    return None


def test_sync_tells_a_client_when_its_own_write_has_arrived(live):
    sock = live.batched()
    answer = sock.subscribe("/api/items/")
    settled = sock.request({"type": "sync", "observer": answer["observer"]})
    assert settled == {
        "type": "synced",
        "id": settled["id"],
        "observer": answer["observer"],
        "version": answer["version"],
    }
    # Its own write, through the server: the response comes after its commit was sent
    # (a write outside a request is sent by its process's sender thread, a moment later).
    assert live.http().post("/api/items/", json={"name": "mine"}).status_code == 201
    first = sock.request({"type": "sync", "observer": answer["observer"]})
    # The evaluation may have finished before the sync: its diff is then among the pushes.
    frames = [*sock.pushed, first]
    sock.pushed.clear()
    while not (_has_synced(frames) and _diff_of(frames, "mine")):
        frames.append(sock.recv())
    diff = _diff_of(frames, "mine")
    assert diff is not None
    synced = next(f for f in frames if f["type"] == "synced")
    # "synced" names the version that holds the write, never the one before it.
    assert synced["version"] == diff["version"] > answer["version"]
    if first["type"] == "sync_pending":
        # Announced after the evaluation pushed its diff, through the same group.
        assert frames.index(diff) < frames.index(synced)
    refused = sock.request({"type": "sync", "observer": "f" * 64})
    assert (refused["type"], refused["code"]) == ("error", "not_subscribed")


def test_sync_after_the_diff_arrived_answers_at_once(live):
    sock = live.batched()
    answer = sock.subscribe("/api/items/")
    assert live.http().post("/api/items/", json={"name": "seen"}).status_code == 201
    frames: list[dict] = []
    while not _diff_of(frames, "seen"):
        frames.append(sock.recv())
    diff = _diff_of(frames, "seen")
    assert diff is not None
    settled = sock.request({"type": "sync", "observer": answer["observer"]})
    assert (settled["type"], settled["version"]) == ("synced", diff["version"])
