"""The process hub's naming and steering messages (fanout.py); sockets are in tests/consumers."""

import asyncio

import pytest
from channels.layers import channel_layers

from reactive_celery import broadcast, fanout, protocol


def test_the_hub_channel_is_the_process_part_of_a_socket_channel():
    assert fanout.hub_channel("specific.abc!123") == "specific.abc!reactive-hub"
    assert fanout.hub_channel("plain") is None


def test_join_steers_the_hub_then_adds_it_to_the_group():
    group = broadcast.group_name("o" * 64)
    sends, adds = fanout.join(group, "o" * 64, "specific.p!s1")
    assert sends == [
        (
            "specific.p!reactive-hub",
            {"type": fanout.FOLLOW, "observer": "o" * 64, "channel": "specific.p!s1"},
        )
    ]
    assert adds == [(group, "specific.p!reactive-hub")]


def test_a_channel_without_a_process_joins_the_group_itself():
    assert fanout.join("g", "o", "plain") == ([], [("g", "plain")])
    assert fanout.unfollow("o", "plain") == ([], [(broadcast.group_name("o"), "plain")])
    assert fanout.revoke("o", "plain", {"type": "x"}) == ("plain", {"type": "x"})


def test_unfollow_never_takes_the_hub_out_of_the_group_other_sockets_need():
    sends, discards = fanout.unfollow("o", "specific.p!s1")
    assert discards == []
    assert sends[0][1]["type"] == fanout.UNFOLLOW


def test_revoke_wraps_the_stop_for_the_hub():
    stop = protocol.stop_message("o", "forbidden", "No.")
    target, message = fanout.revoke("o", "specific.p!s1", stop)
    assert target == "specific.p!reactive-hub"
    assert message == {
        "type": fanout.REVOKE,
        "observer": "o",
        "channel": "specific.p!s1",
        "message": stop,
    }


class Layer:
    """Records the hub's group operations; its receive never answers (handle() is driven)."""

    def __init__(self):
        self.ops = []

    async def group_add(self, group, channel):
        self.ops.append(("add", group, channel))

    async def group_discard(self, group, channel):
        self.ops.append(("discard", group, channel))

    async def receive(self, channel):
        await asyncio.Event().wait()


class Socket:
    def __init__(self, name):
        self.channel_name = name
        self.pushed = []

    def push(self, oid, version, event):
        self.pushed.append((oid, version, event["type"]))


def test_the_hub_joins_on_the_first_follower_leaves_on_the_last_and_routes_in_order():
    # The layer here only records calls: the Redis-backed path is in tests/consumers.
    async def body():
        layer = Layer()
        hub = fanout.Hub(layer, "specific.p!reactive-hub")
        one, two = Socket("specific.p!1"), Socket("specific.p!2")
        hub.attach(one)
        hub.attach(two)
        group = broadcast.group_name("o")
        await hub.handle({"type": fanout.FOLLOW, "observer": "o", "channel": one.channel_name})
        await hub.handle({"type": fanout.FOLLOW, "observer": "o", "channel": two.channel_name})
        await hub.handle({"type": fanout.FOLLOW, "observer": "o", "channel": "specific.p!gone"})
        assert layer.ops == [("add", group, hub.channel)]
        await hub.handle(protocol.diff_message("o", 2, "id", []))
        stop = protocol.stop_message("o", "forbidden", "No.")
        await hub.handle(fanout.revoke("o", one.channel_name, stop)[1])
        await hub.handle(protocol.diff_message("o", 3, "id", []))
        assert one.pushed == [("o", 2, "reactive.diff"), ("o", None, "reactive.error")]
        assert two.pushed == [("o", 2, "reactive.diff"), ("o", 3, "reactive.diff")]
        await hub.handle({"type": fanout.UNFOLLOW, "observer": "o", "channel": two.channel_name})
        assert layer.ops[-1] == ("discard", group, hub.channel)
        assert hub.follows("o") == set()
        await hub.close()

    asyncio.run(body())


def test_a_stopped_observer_ends_every_local_follower():
    async def body():
        hub = fanout.Hub(Layer(), "specific.p!reactive-hub")
        one = Socket("specific.p!1")
        await hub.follow("o", one)
        await hub.handle(protocol.stop_message("o", "gone", "Gone."))
        assert one.pushed == [("o", None, "reactive.error")]
        assert hub.follows("o") == set()
        await hub.close()

    asyncio.run(body())


def test_an_unknown_message_is_one_log_line(caplog):
    async def body():
        hub = fanout.Hub(Layer(), "specific.p!reactive-hub")
        await hub.handle({"type": "reactive.bogus", "observer": "o"})
        await hub.close()

    asyncio.run(body())
    assert [r.getMessage() for r in caplog.records] == [
        "Fan-out hub specific.p!reactive-hub: unknown message type 'reactive.bogus'"
    ]


@pytest.mark.parametrize("channel", ["specific.p!1", "specific.q!1"])
def test_one_hub_per_event_loop_and_process(channel):
    async def body():
        first = await fanout.hub(Layer(), channel)
        assert await fanout.hub(Layer(), channel) is first
        assert first is not None and first.channel == fanout.hub_channel(channel)
        assert await fanout.hub(Layer(), "plain") is None
        await first.close()

    asyncio.run(body())


def test_on_a_sharded_layer_the_hub_channel_lands_on_its_process_shard(settings):
    # channels_redis sends to a process channel by the hash of its full name and
    # receives by the hash of its process part: the hub's name must agree on both.
    alias = settings.REACTIVE_CELERY.get("CHANNEL_LAYER", "default")
    sharded = {**settings.CHANNEL_LAYERS[alias]}
    sharded["CONFIG"] = {
        **sharded.get("CONFIG", {}),
        "hosts": [f"redis://127.0.0.1:{port}/2" for port in (1, 2, 3)],
    }
    settings.CHANNEL_LAYERS = {**settings.CHANNEL_LAYERS, alias: sharded}
    channel_layers.backends.pop(alias, None)
    try:
        layer = broadcast.layer()
        assert layer.ring_size == 3
        homes = set()
        for n in range(40):
            process = f"specific.process{n}"
            hub = fanout.hub_channel(f"{process}!socket")
            assert hub.startswith(f"{process}!reactive-hub")
            assert layer.consistent_hash(hub) == layer.consistent_hash(f"{process}!")
            homes.add(layer.consistent_hash(hub))
        assert homes == {0, 1, 2}  # processes still spread over every shard
    finally:
        channel_layers.backends.pop(alias, None)
