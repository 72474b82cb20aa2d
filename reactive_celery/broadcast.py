"""Sending to sockets through the channel layer: group names, sends with retry.

Messages are built in ``protocol``; each process batches
the sends of one step into a single event-loop call, because ``async_to_sync``
opens a fresh Redis connection per call.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import BaseChannelLayer, get_channel_layer

from .conf import reactive_settings
from .exceptions import ConfigurationError

__all__ = ["SEND_ATTEMPTS", "group_name", "layer", "send"]

#: Tries per step before the error reaches the caller.
SEND_ATTEMPTS = 3


def group_name(oid: str) -> str:
    """The channel-layer group of an observer: short, hashed, valid for every layer."""
    digest = hashlib.sha256(f"{reactive_settings.KEY_PREFIX}:{oid}".encode()).hexdigest()
    return f"reactive.{digest[:32]}"


def layer() -> BaseChannelLayer:
    """The configured channel layer; a clear error when there is none."""
    alias = reactive_settings.CHANNEL_LAYER
    channel_layer = get_channel_layer(alias)
    if channel_layer is None:
        raise ConfigurationError(
            f"No channel layer {alias!r}: add it to CHANNEL_LAYERS (channels_redis)."
        )
    return channel_layer


def send(
    *,
    group_sends: Iterable[tuple[str, dict[str, Any]]] = (),
    group_adds: Iterable[tuple[str, str]] = (),
    group_discards: Iterable[tuple[str, str]] = (),
    channel_sends: Iterable[tuple[str, dict[str, Any]]] = (),
) -> None:
    """Run every channel-layer operation of one step in one event-loop call.

    Order: discards, group messages, messages to single channels, adds: a socket
    joining after a catch-up diff is told so (fanout) after that diff.
    """
    channel_layer = layer()
    adds, sends, discards = list(group_adds), list(group_sends), list(group_discards)
    direct = list(channel_sends)

    async def run() -> None:
        for group, channel in discards:
            await channel_layer.group_discard(group, channel)
        for group, message in sends:
            await channel_layer.group_send(group, message)
        for channel, message in direct:
            await channel_layer.send(channel, message)
        for group, channel in adds:
            await channel_layer.group_add(group, channel)

    if not (adds or sends or discards or direct):
        return
    # The version is already stored: a lost push would leave clients silently behind.
    for attempt in range(SEND_ATTEMPTS):
        try:
            async_to_sync(run)()
            return
        except Exception:
            if attempt == SEND_ATTEMPTS - 1:
                raise
            time.sleep(0.1 * (attempt + 1))
