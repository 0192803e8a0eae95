"""Helpers for the disk queue tests: build queues, push numbered records, drain them."""

from __future__ import annotations

from pathlib import Path

from kloghub import buffer, config, core, runtime


def make_queue(
    directory: Path,
    max_bytes: int = 1 << 20,
    segment_bytes: int = 1 << 20,
    when_full: str = "block",
    name: str = "test",
) -> buffer.DiskQueue:
    cfg = config.QueueConfig(max_bytes=max_bytes, segment_bytes=segment_bytes, when_full=when_full)
    return buffer.DiskQueue(directory, cfg, name)


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
