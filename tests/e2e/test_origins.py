"""The handshake's Origin check on a real ASGI server: only the page's own origin opens a socket.

Issue 9 (6): behind Channels' AllowedHostsOriginValidator a page on another
port of an allowed host opened a socket that carried the user's cookie.
"""

import json

import pytest
from django.contrib.auth.models import User
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.testapp.models import Item

pytestmark = [pytest.mark.e2e]


def open_socket(port, origin, cookies):
    headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}
    if origin is not None:
        headers["Origin"] = origin
    return connect(
        f"ws://127.0.0.1:{port}/ws/reactive/", additional_headers=headers, open_timeout=10
    )


@pytest.mark.parametrize(
    "origin",
    [
        pytest.param("http://127.0.0.1:{other}", id="another-port"),
        pytest.param("http://localhost:{port}", id="another-allowed-host"),
        pytest.param("https://127.0.0.1:{port}", id="https-for-a-ws-socket"),
        pytest.param(None, id="no-origin"),
    ],
)
def test_a_socket_from_another_origin_is_refused_with_403(live, origin):
    cookies = live.login(User.objects.create_user("alice"))
    port = live.ws_port
    if origin is not None:
        origin = origin.format(port=port, other=live.http_port)
    with pytest.raises(InvalidStatus) as refused:
        open_socket(port, origin, cookies)
    assert refused.value.response.status_code == 403
    server = live.cluster["servers"][0]
    expected = f"Origin {origin!r}" if origin else "Origin missing"
    live.wait_for(lambda: expected in server.output(), timeout=5)
    assert "Traceback" not in server.output()


def test_the_page_s_own_origin_opens_a_socket_that_receives_changes(live):
    cookies = live.login(User.objects.create_user("alice"))
    port = live.ws_port
    with open_socket(port, f"http://127.0.0.1:{port}", cookies) as sock:
        sock.send(json.dumps({"type": "subscribe", "url": "/api/items/", "id": 1}))
        answer = json.loads(sock.recv(timeout=15))
        assert (answer["type"], answer["id"]) == ("subscribed", 1)
        Item.objects.create(name="seen")
        pushed = json.loads(sock.recv(timeout=15))
        assert "seen" in json.dumps(pushed)


def test_a_trusted_origin_opens_a_socket(live, spawn, settings):
    from tests import processes

    port = processes.free_port()
    trusted = {"REACTIVE_TEST_CSRF_TRUSTED_ORIGINS": "http://*.example.test:8443"}
    spawn(processes.asgi_server, port, env=trusted)
    cookies = live.login(User.objects.create_user("alice"))
    with open_socket(port, "http://app.example.test:8443", cookies) as sock:
        sock.send(json.dumps({"type": "subscribe", "url": "/api/items/", "id": 1}))
        assert json.loads(sock.recv(timeout=15))["type"] == "subscribed"
    with pytest.raises(InvalidStatus):
        open_socket(port, "http://app.example.test:8444", cookies)
