"""Ticket sockets in this process: no Origin, no cookie, over the real channels_redis layer.

The application is the one a project mounts, ``OriginValidator`` included,
so a handshake without ``Origin`` is really judged by it.
"""

import secrets

import pytest
from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from django.contrib.auth.models import User
from rest_framework.authentication import BasicAuthentication, TokenAuthentication

from reactive_celery import protocol, tickets
from reactive_celery.origins import OriginValidator
from reactive_celery.routing import websocket_urlpatterns
from tests.testapp.models import Item

from . import TIMEOUT
from .conftest import Socket

APPLICATION = OriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))


def socket(path: str, cookie: str | None = None, origin: str | None = None) -> Socket:
    """A socket as a script opens it: a Host header, no Origin unless given."""
    headers = [(b"host", b"testserver")]
    if origin:
        headers.append((b"origin", origin.encode()))
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    return Socket(APPLICATION, path, headers)


def ticket_of(user, authenticated_by=TokenAuthentication) -> str:
    return tickets.issue(user, authenticated_by)


def subscriber_users(store_redis) -> list[str]:
    """The user recorded on every subscriber in the store."""
    records = [k for k in store_redis.keys("rc:sub:*") if store_redis.type(k) == "hash"]
    return [store_redis.hget(key, "user") for key in records]


async def closed_with(sock: Socket) -> int:
    """Accepted, then closed: the close code (a browser sees codes, never statuses)."""
    connected, code = await sock.connect(timeout=TIMEOUT)
    assert connected, code
    frame = await sock.receive_output(TIMEOUT)
    assert frame["type"] == "websocket.close", frame
    return int(frame["code"])


def test_a_ticket_socket_without_origin_subscribes_as_the_tickets_user(run, store_redis, user):
    Item.objects.create(name="alice's", owner=user)
    Item.objects.create(name="nobody's")

    async def body():
        sock = socket(f"/ws/reactive/?ticket={ticket_of(user)}")
        assert await sock.connect() == (True, None)
        await sock.send_json_to({"type": "subscribe", "id": 1, "url": "/api/token-own/"})
        answer = await sock.receive_json_from()
        assert answer["type"] == "subscribed", answer
        assert [item["name"] for item in answer["items"]] == ["alice's"]
        assert subscriber_users(store_redis) == [str(user.pk)]
        await sock.disconnect()

    run(body)


def test_a_ticket_socket_is_the_tickets_user_whatever_its_cookie_says(
    run, store_redis, user, user_cookie
):
    bob = User.objects.create_user("bob", password="secret")
    Item.objects.create(name="bob's", owner=bob)

    async def body():
        sock = socket(f"/ws/reactive/?ticket={ticket_of(bob)}", cookie=user_cookie)
        assert await sock.connect() == (True, None)
        await sock.send_json_to({"type": "subscribe", "id": 1, "url": "/api/token-own/"})
        answer = await sock.receive_json_from()
        assert [item["name"] for item in answer["items"]] == ["bob's"]
        await sock.disconnect()

    run(body)


@pytest.mark.parametrize("query", ["ticket=forged", "ticket=", "ticket"])
def test_a_bad_ticket_closes_with_4401_and_never_falls_back_to_the_cookie(
    run, store_redis, user_cookie, query
):
    async def body():
        sock = socket(f"/ws/reactive/?{query}", cookie=user_cookie)
        assert await closed_with(sock) == protocol.CLOSE_SESSION_ENDED
        await sock.disconnect(protocol.CLOSE_SESSION_ENDED)

    run(body)
    assert subscriber_users(store_redis) == []


def test_a_ticket_issued_before_a_password_change_is_refused_at_connect(run, store_redis, user):
    value = ticket_of(user)
    user.set_password("changed")
    user.save()

    async def body():
        sock = socket(f"/ws/reactive/?ticket={value}")
        assert await closed_with(sock) == protocol.CLOSE_SESSION_ENDED
        await sock.disconnect(protocol.CLOSE_SESSION_ENDED)

    run(body)
    assert subscriber_users(store_redis) == []


def test_a_password_change_closes_an_open_ticket_socket_at_once(run, store_redis, user):
    async def body():
        sock = socket(f"/ws/reactive/?ticket={ticket_of(user)}")
        assert await sock.connect() == (True, None)
        await sock.send_json_to({"type": "subscribe", "id": 1, "url": "/api/token-own/"})
        assert (await sock.receive_json_from())["type"] == "subscribed"
        # Through the per-user group, not the heartbeat: well inside HEARTBEAT_INTERVAL.
        refreshed = await User.objects.aget(pk=user.pk)
        refreshed.set_password("changed")
        await refreshed.asave()
        frame = await sock.receive_output(TIMEOUT)
        assert (frame["type"], frame["code"]) == ("websocket.close", protocol.CLOSE_SESSION_ENDED)
        await sock.disconnect(protocol.CLOSE_SESSION_ENDED)

    run(body)
    assert subscriber_users(store_redis) == []


@pytest.mark.parametrize(
    ("url", "authenticated_by", "named"),
    [
        ("/api/session-only/", TokenAuthentication, "SessionAuthentication"),
        ("/api/basic-only/", TokenAuthentication, "BasicAuthentication"),
        ("/api/token-own/", BasicAuthentication, "TokenAuthentication"),
    ],
)
def test_a_ticket_socket_is_refused_where_the_view_would_not_authenticate_as_the_ticket_did(
    run, store_redis, user, url, authenticated_by, named
):
    async def body():
        sock = socket(f"/ws/reactive/?ticket={ticket_of(user, authenticated_by)}")
        assert await sock.connect() == (True, None)
        await sock.send_json_to({"type": "subscribe", "id": 1, "url": url})
        answer = await sock.receive_json_from()
        assert (answer["type"], answer["code"]) == ("error", "forbidden"), answer
        assert named in answer["message"]
        assert tickets.dotted_path(authenticated_by) in answer["message"]
        await sock.disconnect()

    run(body)
    assert store_redis.keys("rc:obs:*") == []


def test_a_basic_ticket_subscribes_to_the_basic_only_view(run, store_redis, user):
    async def body():
        sock = socket(f"/ws/reactive/?ticket={ticket_of(user, BasicAuthentication)}")
        assert await sock.connect() == (True, None)
        await sock.send_json_to({"type": "subscribe", "id": 1, "url": "/api/basic-only/"})
        assert (await sock.receive_json_from())["type"] == "subscribed"
        await sock.disconnect()

    run(body)


def test_a_seed_socket_takes_a_ticket_too(run, store_redis, user, eventually):
    sid = secrets.token_urlsafe(12)

    async def body():
        sock = socket(f"/ws/{sid}?ticket={ticket_of(user)}")
        assert await sock.connect() == (True, None)
        await eventually(lambda: store_redis.hget(f"rc:sub:{sid}", "user"), "registered")
        assert store_redis.hget(f"rc:sub:{sid}", "user") == str(user.pk)
        await sock.disconnect()

    run(body)


def test_without_a_ticket_a_handshake_without_origin_is_still_refused(run, user_cookie):
    async def body():
        sock = socket("/ws/reactive/", cookie=user_cookie)
        assert await sock.connect() == (False, 1008)

    run(body)


def test_a_ticket_from_a_foreign_origin_is_refused(run, user):
    async def body():
        sock = socket(f"/ws/reactive/?ticket={ticket_of(user)}", origin="http://evil.example")
        assert await sock.connect() == (False, 1008)

    run(body)
