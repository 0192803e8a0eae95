"""Helpers for the disk queue tests: build queues, push numbered records, drain them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import msgpack

from kloghub import buffer, config, core, runtime


def make_queue(
    directory: Path,
    max_bytes: int = 1 << 20,
    segment_bytes: int = 1 << 20,
    when_full: str = "block",
    name: str = "test",
    encode: Callable[[core.Event], bytes] | None = None,
    codec: str = "",
) -> buffer.DiskQueue:
    cfg = config.QueueConfig(max_bytes=max_bytes, segment_bytes=segment_bytes, when_full=when_full)
    return buffer.DiskQueue(directory, cfg, name, encode=encode, codec=codec)


def numbered(start: int, count: int, fin: core.Finalizer | None = None, pad: int = 0) -> core.Batch:
    """Records ``start..start+count-1``; the number is the event time and in the record."""
    return core.Batch(
        core.Event("kube.ns.pod.c", n, {"log": f"line {n}" + "x" * pad, "n": n}, fin)
        for n in range(start, start + count)
    )


async def drain(queue: buffer.DiskQueue, settle: bool = True, max_records: int = 1000) -> list[int]:
    """Pop until the queue has nothing more now; returns the record numbers in order."""
    seen: list[int] = []
    while True:
        batch = await queue.pop(max_records, 1 << 30, 0.05)
        if not batch.events:
            return seen
        seen.extend(event.time_ns for event in batch)
        if settle:
            batch.settle(core.Delivery.DELIVERED)


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


def counter(reason: str) -> float:
    value = runtime.metrics.REGISTRY.get_sample_value(
        "kloghub_records_dropped_total", {"reason": reason}
    )
    return value or 0.0


def gauge(name: str) -> float | None:
    return runtime.metrics.REGISTRY.get_sample_value("kloghub_buffer_bytes", {"buffer": name})


def make_chunk_queue(
    directory: Path,
    max_bytes: int = 1 << 20,
    segment_bytes: int = 1 << 20,
    when_full: str = "block",
    name: str = "test-chunks",
    flush_interval: float = 0.0,
    max_unsynced_bytes: int = 8 << 20,
    max_recent_bytes: int = 2 << 20,
) -> buffer.DiskQueue:
    cfg = config.QueueConfig(max_bytes=max_bytes, segment_bytes=segment_bytes, when_full=when_full)
    return buffer.DiskQueue(
        directory,
        cfg,
        name,
        kind="chunks",
        flush_interval=flush_interval,
        max_unsynced_bytes=max_unsynced_bytes,
        max_recent_bytes=max_recent_bytes,
    )


def chunk(
    n: int, entries: int = 3, fin: core.Finalizer | None = None, tag: str = "kube.ns.pod.c"
) -> core.Chunk:
    """Chunk number ``n``: ``entries`` msgpack entries whose messages say ``chunk n``."""
    body = b"".join(
        msgpack.packb([n, {"log": f"chunk {n} entry {i}", "bin": b"\xff"}], use_bin_type=True)
        for i in range(entries)
    )
    return core.Chunk(
        tag,
        body,
        entries,
        path=f"/logs/{n}.log",
        file_id=f"f{n}",
        first=n,
        end=n + 1,
        finalizer=fin,
    )


async def drain_chunks(
    queue: buffer.DiskQueue, settle: bool = True, max_chunks: int = 100
) -> list[int]:
    """Pop chunks until there are none now; returns their numbers (``first``) in order."""
    seen: list[int] = []
    while True:
        chunks = await queue.pop_chunks(max_chunks, 1 << 30, 0.05)
        if not chunks:
            return seen
        seen.extend(c.first for c in chunks)
        if settle:
            for c in chunks:
                c.settle(core.Delivery.DELIVERED)
