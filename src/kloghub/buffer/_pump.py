"""Moves batches from a disk queue to the component that sends them on.

The pump only hands batches over: the receiver (an output or a sink) settles the events
when the next hop has them, which acknowledges them in the queue. ``send`` waiting is the
back-pressure that keeps the number of batches in flight bounded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from kloghub import core
from kloghub.buffer._queue import DiskQueue

__all__ = ["Pump"]

_log = logging.getLogger("kloghub.buffer")

Send = Callable[[core.Batch], Awaitable[None]]


class Pump(core.Service):
    """``queue.pop`` → ``send``, until stopped; what is not handed over stays queued."""

    def __init__(
        self,
        queue: DiskQueue,
        send: Send,
        *,
        name: str,
        max_records: int = 2048,
        max_bytes: int = 2 * 1024 * 1024,
        poll: float = 0.5,
        supervisor: core.Supervisor | None = None,
    ) -> None:
        super().__init__(supervisor)
        self.name = f"pump:{name}"
        self._queue = queue
        self._send = send
        self._max_records = max_records
        self._max_bytes = max_bytes
        self._poll = poll
        self._stopping = asyncio.Event()

    async def _on_start(self) -> None:
        self.spawn("loop", self._loop())

    async def _on_drain(self) -> None:
        self._stopping.set()

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            batch = await self._queue.pop(self._max_records, self._max_bytes, self._poll)
            if len(batch):
                await self._send(batch)
