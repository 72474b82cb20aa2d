"""An open socket is held to the rules an HTTP request with the same cookie meets, always.

Each test is one finding of the security review (docs/security.md), across the
real processes: uvicorn, Celery workers and Redis.
"""

import json
import time

import pytest
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from websockets.exceptions import ConnectionClosed

from reactive_celery.protocol import (
    CLOSE_FOREIGN_ID,
    CLOSE_SESSION_ENDED,
    CLOSE_STATE_LOST,
    CLOSE_TOO_MANY,
    CLOSE_UNAVAILABLE,
)
from tests import processes
from tests.testapp.models import Item

pytestmark = [pytest.mark.e2e]


def closed_code(sock, timeout: float = 15) -> int:
    """Read until the server closes the socket; return its close code."""
    deadline = time.monotonic() + timeout
    with pytest.raises(ConnectionClosed) as closed:  # noqa: PT012
        while time.monotonic() < deadline:
            sock.connection.recv(timeout=max(0.1, deadline - time.monotonic()))
    return closed.value.rcvd.code


def signed_in(live, name: str, **fields) -> tuple[User, dict[str, str]]:
    user = User.objects.create_user(name, password="old-password", **fields)
    return user, live.login(user)


# --- 1. a socket keeps its user after logout, password change, deactivation -------------


def test_logout_closes_the_sessions_sockets_and_ends_their_subscriptions(live):
    alice, cookies = signed_in(live, "alice")
    batched = live.batched(cookies)
    answer = batched.subscribe("/api/own/")
    seed = live.socket(cookies)
    live.observe("/api/own/", seed, cookies)
    assert live.http(cookies).post("/api/logout/").status_code == 204
    assert closed_code(batched) == CLOSE_SESSION_ENDED
    assert closed_code(seed) == CLOSE_SESSION_ENDED
    live.wait_for(lambda: not live.redis.exists(f"rc:obs:{answer['observer']}"))
    # The same cookie no longer signs anyone in, over HTTP or a new socket.
    assert live.http(cookies).get("/api/own/").status_code == 403


def test_a_password_change_closes_the_users_sockets(live):
    alice, cookies = signed_in(live, "alice")
    sock = live.batched(cookies)
    sock.subscribe("/api/own/")
    alice.set_password("new-password")
    alice.save()
    assert closed_code(sock) == CLOSE_SESSION_ENDED


def test_a_deleted_session_row_ends_the_socket_at_its_next_request(live):
    alice, cookies = signed_in(live, "alice")
    sock = live.batched(cookies)
    sock.subscribe("/api/own/")
    Session.objects.all().delete()  # no signal: only the re-check can notice
    sock.connection.send(json.dumps({"type": "subscribe", "id": 9, "url": "/api/own/"}))
    assert closed_code(sock) == CLOSE_SESSION_ENDED


def test_a_deactivated_users_seed_socket_stops_receiving(live):
    alice, cookies = signed_in(live, "alice")
    sock = live.socket(cookies)
    live.observe("/api/own/", sock, cookies)
    alice.is_active = False
    alice.save()
    assert closed_code(sock) == CLOSE_SESSION_ENDED


# --- 2. shared observers ---------------------------------------------------------------


def test_a_shared_staff_view_drops_a_subscriber_whose_permission_was_revoked(live):
    alice, alice_cookies = signed_in(live, "alice", is_staff=True)
    bob, bob_cookies = signed_in(live, "bob", is_staff=True)
    alice_sock, bob_sock = live.batched(alice_cookies), live.batched(bob_cookies)
    shared = alice_sock.subscribe("/api/shared-staff/")
    assert bob_sock.subscribe("/api/shared-staff/")["observer"] == shared["observer"]
    bob.is_staff = False
    bob.save()
    Item.objects.create(name="for staff only")
    frame = bob_sock.next_push()
    assert (frame["type"], frame["code"]) == ("error", "forbidden")
    # Alice still gets the change; Bob gets nothing more.
    assert alice_sock.next_push()["added"][0]["item"]["name"] == "for staff only"
    Item.objects.create(name="later")
    assert alice_sock.next_push()["type"] == "diff"
    with pytest.raises(TimeoutError):
        bob_sock.next_push(timeout=1)


def test_a_user_filtered_view_marked_shared_is_refused_with_the_misconfiguration(live):
    alice, cookies = signed_in(live, "alice")
    Item.objects.create(name="alice's", owner=alice)
    answer = live.batched(cookies).request({"type": "subscribe", "url": "/api/wrongly-shared/"})
    assert (answer["type"], answer["code"]) == ("error", "depends_on_user")
    assert "per_user=False" in answer["message"]
    sock = live.socket(cookies)
    response = live.http(cookies).get(f"/api/wrongly-shared/?observe={sock.id}")
    assert response.status_code == 409
    assert live.redis.keys("rc:obs:*") == []


def test_a_shared_result_is_never_computed_as_a_later_subscriber(live):
    alice, alice_cookies = signed_in(live, "alice", is_staff=True)
    bob, bob_cookies = signed_in(live, "bob", is_staff=True)
    Item.objects.create(name="shared row")
    first = live.batched(alice_cookies).subscribe("/api/shared-staff/")
    second = live.batched(bob_cookies).subscribe("/api/shared-staff/")
    assert second["observer"] == first["observer"]
    assert second["items"] == first["items"]
    assert second["version"] == first["version"]  # nothing was pushed to everyone


# --- 3. the view's authentication_classes ----------------------------------------------


def test_a_basic_only_view_refuses_a_socket_signed_in_by_its_session(live):
    alice, cookies = signed_in(live, "alice")
    Item.objects.create(name="private")
    assert live.http(cookies).get("/api/basic-only/").status_code in (401, 403)
    answer = live.batched(cookies).request({"type": "subscribe", "url": "/api/basic-only/"})
    assert (answer["type"], answer["code"]) == ("error", "forbidden")
    assert "authentication_classes" in answer["message"]
    assert live.redis.keys("rc:obs:*") == []


# --- 4 and 7. subscriber ids carry nothing to another socket ------------------------------


def test_an_anonymous_socket_cannot_take_over_another_anonymous_sockets_subscriptions(live):
    victim = live.socket()
    answer = live.observe("/api/items/?name=secret-query", victim)
    held_by = live.redis.hget(f"rc:sub:{victim.id}", "channel")
    thief = live.socket(sid=victim.id)
    live.wait_for(lambda: live.redis.hget(f"rc:sub:{victim.id}", "channel") != held_by)
    # The thief holds the id but none of what the victim followed (nor learns its query).
    assert live.redis.smembers(f"rc:sub:{victim.id}:obs") == set()
    assert not live.redis.exists(f"rc:obs:{answer['observer']}")  # released: it was the last
    Item.objects.create(name="secret-query")
    with pytest.raises(TimeoutError):
        thief.recv(timeout=1)
    assert closed_code(victim) == CLOSE_STATE_LOST


def test_another_users_id_is_refused_and_an_expired_id_starts_empty(live):
    alice, alice_cookies = signed_in(live, "alice")
    bob, bob_cookies = signed_in(live, "bob")
    sock = live.socket(alice_cookies)
    live.observe("/api/own/", sock, alice_cookies)
    assert closed_code(live.socket(bob_cookies, sid=sock.id)) == CLOSE_FOREIGN_ID
    # An unclean death: the record expired, the subscription set was renewed apart.
    live.redis.delete(f"rc:sub:{sock.id}")
    taker = live.socket(bob_cookies, sid=sock.id)
    live.wait_for(lambda: live.redis.hget(f"rc:sub:{sock.id}", "user") == str(bob.pk))
    assert live.redis.smembers(f"rc:sub:{sock.id}:obs") == set()
    Item.objects.create(name="alice's", owner=alice)
    with pytest.raises(TimeoutError):
        taker.recv(timeout=1)


# --- 5. limits on the seed route ---------------------------------------------------------


def test_the_seed_route_caps_subscriptions_and_rate_with_429(live):
    sock = live.socket()
    statuses = []
    # Requests refused by the rate do not count towards the cap: keep going until it answers.
    for i in range(1000):
        response = live.http().get(f"/api/items/?junk={i}&observe={sock.id}")
        statuses.append(response.status_code)
        if response.status_code == 429 and "subscriptions" in response.json()["detail"]:
            break
        if response.status_code == 429:
            time.sleep(0.06)
    assert statuses.count(200) == 100
    assert "unsubscribe first" in response.json()["detail"]
    assert len(live.redis.smembers(f"rc:sub:{sock.id}:obs")) == 100


def test_sockets_per_address_are_capped(live, spawn):
    port = processes.free_port()
    spawn(processes.asgi_server, port, env={"REACTIVE_TEST_MAX_SOCKETS_PER_ADDRESS": "2"})
    first, second = live.batched(port=port), live.batched(port=port)
    assert first.request({"type": "ping"})["type"] == "pong"
    third = live.batched(port=port)
    assert closed_code(third) == CLOSE_TOO_MANY
    second.close()
    live.wait_for(lambda: len(live.redis.zrange("rc:sockets:addr:127.0.0.1", 0, -1)) == 1)
    assert live.batched(port=port).request({"type": "ping"})["type"] == "pong"


# --- 9. Redis stops ----------------------------------------------------------------------


def test_when_redis_stops_sockets_close_with_4503_and_handshakes_are_refused_cleanly(
    live, redis_stopper
):
    sock = live.batched()
    sock.subscribe("/api/items/")
    with redis_stopper():
        assert closed_code(sock, timeout=20) == CLOSE_UNAVAILABLE
        fresh = live.batched()
        assert closed_code(fresh) == CLOSE_UNAVAILABLE


# --- 10. bad frames ----------------------------------------------------------------------


def test_deep_nesting_and_lone_surrogates_get_one_error_and_one_log_line(live):
    sock = live.batched()
    sock.send_raw("[" * 100_000 + "]" * 100_000)
    assert sock.recv()["code"] in ("bad_json", "too_large")
    # Too deep for the decoder (bad_json), or decoded into no object (bad_message, 3.13).
    sock.send_raw("[" * 30_000 + "]" * 30_000)
    assert sock.recv()["code"] in ("bad_json", "bad_message")
    # Valid JSON that decodes to a lone surrogate, which no URL or query can encode.
    for url in ("/api/items/?q=\\ud800", "/api/\\udfff/"):
        sock.send_raw(f'{{"type": "subscribe", "url": "{url}"}}')
        frame = sock.recv()
        assert frame["type"] == "error" and frame["message"]
    assert sock.request({"type": "ping"})["type"] == "pong"
    log = live.cluster["servers"][0].output()
    assert "Traceback" not in log


def test_every_frame_is_rate_limited(live, spawn):
    port = processes.free_port()
    spawn(processes.asgi_server, port, env={"REACTIVE_TEST_FRAME_RATE": "5"})
    sock = live.batched(port=port)
    for i in range(20):
        sock.connection.send(json.dumps({"type": "ping", "id": i}))
    codes = [sock.recv().get("code") for _ in range(20)]
    assert codes.count("rate_limited") >= 10


# --- 11. the server's own frame limit ----------------------------------------------------


def test_frames_past_the_servers_limit_are_cut_off_by_the_server(live):
    sock = live.batched()
    sock.send_raw(json.dumps({"type": "ping", "pad": "x" * 100_000}))
    assert sock.recv()["code"] == "too_large"  # under the server's limit: an answer
    sock.send_raw(json.dumps({"type": "ping", "pad": "x" * 400_000}))
    assert closed_code(sock) == 1009  # over it: never buffered whole


# --- 12. exception text stays in the log -------------------------------------------------


def test_an_evaluations_exception_reaches_subscribers_as_an_error_id_only(live):
    sock = live.batched()
    answer = sock.subscribe("/api/exploding/")
    Item.objects.create(name="explode")
    frame = sock.next_push()
    assert (frame["type"], frame["code"], frame["observer"]) == (
        "error",
        "error",
        answer["observer"],
    )
    assert "hunter2" not in frame["message"] and "db.internal" not in frame["message"]
    error_id = frame["message"].split("(error ")[1].rstrip(").")

    def logs() -> str:
        return "".join(worker.output() for worker in live.cluster["workers"])

    live.wait_for(lambda: error_id in logs())
    assert "hunter2" in logs()  # the detail is in the worker's log, beside the id


# --- 13. answers that are the same whatever exists ---------------------------------------


def test_a_throttled_socket_subscribe_answers_rate_limited(live):
    # The other server: test_batched spends this client's one request a minute on the
    # first, and DRF's throttle counts in each process's own cache.
    sock = live.batched(port=live.http_port)
    sock.subscribe("/api/throttled/")  # the one request a minute this client may make
    answer = sock.request({"type": "subscribe", "url": "/api/throttled/?ordering=name"})
    assert (answer["type"], answer["code"]) == ("error", "rate_limited")
