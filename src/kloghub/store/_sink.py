"""``store:PATH`` sink: writes ECS document events into the embedded store.

Events come from the ECS normalizer: ``event.record = {"id": <document id>, "doc": <ECS
document>}``, ``event.time_ns`` is the document's ``@timestamp``. A batch is one
transaction; its events are settled DELIVERED only after the commit (which is durable:
WAL with ``synchronous=FULL``), so the checkpoints upstream never move past data the store
could still lose. A write that fails (disk full, the file locked for too long) is retried
with backoff and never acknowledged early. An event that is not a document is settled
REJECTED and counted (``kloghub_records_dropped{reason="not_a_document"}``).

Retention runs in the writer task between batches (one connection, one thing at a time):
by age every ``retention_interval`` seconds, also when idle; by size after every batch (one
cheap page count).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from pathlib import Path

from kloghub import config, core
from kloghub.runtime import metrics
from kloghub.store._store import Prepared, Store, prepare

__all__ = ["StoreSink", "path_from_url"]

_log = logging.getLogger("kloghub.store.sink")

_QUEUE_BATCHES = 64
_MAX_BACKOFF = 5.0
_KIND = "store"
_REASON_INVALID = "not_a_document"


def path_from_url(url: str) -> Path:
    """``store:PATH`` → ``PATH`` (``ValueError`` for any other URL)."""
    scheme, sep, rest = url.partition(":")
    if scheme != "store" or not sep or not rest:
        raise ValueError(f"not a store URL: {url!r} (expected store:PATH)")
    return Path(rest)


class StoreSink(core.Service):
    """Writes document events to the store at ``path`` (created if missing)."""

    def __init__(
        self,
        path: Path,
        *,
        retention: float | None = None,
        max_bytes: int | None = None,
        retention_interval: float = 60.0,
        queue_batches: int = _QUEUE_BATCHES,
        supervisor: core.Supervisor | None = None,
    ) -> None:
        super().__init__(supervisor)
        self.path = path
        self.name = f"store:{path}"
        self.retention = retention
        """Delete documents whose ``@timestamp`` is older than this many seconds."""
        self.max_bytes = max_bytes
        """Delete the oldest documents while the database is larger than this."""
        self._retention_interval = retention_interval
        self._next_age_check = 0.0
        self._queue: asyncio.Queue[core.Batch] = asyncio.Queue(queue_batches)
        self._store: Store | None = None

    @classmethod
    def from_config(
        cls,
        sink: config.SinkConfig,
        supervisor: core.Supervisor | None = None,
        *,
        queue_batches: int = _QUEUE_BATCHES,
    ) -> StoreSink:
        """A sink for a collector's ``store:PATH`` sink (``retention``, ``max_store_bytes``)."""
        return cls(
            path_from_url(sink.url),
            retention=sink.retention,
            max_bytes=int(sink.max_store_bytes) if sink.max_store_bytes is not None else None,
            queue_batches=queue_batches,
            supervisor=supervisor,
        )

    async def send(self, batch: core.Batch) -> None:
        """Queue ``batch`` for writing; waits while the queue is full (back-pressure)."""
        if self.state is not core.State.RUNNING:
            raise RuntimeError(f"{self.name} is not running")
        await self._queue.put(batch)

    async def _on_start(self) -> None:
        self._store = await asyncio.to_thread(Store.open, self.path)
        self.spawn("writer", self._write_loop())

    async def _on_drain(self) -> None:
        await self._queue.join()

    async def _on_close(self) -> None:
        if self._store is not None:
            with contextlib.suppress(sqlite3.Error):
                self._store.close()
        self._store = None

    async def _write_loop(self) -> None:
        await asyncio.to_thread(self._retain_quietly)
        while True:
            try:
                batch = await asyncio.wait_for(self._queue.get(), self._retention_interval)
            except TimeoutError:  # idle: retention still runs
                await asyncio.to_thread(self._retain_quietly)
                continue
            try:
                await self._store_batch(batch)
            finally:
                self._queue.task_done()

    async def _store_batch(self, batch: core.Batch) -> None:
        rows, good, bad = await asyncio.to_thread(_prepare, batch)
        backoff = 0.1
        while True:
            try:
                await asyncio.to_thread(self._write, rows)
            except sqlite3.Error as exc:
                _log.warning(
                    "store write failed; retrying",
                    extra={"sink": self.name, "error": str(exc), "retry_in_s": backoff},
                )
                metrics.RECORDS_RETRIED.labels(_KIND).inc(len(rows))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
            else:
                break
        if good:
            core.Batch(good).settle(core.Delivery.DELIVERED)
            metrics.RECORDS_SENT.labels(_KIND).inc(len(good))
            metrics.RECORDS_ACKED.labels(_KIND).inc(len(good))
        if bad:
            _log.warning(
                "events that are not ECS documents were refused",
                extra={"sink": self.name, "count": len(bad)},
            )
            metrics.DROPPED.labels(_REASON_INVALID).inc(len(bad))
            core.Batch(bad).settle(core.Delivery.REJECTED)

    def _write(self, rows: list[Prepared]) -> None:
        """Runs in a worker thread: the batch in one transaction, then retention if due."""
        assert self._store is not None
        self._store.write(rows)
        self._retain_quietly()

    def _retain_quietly(self) -> None:
        try:
            self._retain()
        except sqlite3.Error as exc:  # the data is committed; retention tries again later
            _log.warning("store retention failed", extra={"sink": self.name, "error": str(exc)})

    def _retain(self) -> None:
        store = self._store
        assert store is not None
        now = time.monotonic()
        age_due = self.retention is not None and now >= self._next_age_check
        if age_due:
            self._next_age_check = now + self._retention_interval
        elif self.max_bytes is None:
            return
        deleted = store.enforce_retention(
            max_age=self.retention if age_due else None, max_bytes=self.max_bytes
        )
        if deleted.by_age or deleted.by_size:
            _log.info(
                "store retention deleted old documents",
                extra={"sink": self.name, "by_age": deleted.by_age, "by_size": deleted.by_size},
            )


def _prepare(batch: core.Batch) -> tuple[list[Prepared], list[core.Event], list[core.Event]]:
    rows: list[Prepared] = []
    good: list[core.Event] = []
    bad: list[core.Event] = []
    for event in batch:
        record = event.record
        doc = record.get("doc") if type(record) is dict else None
        if type(doc) is not dict:
            bad.append(event)
            continue
        try:
            rows.append(prepare(doc, event.time_ns, record.get("id")))
        except ValueError:
            bad.append(event)
            continue
        good.append(event)
    return rows, good, bad
