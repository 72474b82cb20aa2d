"""Bad input gets a clear error and changes nothing."""

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.e2e.conftest import Socket
from tests.testapp.models import Item

pytestmark = [pytest.mark.e2e]


def state_keys(live):
    return sorted(live.redis.keys("rc:*"))


def test_unknown_subscriber_id_is_400(live):
    before = state_keys(live)
    response = live.http().get("/api/items/?observe=neverconnected123")
    assert response.status_code == 400
    assert "Unknown subscriber" in response.json()["observe"][0]
    assert state_keys(live) == before


@pytest.mark.parametrize("sid", ["", "short", "has space!", "x" * 65, "../../etc"])
def test_malformed_subscriber_id_is_400(live, sid):
    before = state_keys(live)
    response = live.http().get("/api/items/", params={"observe": sid})
    assert response.status_code == 400
    assert "Malformed subscriber id" in response.json()["observe"][0]
    assert state_keys(live) == before


def test_malformed_socket_id_is_refused(live):
    with pytest.raises((ConnectionClosed, InvalidStatus)):
        sock = Socket(live.ws_port, sid="bad")
        sock.recv(timeout=5)


def test_unsubscribe_unknown_ids_is_404(live):
    sock = live.socket()
    answer = live.observe("/api/items/", sock)
    before = state_keys(live)
    client = live.http()
    cases = [
        {"observer": "0" * 64, "subscriber": sock.id},
        {"observer": answer["observer"], "subscriber": "unknownsubscriber"},
    ]
    for params in cases:
        response = client.post("/api/queryobserver/unsubscribe", params=params)
        assert response.status_code == 404, params
    assert client.post("/api/queryobserver/unsubscribe").status_code == 400
    assert state_keys(live) == before


def test_unsubscribe_stops_pushes_and_drops_the_observer(live):
    kept, leaving = live.socket(), live.socket()
    live.observe("/api/items/", kept)
    answer = live.observe("/api/items/", leaving)
    response = live.http().post(
        "/api/queryobserver/unsubscribe",
        params={"observer": answer["observer"], "subscriber": leaving.id},
    )
    assert response.status_code == 204
    item = Item.objects.create(name="after")
    assert kept.recv()["item"]["id"] == item.pk
    with pytest.raises(TimeoutError):
        leaving.recv(timeout=1)


def test_socket_close_removes_subscriber_and_observer(live):
    sock = live.socket()
    answer = live.observe("/api/items/", sock)
    assert live.redis.exists(f"rc:obs:{answer['observer']}")
    sock.close()
    import time

    deadline = time.monotonic() + 10
    while live.redis.keys("rc:*") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert live.redis.keys("rc:*") == []


def test_client_frames_get_an_error_frame(live):
    sock = live.socket()
    sock.connection.send("{not json")
    frame = sock.recv()
    assert frame["msg"] == "error"
    assert "subscribe" in frame["error"]


def test_someone_elses_subscriber_id_is_refused_on_the_socket(live):
    from django.contrib.auth.models import User

    alice = User.objects.create_user("alice")
    bob = User.objects.create_user("bob")
    alice_sock = Socket(live.ws_port, live.login(alice))
    live._sockets.append(alice_sock)
    with pytest.raises(ConnectionClosed) as closed:
        stolen = Socket(live.ws_port, live.login(bob), sid=alice_sock.id)
        stolen.recv(timeout=5)
    assert closed.value.rcvd.code == 4403
    assert live.redis.hget(f"rc:sub:{alice_sock.id}", "user") == str(alice.pk)
