"""Moves what a disk queue holds to the component that sends it on.

The pump only hands items over — batches of events (``send``) or the chunks as they are
stored (``send_chunks``, the agent's buffer: they were batched once, by the source, and
are not batched again here): the receiver settles them when the next hop has them, which
acknowledges them in the queue. The receiver waiting is the back-pressure that keeps what
is in flight bounded.
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
SendChunks = Callable[[list[core.Chunk]], Awaitable[None]]


class Pump(core.Service):
    """``queue.pop`` → ``send``, until stopped; what is not handed over stays queued."""

    def __init__(
        self,
        queue: DiskQueue,
        send: Send | None = None,
        *,
        send_chunks: SendChunks | None = None,
        name: str,
        max_records: int = 2048,
        max_bytes: int = 2 * 1024 * 1024,
        poll: float = 0.5,
        supervisor: core.Supervisor | None = None,
    ) -> None:
        super().__init__(supervisor)
        self.name = f"pump:{name}"
        self._queue = queue
        if (send is None) == (send_chunks is None):
            raise ValueError("a pump needs exactly one of send and send_chunks")
        self._send = send
        self._send_chunks = send_chunks
        self._max_records = max_records
        self._max_bytes = max_bytes
        self._poll = poll
        self._stopping = asyncio.Event()

    async def _on_start(self) -> None:
        self.spawn("loop", self._loop())

    async def _on_drain(self) -> None:
        self._stopping.set()

    async def _loop(self) -> None:
        queue, poll = self._queue, self._poll
        while not self._stopping.is_set():
            if self._send_chunks is not None:
                chunks = await queue.pop_chunks(self._max_records, self._max_bytes, poll)
                if chunks:
                    await self._send_chunks(chunks)
                continue
            assert self._send is not None
            batch = await queue.pop(self._max_records, self._max_bytes, poll)
            if len(batch):
                await self._send(batch)
