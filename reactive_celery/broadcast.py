"""Sending to sockets through the channel layer: group names, sends with retry.

Messages are built in ``protocol``. Each process runs one event loop in a
background thread for its sends: channels_redis keeps one connection pool per
event loop, and ``async_to_sync`` makes a new loop per call from a plain thread,
so each send used to connect to Redis anew. A forked child (a prefork worker
process) starts its own loop on first use; the parent's thread did not survive
the fork.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from collections.abc import Iterable
from typing import Any

from channels.layers import BaseChannelLayer, get_channel_layer

from . import metrics
from .conf import reactive_settings
from .exceptions import ConfigurationError

__all__ = ["SEND_ATTEMPTS", "group_name", "layer", "process_loop", "send"]

#: Tries per step before the error reaches the caller.
SEND_ATTEMPTS = 3

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def process_loop() -> asyncio.AbstractEventLoop:
    """This process's send loop, started in a daemon thread on first use."""
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name="reactive-broadcast", daemon=True
            )
            thread.start()
            _loop = loop
        return _loop


def _after_fork() -> None:
    global _loop, _loop_lock
    # The child has the parent's loop object but not its thread: nothing runs it.
    _loop = None
    _loop_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork)


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
    Blocks until they are done; not to be called from a running event loop.
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
    _refuse_in_event_loop()
    # The version is already stored: a lost push would leave clients silently behind.
    for attempt in range(SEND_ATTEMPTS):
        try:
            asyncio.run_coroutine_threadsafe(run(), process_loop()).result()
            return
        except Exception:
            metrics.layer_error()
            if attempt == SEND_ATTEMPTS - 1:
                raise
            time.sleep(0.1 * (attempt + 1))


def _refuse_in_event_loop() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    # Blocking here would stall every socket of the calling loop.
    raise RuntimeError("broadcast.send blocks: call it from sync code (sync_to_async).")
