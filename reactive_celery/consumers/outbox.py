"""A socket's outgoing frames, bounded: a client that stops reading costs a fixed amount.

The hub hands frames over without waiting; one writer per socket sends them.
When more than ``limit`` frames wait, each observer's pending diffs are cut to
its latest one: the client sees a version gap and refetches (docs/protocol.md),
so latest state wins and memory stays bounded by the socket's subscriptions.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

from .. import metrics

__all__ = ["OUTBOX_LIMIT", "Outbox"]

#: Frames a socket may have waiting before its diffs are coalesced.
OUTBOX_LIMIT = 64


class Outbox:
    """Frames waiting for one socket, grouped by the evaluation that made them."""

    def __init__(self, limit: int = OUTBOX_LIMIT) -> None:
        self.limit = limit
        #: (observer, version or None for a frame that is not a diff, texts)
        self.entries: deque[tuple[str, int | None, list[str]]] = deque()
        self.frames = 0
        self.coalesced = 0
        #: Per observer, the version the client's answer already holds: older diffs are
        #: not sent (a subscribe joins before it reads, so some may arrive).
        self.floor: dict[str, int] = {}
        self._ready = asyncio.Event()
        self._open = asyncio.Event()
        self._open.set()

    def hold(self) -> None:
        """Keep frames back while the socket answers a request: the answer goes first."""
        self._open.clear()

    def release(self) -> None:
        """Send what was held back."""
        self._open.set()

    def put(self, oid: str, version: int | None, texts: list[str]) -> None:
        """Queue the frames of one message; coalesce when too many wait."""
        if not texts:
            return
        self.entries.append((oid, version, texts))
        self.frames += len(texts)
        if self.frames > self.limit:
            self._coalesce()
        metrics.outbox_filled(self.frames)
        self._ready.set()

    def _coalesce(self) -> None:
        latest: dict[str, int] = {}
        for index, (oid, version, _) in enumerate(self.entries):
            if version is not None:
                latest[oid] = index
        kept = deque(
            entry
            for index, entry in enumerate(self.entries)
            if entry[1] is None or latest[entry[0]] == index
        )
        dropped = len(self.entries) - len(kept)
        self.coalesced += dropped
        metrics.outbox_coalesced(dropped)
        self.entries = kept
        self.frames = sum(len(texts) for _, _, texts in kept)

    async def drain(self, send: Callable[[str], Awaitable[None]]) -> None:
        """Send frames as they come, forever; a slow ``send`` only holds up this socket."""
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self.entries:
                await self._open.wait()
                if not self.entries:
                    break
                oid, version, texts = self.entries.popleft()
                self.frames -= len(texts)
                if version is not None and version <= self.floor.get(oid, -1):
                    continue
                for text in texts:
                    await send(text)
