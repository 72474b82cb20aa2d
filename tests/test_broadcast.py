"""Group names and sends, through the real channels_redis layer."""

import re

import pytest
from channels.layers import get_channel_layer

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
