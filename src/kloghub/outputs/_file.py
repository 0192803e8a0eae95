"""``file:PATH`` and ``stdout:`` outputs: NDJSON, acknowledged only once written (and synced).

A batch is acknowledged after its lines were written and, for files, ``fsync``-ed: after
an acknowledgement the data survives a crash of the machine, which is what lets the
tailer move its checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import BinaryIO

from kloghub import core
from kloghub.outputs import _ndjson
from kloghub.runtime import metrics

__all__ = ["FileOutput"]

_log = logging.getLogger("kloghub.outputs.file")

_QUEUE_BATCHES = 64


class FileOutput(core.Service):
    """Appends NDJSON to a file (``path``) or to standard output (``path=None``)."""

    def __init__(
        self,
        path: Path | None,
        fsync: bool = True,
        supervisor: core.Supervisor | None = None,
        *,
        documents: bool = False,
        queue_batches: int = _QUEUE_BATCHES,
    ) -> None:
        super().__init__(supervisor)
        self.path = path
        self.name = f"file:{path}" if path is not None else "stdout:"
        self._kind = "file" if path is not None else "stdout"
        self._fsync = fsync and path is not None
        self._queue: asyncio.Queue[core.Batch] = asyncio.Queue(queue_batches)
        self._file: BinaryIO | None = None
        self._encode = _ndjson.encode_document if documents else _ndjson.encode
        """Collector sinks write the ECS document of a document event; agents the record."""
        self.codec = _ndjson.DOCUMENT_CODEC if documents else "ndjson-record/1"
        """The name of what :meth:`encode` makes (a disk queue before this output may store
        the lines themselves: ``core.Encoded`` records are written as they are)."""

    def encode(self, event: core.Event) -> bytes:
        """The line of ``event`` (with its newline)."""
        return self._encode(event)

    async def send(self, batch: core.Batch) -> None:
        """Queue ``batch`` for writing; waits while the queue is full (back-pressure)."""
        if self.state is not core.State.RUNNING:
            raise RuntimeError(f"{self.name} is not running")
        await self._queue.put(batch)

    async def _on_start(self) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _cut_torn_tail(self.path)
            self._file = self.path.open("ab")
        else:
            self._file = sys.stdout.buffer
        self.spawn("writer", self._write_loop())

    async def _on_drain(self) -> None:
        await self._queue.join()

    async def _on_close(self) -> None:
        if self._file is not None and self.path is not None:
            with contextlib.suppress(OSError):
                self._file.close()
        self._file = None

    async def _write_loop(self) -> None:
        while True:
            batch = await self._queue.get()
            try:
                await self._write_until_done(batch)
                batch.settle(core.Delivery.DELIVERED)
                metrics.RECORDS_SENT.labels(self._kind).inc(len(batch))
                metrics.RECORDS_ACKED.labels(self._kind).inc(len(batch))
            finally:
                self._queue.task_done()

    async def _write_until_done(self, batch: core.Batch) -> None:
        """Write ``batch``; on an I/O error (disk full) wait and try again, never ack early."""
        backoff = 0.1
        while True:
            try:
                await asyncio.to_thread(self._write, batch)
            except OSError as exc:
                _log.warning(
                    "write failed; retrying",
                    extra={"output": self.name, "error": str(exc), "retry_in_s": backoff},
                )
                metrics.RECORDS_RETRIED.labels(self._kind).inc(len(batch))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            else:
                return

    def _write(self, batch: core.Batch) -> None:
        assert self._file is not None
        encode, encoded = self._encode, core.Encoded
        self._file.write(
            b"".join(
                record.data if isinstance(record := event.record, encoded) else encode(event)
                for event in batch
            )
        )
        self._file.flush()
        if self._fsync:
            os.fsync(self._file.fileno())


def _cut_torn_tail(path: Path) -> None:
    """A process killed mid-write leaves a partial last line; it was never acknowledged
    (acknowledgement follows the write and fsync), so it is cut before appending."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    if size == 0:
        return
    with path.open("r+b") as f:
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        step = 64 * 1024
        end = size
        while end > 0:
            start = max(0, end - step)
            f.seek(start)
            cut = f.read(end - start).rfind(b"\n")
            if cut >= 0:
                f.truncate(start + cut + 1)
                break
            end = start
        else:
            f.truncate(0)
        _log.warning("cut a partial last line left by a crash", extra={"path": str(path)})
