"""The seed protocol's consumer (``ws/<subscriber_id>``), in-process over the real layer."""

import secrets
import time

import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from reactive_celery import broadcast, protocol
from reactive_celery.store import subscribers
from tests.testapp.models import Item

from . import TIMEOUT


def new_sid() -> str:
    return secrets.token_urlsafe(12)


@pytest.mark.parametrize("sid", ["short", "has.a.dot", "x" * 65])
def test_a_malformed_id_is_closed_with_4400(run, sockets, store_redis, sid):
    async def body():
        async with sockets.open(f"/ws/{sid}") as socket:
            closed = await socket.receive_output(timeout=TIMEOUT)
            assert closed == {
                "type": "websocket.close",
                "code": protocol.CLOSE_BAD_ID,
                "reason": protocol.CLOSE_REASONS[protocol.CLOSE_BAD_ID],
            }

    run(body)
    assert store_redis.keys("rc:sub:*") == []


@pytest.mark.django_db(transaction=True)
def test_an_id_held_by_another_users_socket_is_closed_with_4403(
    run, sockets, store_redis, user, user_cookie, eventually
):
    sid = new_sid()

    async def body():
        async with sockets.open(f"/ws/{sid}", cookie=user_cookie):
            held = await eventually(lambda: store_redis.hgetall(f"rc:sub:{sid}"), "claimed")
            async with sockets.open(f"/ws/{sid}") as anonymous:
                closed = await anonymous.receive_output(timeout=TIMEOUT)
                assert closed == {
                    "type": "websocket.close",
                    "code": protocol.CLOSE_FOREIGN_ID,
                    "reason": protocol.CLOSE_REASONS[protocol.CLOSE_FOREIGN_ID],
                }
            # The refused socket's close leaves the owner's state alone.
            assert store_redis.hgetall(f"rc:sub:{sid}") == held
            assert held["user"] == str(user.pk)

    run(body)


@pytest.mark.parametrize("frame", [{"text_data": '{"type": "ping"}'}, {"bytes_data": b"\x00"}])
def test_client_frames_are_answered_unsupported(run, sockets, frame):
    async def body():
        async with sockets.open(f"/ws/{new_sid()}") as socket:
            await socket.send_to(**frame)
            answer = await socket.receive_json_from(timeout=TIMEOUT)
            assert (answer["msg"], answer["code"]) == ("error", "unsupported")
            assert "observe" in answer["error"]

    run(body)


@pytest.mark.django_db(transaction=True)
def test_a_group_diff_arrives_as_one_frame_per_item_with_the_version(
    run, sockets, layer, eventually, store_redis
):
    first, second = Item.objects.create(name="first"), Item.objects.create(name="second")
    sid = new_sid()
    changes = [
        {"msg": "removed", "order": 1, "item": {"id": second.pk, "name": "second"}},
        {"msg": "added", "order": 0, "item": {"id": 99, "name": "new"}},
        {"msg": "changed", "order": 1, "item": {"id": first.pk, "name": "renamed"}},
    ]

    async def body():
        async with sockets.open(f"/ws/{sid}") as socket:
            await eventually(lambda: store_redis.exists(f"rc:sub:{sid}"), "claimed")
            response = await sync_to_async(Client().get)(f"/api/items/?observe={sid}")
            assert response.status_code == 200
            answer = response.json()
            assert [item["name"] for item in answer["items"]] == ["first", "second"]
            oid, version = answer["observer"], answer["version"] + 1
            message = protocol.diff_message(oid, version, "id", changes)
            await layer.group_send(broadcast.group_name(oid), message)
            frames = [await socket.receive_json_from(timeout=TIMEOUT) for _ in changes]
            assert frames == [
                {
                    "msg": change["msg"],
                    "observer": oid,
                    "primary_key": "id",
                    "order": change["order"],
                    "item": change["item"],
                    "version": version,
                }
                for change in changes
            ]
            assert await socket.receive_nothing(timeout=0.2)

    run(body)


def test_a_group_error_sends_the_stop_and_ends_the_subscription(
    run, sockets, layer, layer_redis, store_redis, eventually
):
    sid, oid = new_sid(), secrets.token_hex(32)
    group = broadcast.group_name(oid)

    def members():
        return layer_redis.zrange(f"asgi:group:{group}", 0, -1)

    async def body():
        async with sockets.open(f"/ws/{sid}") as socket:
            channel = await eventually(lambda: store_redis.hget(f"rc:sub:{sid}", "channel"), "")
            await layer.group_add(group, channel)
            await layer.group_send(group, protocol.stop_message(oid, "forbidden", "No longer."))
            stop = await socket.receive_json_from(timeout=TIMEOUT)
            assert stop == {
                "msg": "error",
                "observer": oid,
                "code": "forbidden",
                "error": "No longer.",
            }
            await eventually(lambda: members() == [], "left the group")
            change = {"msg": "added", "order": 0, "item": {"id": 1}}
            await layer.group_send(group, protocol.diff_message(oid, 2, "id", [change]))
            assert await socket.receive_nothing(timeout=0.2)

    run(body)


@pytest.mark.django_db(transaction=True)
def test_seed_socket_is_registered_before_its_handshake_completes(run, sockets, monkeypatch):
    # docs/protocol.md: open ws/<id>, then GET ?observe=<id>. A Redis round trip
    # slower than the client's GET (here 0.5 s) must not turn that into a 400.
    register = subscribers.register

    def slow_register(*args, **kwargs):
        time.sleep(0.5)
        return register(*args, **kwargs)

    monkeypatch.setattr(subscribers, "register", slow_register)
    sid = secrets.token_urlsafe(12)

    async def body():
        async with sockets.open(f"/ws/{sid}"):
            response = await sync_to_async(Client().get)(f"/api/items/?observe={sid}")
            assert response.status_code == 200, response.json()

    run(body)
