"""Group names and sends, through the real channels_redis layer."""

import asyncio
import os
import re

import pytest
import redis
from channels.layers import get_channel_layer
from django.conf import settings

from reactive_celery import broadcast
from reactive_celery.exceptions import ConfigurationError
from tests.conftest import MARKER


def test_group_names_are_stable_short_and_valid_for_the_layer(settings):
    name = broadcast.group_name("a" * 64)
    assert name == broadcast.group_name("a" * 64)
    assert re.fullmatch(r"reactive\.[0-9a-f]{32}", name)
    assert get_channel_layer().require_valid_group_name(name)
    assert broadcast.group_name("b" * 64) != name
    settings.REACTIVE_CELERY = {**settings.REACTIVE_CELERY, "KEY_PREFIX": "other"}
    assert broadcast.group_name("a" * 64) != name  # two projects on one layer stay apart


def test_send_delivers_a_group_message_through_the_layer(listener):
    group = broadcast.group_name("o1")
    listener.join(group)
    broadcast.send(group_sends=[(group, {"type": "reactive.diff", "version": 1})])
    assert listener.receive() == {"type": "reactive.diff", "version": 1}


def test_one_step_discards_then_sends_then_adds(listener):
    joined, left = broadcast.group_name("joined"), broadcast.group_name("left")
    listener.join(left)
    broadcast.send(
        group_discards=[(left, listener.channel)],
        group_sends=[(joined, {"type": "first"}), (left, {"type": "to.left"})],
        group_adds=[(joined, listener.channel)],
    )
    # Added after the send: the socket starts after that message, as a joining one must.
    # Discarded before the send to its old group; added to the new one after its send.
    assert listener.next_after_marker() == MARKER
    broadcast.send(group_sends=[(joined, {"type": "second"})])
    assert listener.receive() == {"type": "second"}


def test_a_missing_layer_is_a_configuration_error_naming_the_alias(settings):
    settings.REACTIVE_CELERY = {**settings.REACTIVE_CELERY, "CHANNEL_LAYER": "absent"}
    with pytest.raises(ConfigurationError, match="No channel layer 'absent'.*CHANNEL_LAYERS"):
        broadcast.layer()
    with pytest.raises(ConfigurationError):
        broadcast.send(group_sends=[("reactive.x", {"type": "x"})])


def _connections_received(client: redis.Redis) -> int:
    return int(client.info("stats")["total_connections_received"])


def test_many_sends_from_one_process_share_one_layer_connection(listener):
    group = broadcast.group_name("o1")
    listener.join(group)
    broadcast.send(group_sends=[(group, {"type": "first"})])  # connects, once per process
    host = settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0]
    server = redis.Redis.from_url(host["address"])
    before = _connections_received(server)
    for n in range(40):
        broadcast.send(group_sends=[(group, {"type": "n", "n": n})])
    # A connection per send would add 40; the slack is for other processes on the server.
    assert _connections_received(server) - before <= 3
    server.close()
    assert listener.receive() == {"type": "first"}
    assert [listener.receive()["n"] for _ in range(40)] == list(range(40))


def test_a_forked_child_sends_through_a_loop_of_its_own(listener):
    group = broadcast.group_name("o1")
    listener.join(group)
    broadcast.send(group_sends=[(group, {"type": "parent"})])  # the parent's loop is running
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            broadcast.send(group_sends=[(group, {"type": "child", "pid": os.getpid()})])
            code = 0 if broadcast.process_loop().is_running() else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert listener.receive() == {"type": "parent"}
    assert listener.receive() == {"type": "child", "pid": pid}


def test_send_refuses_to_block_a_running_event_loop(listener):
    async def from_a_coroutine() -> None:
        broadcast.send(group_sends=[(broadcast.group_name("o1"), {"type": "x"})])

    with pytest.raises(RuntimeError, match="sync_to_async"):
        asyncio.run(from_a_coroutine())
