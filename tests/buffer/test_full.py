"""A full queue blocks or drops the oldest data by policy, and memory stays bounded."""

from __future__ import annotations

import asyncio
import tracemalloc

from kloghub import core
from tests.buffer._util import counter, drain, make_queue, numbered, segments


async def test_block_policy_push_waits_until_a_pop_and_ack_free_space(tmp_path):
    """If this failed, a collector outage would grow the buffer without bound or lose logs."""
    queue = make_queue(tmp_path, max_bytes=2000)
    await queue.start()
    try:
        start = 0
        while queue.disk_bytes < 1500:
            await asyncio.wait_for(queue.push(numbered(start, 5)), 5)
            start += 5
        blocked = asyncio.create_task(queue.push(numbered(start, 20)))
        done, _ = await asyncio.wait({blocked}, timeout=0.2)
        assert not done
        popped = await queue.pop(1000, 1 << 20, 1.0)
        assert [e.time_ns for e in popped] == list(range(start))
        done, _ = await asyncio.wait({blocked}, timeout=0.1)
        assert not done  # handed out is not acknowledged: still no room
        popped.settle(core.Delivery.DELIVERED)
        await asyncio.wait_for(blocked, 5)
        assert await drain(queue) == list(range(start, start + 20))
    finally:
        await queue.stop(5)


async def test_block_policy_accepts_a_batch_larger_than_the_queue_once_it_is_empty(tmp_path):
    """If this failed, one oversized batch would deadlock the agent forever."""
    queue = make_queue(tmp_path, max_bytes=1000)
    await queue.start()
    try:
        await asyncio.wait_for(queue.push(numbered(0, 50, pad=50)), 5)
        assert queue.disk_bytes > 1000
        second = asyncio.create_task(queue.push(numbered(50, 50, pad=50)))
        done, _ = await asyncio.wait({second}, timeout=0.2)
        assert not done
        (await queue.pop(1000, 1 << 20, 1.0)).settle(core.Delivery.DELIVERED)
        await asyncio.wait_for(second, 5)
        assert await drain(queue) == list(range(50, 100))
    finally:
        await queue.stop(5)


async def test_drop_oldest_never_blocks_drops_the_oldest_counts_them_keeps_the_newest(tmp_path):
    """If this failed, a long outage would stall tailing or lose new logs instead of old."""
    queue = make_queue(tmp_path, max_bytes=4000, when_full="drop_oldest")
    await queue.start()
    before = counter("buffer_full")
    try:
        for start in range(0, 500, 10):
            await asyncio.wait_for(queue.push(numbered(start, 10)), 5)
            assert queue.disk_bytes <= 4000 + 1000
        kept = await drain(queue)
        assert kept == list(range(500 - len(kept), 500))
        assert 50 < len(kept) < 200
        assert counter("buffer_full") - before == 500 - len(kept)
    finally:
        await queue.stop(5)


async def test_drop_oldest_counts_only_records_never_handed_out(tmp_path):
    """If this failed, records a sink was still delivering would be reported as dropped."""
    queue = make_queue(tmp_path, max_bytes=3000, segment_bytes=1, when_full="drop_oldest")
    await queue.start()
    before = counter("buffer_full")
    try:
        await queue.push(numbered(0, 20))
        in_flight = await queue.pop(5, 1 << 20, 1.0)
        start = 20
        while segments(tmp_path)[0].name.endswith("1.seg"):
            await queue.push(numbered(start, 20))
            start += 20
        assert counter("buffer_full") - before == 15
        in_flight.settle(core.Delivery.DELIVERED)  # ack for a dropped segment: ignored
        kept = await drain(queue)
        assert kept == list(range(20, start))[-len(kept) :]
    finally:
        await queue.stop(5)


async def test_drop_oldest_on_recovered_segments_counts_their_records(tmp_path):
    """If this failed, drops after a restart would go uncounted."""
    queue = make_queue(tmp_path, max_bytes=3000, segment_bytes=1, when_full="drop_oldest")
    await queue.start()
    await queue.push(numbered(0, 20))
    await queue.stop(5)
    again = make_queue(tmp_path, max_bytes=3000, segment_bytes=1, when_full="drop_oldest")
    await again.start()
    before = counter("buffer_full")
    try:
        start = 100
        while any(p.name.endswith("1.seg") for p in segments(tmp_path)):
            await again.push(numbered(start, 20))
            start += 20
        assert counter("buffer_full") - before == 20
    finally:
        await again.stop(5)


async def test_memory_stays_bounded_while_50_mb_go_through_a_5_mb_queue(tmp_path):
    """If this failed, a fast producer would make the agent's memory grow with the input."""
    record_pad = 5000
    queue = make_queue(tmp_path, max_bytes=5 << 20)
    await queue.start()
    total = 10_000  # records of ~5 kB: 50 MB
    received = 0
    fullest = 0

    async def produce(first: int) -> None:
        for start in range(first, total, 80):
            await queue.push(numbered(start, 20, pad=record_pad))

    async def consume() -> None:
        nonlocal received, fullest
        # Start late, so that the producers meet a full queue first.
        while queue.disk_bytes < 4 << 20:
            await asyncio.sleep(0.005)
        while received < total:
            fullest = max(fullest, queue.disk_bytes)
            batch = await queue.pop(200, 256 * 1024, 1.0)
            received += len(batch)
            batch.settle(core.Delivery.DELIVERED)

    tracemalloc.start()
    try:
        producers = [produce(first) for first in range(0, 80, 20)]
        await asyncio.wait_for(asyncio.gather(*producers, consume()), 120)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        await queue.stop(5)
    assert received == total
    assert 4 << 20 < fullest <= (5 << 20) + 200_000  # full, and held at its bound
    # Less than the queue holds on disk: records are not kept in memory.
    assert peak < 4 << 20, f"peak {peak / 1e6:.1f} MB"
