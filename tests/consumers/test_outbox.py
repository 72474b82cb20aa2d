"""A socket's bounded outgoing frames (consumers/outbox.py)."""

import asyncio

from reactive_celery.consumers.outbox import Outbox


def test_frames_go_out_in_order():
    async def body():
        box, sent = Outbox(limit=10), []

        async def send(text):
            sent.append(text)

        box.put("a", 1, ["a1"])
        box.put("b", None, ["stop"])
        box.put("a", 2, ["a2", "a2'"])
        writer = asyncio.ensure_future(box.drain(send))
        while box.entries:
            await asyncio.sleep(0)
        writer.cancel()
        return sent

    assert asyncio.run(body()) == ["a1", "stop", "a2", "a2'"]


def test_a_client_that_stops_reading_gets_each_observers_latest_diff_only():
    box = Outbox(limit=4)
    for version in range(1, 101):
        box.put("a", version, [f"a{version}"])
        box.put("b", version, [f"b{version}"])
    box.put("a", None, ["stop"])
    # Memory stays bounded however long the client is away.
    assert box.frames <= 5
    kept = [(oid, version) for oid, version, _ in box.entries]
    assert ("a", None) in kept
    assert [v for oid, v in kept if oid == "a" and v is not None] == [100]
    assert [v for oid, v in kept if oid == "b"] == [100]
    assert box.coalesced > 0


def test_held_frames_wait_for_the_answer():
    async def body():
        box, sent = Outbox(), []

        async def send(text):
            sent.append(text)

        writer = asyncio.ensure_future(box.drain(send))
        box.hold()
        box.put("a", 1, ["diff"])
        for _ in range(5):
            await asyncio.sleep(0)
        held = list(sent)
        sent.append("answer")
        box.release()
        while box.entries:
            await asyncio.sleep(0)
        await asyncio.sleep(0)
        writer.cancel()
        return held, sent

    held, sent = asyncio.run(body())
    assert held == []
    assert sent == ["answer", "diff"]


def test_a_slow_socket_does_not_block_the_caller():
    async def body():
        box, gate = Outbox(limit=3), asyncio.Event()

        async def send(text):
            await gate.wait()  # a client whose buffer is full

        writer = asyncio.ensure_future(box.drain(send))
        for version in range(50):
            box.put("a", version, ["x"])  # returns at once: the hub never waits
            await asyncio.sleep(0)
        writer.cancel()
        return box.frames

    assert asyncio.run(body()) <= 3


def test_diffs_the_answer_already_holds_are_not_sent():
    async def body():
        box, sent = Outbox(), []

        async def send(text):
            sent.append(text)

        box.hold()
        writer = asyncio.ensure_future(box.drain(send))
        box.put("a", 7, ["a7"])
        box.put("a", 8, ["a8"])
        box.put("b", 3, ["b3"])
        box.floor["a"] = 7  # the subscribe answered version 7
        box.release()
        while box.entries:
            await asyncio.sleep(0)
        writer.cancel()
        return sent

    assert asyncio.run(body()) == ["a8", "b3"]
