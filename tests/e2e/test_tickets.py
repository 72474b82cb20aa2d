"""A client outside a browser: a DRF token, a ticket over HTTP, a socket without Origin or cookie.

Real processes: the ticket comes from one uvicorn, the socket opens on the
other, the push is computed by a Celery worker.
"""

import json
import time

import pytest
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from reactive_celery.protocol import CLOSE_SESSION_ENDED
from tests.testapp.models import Item

pytestmark = [pytest.mark.e2e]


def token_user(name: str) -> tuple[User, dict[str, str]]:
    user = User.objects.create_user(name, password="old-password")
    return user, {"Authorization": f"Token {Token.objects.create(user=user).key}"}


def get_ticket(live, headers: dict[str, str]) -> str:
    response = live.http().post("/api/queryobserver/ticket", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["expires_in"] == 60
    return str(response.json()["ticket"])


def script_socket(live, query: str, path: str = "/ws/reactive/") -> connect:
    """What a script opens: no Origin header (websockets sends none unless told), no cookie."""
    return connect(f"ws://127.0.0.1:{live.ws_port}{path}?{query}", open_timeout=10)


def ask(sock: ClientConnection, message: dict) -> dict:
    sock.send(json.dumps(message))
    while True:
        frame = json.loads(sock.recv(timeout=15))
        if frame.get("id") == message["id"]:
            return frame


def closed_code(sock: ClientConnection, timeout: float = 15) -> int:
    deadline = time.monotonic() + timeout
    with pytest.raises(ConnectionClosed) as closed:  # noqa: PT012
        while time.monotonic() < deadline:
            sock.recv(timeout=max(0.1, deadline - time.monotonic()))
    return closed.value.rcvd.code


def test_a_token_client_gets_a_ticket_subscribes_receives_and_is_closed_by_a_password_change(
    live,
):
    alice, headers = token_user("alice")
    Item.objects.create(name="first", owner=alice)
    with script_socket(live, f"ticket={get_ticket(live, headers)}") as sock:
        answer = ask(sock, {"type": "subscribe", "id": 1, "url": "/api/token-own/"})
        assert answer["type"] == "subscribed", answer
        assert [item["name"] for item in answer["items"]] == ["first"]
        Item.objects.create(name="second", owner=alice)
        Item.objects.create(name="someone else's")
        push = json.loads(sock.recv(timeout=15))
        assert (push["type"], push["observer"]) == ("diff", answer["observer"])
        assert [entry["item"]["name"] for entry in push["added"]] == ["second"]
        alice.set_password("new-password")
        alice.save()
        assert closed_code(sock) == CLOSE_SESSION_ENDED
    live.wait_for(lambda: not live.redis.exists(f"rc:obs:{answer['observer']}"))


def test_a_ticket_socket_on_a_session_only_view_is_refused_with_forbidden(live):
    alice, headers = token_user("alice")
    with script_socket(live, f"ticket={get_ticket(live, headers)}") as sock:
        answer = ask(sock, {"type": "subscribe", "id": 1, "url": "/api/session-only/"})
        assert (answer["type"], answer["code"]) == ("error", "forbidden"), answer
        assert "SessionAuthentication" in answer["message"]
        assert "TokenAuthentication" in answer["message"]
    assert live.redis.keys("rc:obs:*") == []


def test_a_seed_socket_with_a_ticket_subscribes_over_http_with_the_token(live):
    alice, headers = token_user("alice")
    sid = "ticket-seed-socket-1"
    with script_socket(live, f"ticket={get_ticket(live, headers)}", f"/ws/{sid}") as sock:
        live.wait_for(lambda: live.redis.exists(f"rc:sub:{sid}"))
        response = live.http().get(f"/api/token-own/?observe={sid}", headers=headers)
        assert response.status_code == 200, response.text
        Item.objects.create(name="pushed", owner=alice)
        frame = json.loads(sock.recv(timeout=15))
        assert (frame["msg"], frame["item"]["name"]) == ("added", "pushed")


def test_a_bad_ticket_closes_with_4401_and_no_ticket_needs_an_origin(live):
    with script_socket(live, "ticket=forged") as sock:
        assert closed_code(sock) == CLOSE_SESSION_ENDED
    with pytest.raises(InvalidStatus) as refused, script_socket(live, "other=1"):
        pass
    assert refused.value.response.status_code == 403
