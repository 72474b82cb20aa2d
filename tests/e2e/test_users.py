"""Per-user observers: results computed as the subscriber, never sent to another user."""

import pytest
from django.contrib.auth.models import User

from tests.testapp.models import Item

pytestmark = [pytest.mark.e2e]


def test_two_users_get_their_own_results_and_never_each_others(live):
    alice = User.objects.create_user("alice")
    bob = User.objects.create_user("bob")
    Item.objects.create(name="a1", owner=alice)
    Item.objects.create(name="b1", owner=bob)
    alice_cookies, bob_cookies = live.login(alice), live.login(bob)
    alice_sock = live.socket(alice_cookies)
    bob_sock = live.socket(bob_cookies)
    alice_answer = live.observe("/api/own/", alice_sock, alice_cookies)
    bob_answer = live.observe("/api/own/", bob_sock, bob_cookies)
    assert [i["name"] for i in alice_answer["items"]] == ["a1"]
    assert [i["name"] for i in bob_answer["items"]] == ["b1"]
    assert alice_answer["observer"] != bob_answer["observer"]

    Item.objects.create(name="a2", owner=alice)
    frame = alice_sock.recv()
    assert (frame["msg"], frame["item"]["name"]) == ("added", "a2")

    # Bob's next frame is his own change, not Alice's.
    Item.objects.create(name="b2", owner=bob)
    frame = bob_sock.recv()
    assert (frame["msg"], frame["item"]["name"]) == ("added", "b2")
    assert frame["observer"] == bob_answer["observer"]


def test_http_user_must_match_the_socket_user(live):
    alice = User.objects.create_user("alice")
    bob = User.objects.create_user("bob")
    alice_sock = live.socket(live.login(alice))
    response = live.http(live.login(bob)).get(f"/api/own/?observe={alice_sock.id}")
    # The answer an unknown id gets: nobody learns which ids are live.
    unknown = live.http(live.login(bob)).get("/api/own/?observe=no-such-socket")
    assert response.status_code == unknown.status_code == 400
    assert response.json() == unknown.json()
    assert "Unknown subscriber id" in response.json()["observe"][0]
    assert live.redis.keys("rc:obs:*") == []


def test_anonymous_socket_cannot_be_used_by_a_logged_in_request(live):
    alice = User.objects.create_user("alice")
    sock = live.socket()
    response = live.http(live.login(alice)).get(f"/api/items/?observe={sock.id}")
    assert response.status_code == 400
    assert live.redis.keys("rc:obs:*") == []


def test_permission_denied_view_subscribes_nothing(live):
    sock = live.socket()
    response = live.http().get(f"/api/own/?observe={sock.id}")
    assert response.status_code == 403
    assert live.redis.keys("rc:obs:*") == []
