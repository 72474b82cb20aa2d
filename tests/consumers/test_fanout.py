"""Sockets behind the process hub (fanout.py), in-process over the real channels_redis layer.

Subscriptions go through the real HTTP subscribe and unsubscribe views; the
group's members are read from channels_redis's own keys in Redis.
"""

import secrets

from asgiref.sync import sync_to_async
from django.test import Client

from reactive_celery import broadcast, fanout, protocol

from . import TIMEOUT

SOCKETS = 20


def members(layer_redis, oid):
    return set(layer_redis.zrange(f"asgi:group:{broadcast.group_name(oid)}", 0, -1))


def added(oid, version, pk):
    change = {"msg": "added", "order": 0, "item": {"id": pk, "name": f"item {pk}"}}
    return protocol.diff_message(oid, version, "id", [change])


def test_many_sockets_of_one_process_are_one_group_member_and_each_gets_every_version_once(
    run, sockets, layer, layer_redis, store_redis, transactional_db
):
    sids = [secrets.token_urlsafe(12) for _ in range(SOCKETS)]

    async def body():
        opened = [sockets.communicator(f"/ws/{sid}") for sid in sids]
        for socket in opened:
            assert (await socket.connect())[0]
        answers = [
            (await sync_to_async(Client().get)(f"/api/items/?observe={sid}")).json() for sid in sids
        ]
        oid, version = answers[0]["observer"], answers[-1]["version"]
        assert {answer["observer"] for answer in answers} == {oid}
        channel = store_redis.hget(f"rc:sub:{sids[0]}", "channel")
        # One member, so each group_send is one message on Redis for the whole process.
        assert members(layer_redis, oid) == {fanout.hub_channel(channel)}
        for step in (1, 2, 3):
            await layer.group_send(broadcast.group_name(oid), added(oid, version + step, step))
        for socket in opened:
            frames = [await socket.receive_json_from(timeout=TIMEOUT) for _ in range(3)]
            assert [frame["version"] for frame in frames] == [version + 1, version + 2, version + 3]
            assert await socket.receive_nothing(timeout=0.05)
        for socket in opened:
            await socket.disconnect()
        return oid

    oid = None

    async def wrapped():
        nonlocal oid
        oid = await body()

    run(wrapped)
    # The last local socket gone, the process left the group.
    assert members(layer_redis, oid) == set()


def test_an_unsubscribed_socket_stops_receiving_while_the_others_go_on(
    run, sockets, layer, layer_redis, store_redis, transactional_db
):
    sids = [secrets.token_urlsafe(12) for _ in range(2)]

    async def body():
        async with sockets.open(f"/ws/{sids[0]}") as one, sockets.open(f"/ws/{sids[1]}") as two:
            answer = {}
            for sid in sids:
                answer = (await sync_to_async(Client().get)(f"/api/items/?observe={sid}")).json()
            oid, version = answer["observer"], answer["version"]
            response = await sync_to_async(Client().post)(
                f"/api/queryobserver/unsubscribe?observer={oid}&subscriber={sids[0]}"
            )
            assert response.status_code in (200, 204), response.content
            await layer.group_send(broadcast.group_name(oid), added(oid, version + 1, 1))
            assert (await two.receive_json_from(timeout=TIMEOUT))["version"] == version + 1
            assert await one.receive_nothing(timeout=0.2)
            # The process still follows for the other socket.
            assert len(members(layer_redis, oid)) == 1
            # And the first one can join again.
            again = (await sync_to_async(Client().get)(f"/api/items/?observe={sids[0]}")).json()
            await layer.group_send(broadcast.group_name(oid), added(oid, again["version"] + 1, 2))
            assert (await one.receive_json_from(timeout=TIMEOUT))["version"] == again["version"] + 1

    run(body)
