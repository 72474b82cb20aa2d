"""What both protocols share (consumers/base.py): claim, heartbeat, clean-up, encoding.

Sockets run in this process; the store and the channel layer are the real
Redis databases of the test settings.
"""

import json
import secrets

import pytest

from reactive_celery import broadcast, fanout, protocol
from reactive_celery.consumers import SubscriberConsumer, base
from reactive_celery.store import observers, subscribers

from . import TIMEOUT


def new_sid() -> str:
    return secrets.token_urlsafe(12)


def new_oid() -> str:
    return secrets.token_hex(32)


def follow(sid: str, oid: str, user: str = "") -> None:
    """State a socket left behind: ``sid`` follows an observer of the items table.

    Only a signed-in user's new socket inherits it: an anonymous id proves nothing.
    """
    if subscribers.get(sid) is None:
        subscribers.register(sid, "specific.gone!old", user)
    observers.save(
        oid, spec="{}", items=[], meta={}, version=1, tables=["testapp_item"], creator=user
    )
    subscribers.subscribe(oid, sid)


def group_members(layer_redis, oid: str) -> set[str]:
    """The channels channels_redis holds in an observer's group."""
    return set(layer_redis.zrange(f"asgi:group:{broadcast.group_name(oid)}", 0, -1))


def added(oid: str, version: int, pk: int) -> dict:
    change = {"msg": "added", "order": 0, "item": {"id": pk, "name": f"item {pk}"}}
    return protocol.diff_message(oid, version, "id", [change])


def test_claim_registers_the_socket_and_rejoins_the_groups_it_followed(
    run, sockets, layer, store_redis, layer_redis, eventually, user, user_cookie
):
    sid, oid = new_sid(), new_oid()
    follow(sid, oid, str(user.pk))

    async def body():
        async with sockets.open(f"/ws/{sid}", cookie=user_cookie) as socket:
            # The seed socket accepts first and claims after.
            await eventually(lambda: group_members(layer_redis, oid), "group joined")
            record = store_redis.hgetall(f"rc:sub:{sid}")
            assert record["user"] == str(user.pk)
            assert record["channel"] != "specific.gone!old"
            # One member per process: the hub of the socket's process, not the socket.
            assert group_members(layer_redis, oid) == {fanout.hub_channel(record["channel"])}
            await layer.group_send(broadcast.group_name(oid), added(oid, 2, 7))
            frame = await socket.receive_json_from(timeout=TIMEOUT)
            assert (frame["msg"], frame["item"]["id"], frame["version"]) == ("added", 7, 2)

    run(body)


@pytest.mark.django_db(transaction=True)
def test_claim_records_the_sessions_user(run, sockets, store_redis, user, user_cookie, eventually):
    sid = new_sid()

    async def body():
        async with sockets.open(f"/ws/{sid}", cookie=user_cookie):
            record = await eventually(lambda: store_redis.hgetall(f"rc:sub:{sid}"), "claimed")
            assert record["user"] == str(user.pk)

    run(body)


def test_heartbeat_renews_the_subscriber_and_re_adds_its_groups(
    run, sockets, layer, store_redis, layer_redis, eventually, user, user_cookie
):
    sid, oid = new_sid(), new_oid()
    follow(sid, oid, str(user.pk))
    group = broadcast.group_name(oid)

    async def body():
        async with sockets.open(f"/ws/{sid}", cookie=user_cookie) as socket:
            (channel,) = await eventually(lambda: group_members(layer_redis, oid), "claimed")
            # As channels_redis' group expiry would: the membership is gone.
            await layer.group_discard(group, channel)
            store_redis.expire(f"rc:sub:{sid}", 3)
            await eventually(lambda: channel in group_members(layer_redis, oid), "group re-added")
            await eventually(lambda: store_redis.ttl(f"rc:sub:{sid}") > 3, "subscriber renewed")
            await layer.group_send(group, added(oid, 2, 1))
            frame = await socket.receive_json_from(timeout=TIMEOUT)
            assert frame["version"] == 2

    run(body)


def test_socket_whose_state_vanished_is_closed_with_4408(
    run, sockets, store_redis, layer_redis, eventually, user, user_cookie
):
    sid, oid = new_sid(), new_oid()
    follow(sid, oid, str(user.pk))

    async def body():
        async with sockets.open(f"/ws/{sid}", cookie=user_cookie) as socket:
            await eventually(lambda: group_members(layer_redis, oid), "claimed")
            store_redis.delete(f"rc:sub:{sid}", f"rc:sub:{sid}:obs")  # Redis lost it
            closed = await socket.receive_output(timeout=TIMEOUT)
            assert closed == {
                "type": "websocket.close",
                "code": protocol.CLOSE_STATE_LOST,
                "reason": protocol.CLOSE_REASONS[protocol.CLOSE_STATE_LOST],
            }

    run(body)


def test_heartbeat_of_a_socket_whose_id_was_taken_over_closes_the_old_socket(
    run, sockets, store_redis, eventually
):
    sid = new_sid()

    def channel():
        return store_redis.hget(f"rc:sub:{sid}", "channel")

    async def body():
        async with sockets.open(f"/ws/{sid}") as first:
            old = await eventually(channel, "first claim")
            async with sockets.open(f"/ws/{sid}") as second:
                await eventually(lambda: channel() != old, "second claim")
                closed = await first.receive_output(timeout=TIMEOUT)
                assert closed == {
                    "type": "websocket.close",
                    "code": protocol.CLOSE_STATE_LOST,
                    "reason": protocol.CLOSE_REASONS[protocol.CLOSE_STATE_LOST],
                }
                # The old socket's close must not take the new socket's state with it.
                assert store_redis.hget(f"rc:sub:{sid}", "channel") != old
                assert await second.receive_nothing(timeout=0.2)

    run(body)


def test_disconnect_removes_the_subscriber_and_its_subscriptions(
    run, sockets, store_redis, layer_redis, eventually, user, user_cookie
):
    sid, kept, dropped = new_sid(), new_oid(), new_oid()
    follow(sid, kept, str(user.pk))
    follow(sid, dropped, str(user.pk))
    follow("another-socket", kept)

    async def body():
        async with sockets.open(f"/ws/{sid}", cookie=user_cookie):
            await eventually(lambda: group_members(layer_redis, dropped), "claimed")
            assert len(group_members(layer_redis, kept)) == 1

    run(body)
    assert not store_redis.exists(f"rc:sub:{sid}", f"rc:sub:{sid}:obs")
    assert subscribers.followers(kept) == {"another-socket"}
    assert observers.load(dropped) is None  # its last subscriber left
    assert group_members(layer_redis, kept) == set()
    assert group_members(layer_redis, dropped) == set()


def test_a_handler_that_raises_still_removes_the_subscriber(
    run, sockets, layer, store_redis, layer_redis, eventually, user, user_cookie
):
    sid, oid = new_sid(), new_oid()
    follow(sid, oid, str(user.pk))

    async def body():
        socket = sockets.communicator(f"/ws/{sid}", cookie=user_cookie)
        assert (await socket.connect(timeout=TIMEOUT))[0]
        channel = await eventually(lambda: store_redis.hget(f"rc:sub:{sid}", "channel"), "claimed")
        # No handler for this type: Channels raises inside the consumer.
        await layer.send(channel, {"type": "reactive.bogus"})
        await eventually(lambda: not store_redis.exists(f"rc:sub:{sid}"), "subscriber removed")
        with pytest.raises(ValueError, match="reactive.bogus"):
            await socket.wait(timeout=TIMEOUT)

    run(body)
    assert observers.load(oid) is None


def test_one_group_message_is_encoded_once_for_every_socket_of_the_process(
    run, sockets, layer, layer_redis, eventually, monkeypatch, user, user_cookie
):
    sids, oid = [new_sid(), new_sid()], new_oid()
    for sid in sids:
        follow(sid, oid, str(user.pk))
    builds = []

    def counting(event):
        builds.append(event["version"])
        return protocol.seed_diffs(event)

    monkeypatch.setattr(SubscriberConsumer, "diff_frames", staticmethod(counting))

    async def body():
        async with (
            sockets.open(f"/ws/{sids[0]}", cookie=user_cookie) as one,
            sockets.open(f"/ws/{sids[1]}", cookie=user_cookie) as two,
        ):
            # Both claimed before their handshakes completed; one member for the process.
            assert len(group_members(layer_redis, oid)) == 1
            await layer.group_send(broadcast.group_name(oid), added(oid, 2, 3))
            texts = [await s.receive_from(timeout=TIMEOUT) for s in (one, two)]
            assert texts[0] == texts[1]
            assert json.loads(texts[0])["item"]["id"] == 3

    run(body)
    assert builds == [2]


def test_encoded_frames_are_keyed_by_protocol_observer_and_version():
    oid = new_oid()
    builds = []

    def build(event):
        builds.append(event["version"])
        return protocol.seed_diffs(event)

    first = base.encoded_frames("seed", added(oid, 2, 1), build)
    assert base.encoded_frames("seed", added(oid, 2, 1), build) is first
    base.encoded_frames("seed", added(oid, 3, 1), build)
    base.encoded_frames("batched", added(oid, 3, 1), build)
    assert builds == [2, 3, 3]
    assert [json.loads(text) for text in first] == protocol.seed_diffs(added(oid, 2, 1))


def test_the_encoding_cache_forgets_its_oldest_entries():
    oids = [new_oid() for _ in range(base._ENCODED_LIMIT + 1)]
    builds = []

    def build(event):
        builds.append(event["observer"])
        return protocol.seed_diffs(event)

    for oid in oids:
        base.encoded_frames("seed", added(oid, 1, 1), build)
    base.encoded_frames("seed", added(oids[-1], 1, 1), build)  # still held
    base.encoded_frames("seed", added(oids[0], 1, 1), build)  # evicted: built again
    assert builds == [*oids, oids[0]]
    assert len(base._ENCODED) == base._ENCODED_LIMIT
