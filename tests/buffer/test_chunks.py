"""The agent's chunk queue: wire-ready chunks, group commit, bounded unsynced bytes, replay."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
import threading

import pytest

from kloghub import buffer, config, core
from kloghub.buffer import _segment
from tests.buffer._util import (
    chunk,
    counter,
    drain_chunks,
    make_chunk_queue,
    make_queue,
    numbered,
    segments,
)


def _segment_fsyncs(monkeypatch, gate: threading.Event | None = None) -> list[int]:
    """Count ``fsync`` calls on segment files (optionally held until ``gate`` is set)."""
    calls: list[int] = []
    real_fsync = os.fsync

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".seg"):
            calls.append(fd)
            if gate is not None:
                assert gate.wait(10)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return calls


async def _until(predicate, what: str) -> None:
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


async def test_a_chunk_comes_out_with_its_header_and_the_very_entry_bytes_pushed(tmp_path):
    """If this failed, the buffer would alter what goes on the wire or lose a chunk's origin."""
    queue = make_chunk_queue(tmp_path)
    await queue.start()
    try:
        pushed = chunk(7, entries=5)
        pushed.path = "/var/log/pods/ns_p_u/c/0.log"
        await queue.push_chunk(pushed)
        (popped,) = await queue.pop_chunks(10, 1 << 20, 1.0)
        assert popped.entries == pushed.entries
        assert isinstance(popped.entries, bytes)
        assert (popped.tag, popped.path, popped.file_id) == (pushed.tag, pushed.path, "f7")
        assert (popped.first, popped.end, popped.count) == (7, 8, 5)
        assert popped.finalizer is not None
    finally:
        await queue.stop(5)


async def test_push_chunk_returns_before_the_fsync_and_settles_only_after_it(tmp_path, monkeypatch):
    """If this failed, the tailer would wait for every fsync, or commit a checkpoint early."""
    gate = threading.Event()
    queue = make_chunk_queue(tmp_path)
    await queue.start()
    try:
        calls = _segment_fsyncs(monkeypatch, gate)
        settled: list[core.Delivery] = []
        await asyncio.wait_for(queue.push_chunk(chunk(0, fin=core.Finalizer(settled.append, 1))), 5)
        await _until(lambda: calls, "the write reached its fsync")
        await asyncio.sleep(0.05)
        assert settled == []
        gate.set()
        await _until(lambda: settled, "the chunk was settled")
        assert settled == [core.Delivery.DELIVERED]
    finally:
        gate.set()
        await queue.stop(5)


async def test_chunks_of_fifty_files_share_one_fsync(tmp_path, monkeypatch):
    """If this failed, every file's push would pay its own fsync (no group commit)."""
    settled: list[core.Delivery] = []
    chunks = [
        chunk(n, fin=core.Finalizer(settled.append, 1), tag=f"kube.ns.pod-{n}.c") for n in range(50)
    ]
    frames = sum(len(_segment.ChunkEncoder().encode(c)) for c in chunks)
    # A long interval: the commit is triggered by the 50th chunk reaching the unsynced bound.
    queue = make_chunk_queue(tmp_path, flush_interval=60.0, max_unsynced_bytes=frames)
    await queue.start()
    try:
        calls = _segment_fsyncs(monkeypatch)
        for c in chunks:
            await queue.push_chunk(c)
        await _until(lambda: len(settled) == 50, "all 50 chunks durable")
        assert len(calls) == 1
        assert await drain_chunks(queue) == list(range(50))
    finally:
        await queue.stop(5)


async def test_the_flush_interval_commits_a_lone_chunk_without_further_pushes(tmp_path):
    """If this failed, a quiet file's last lines would never become durable nor be sent."""
    queue = make_chunk_queue(tmp_path, flush_interval=0.05)
    await queue.start()
    try:
        settled: list[core.Delivery] = []
        await queue.push_chunk(chunk(1, fin=core.Finalizer(settled.append, 1)))
        await _until(lambda: settled, "the interval's commit")
        assert await drain_chunks(queue) == [1]
    finally:
        await queue.stop(5)


async def test_push_chunk_waits_while_too_many_bytes_wait_for_their_fsync(tmp_path, monkeypatch):
    """If this failed, a slow disk would let the tailer pile unwritten chunks up in memory."""
    gate = threading.Event()
    bound = 3 * len(chunk(0).entries)
    queue = make_chunk_queue(tmp_path, flush_interval=60.0, max_unsynced_bytes=bound)
    await queue.start()
    try:
        _segment_fsyncs(monkeypatch, gate)
        await asyncio.wait_for(queue.push_chunk(chunk(0)), 5)
        await asyncio.wait_for(queue.push_chunk(chunk(1)), 5)
        blocked = asyncio.create_task(queue.push_chunk(chunk(2)))
        done, _ = await asyncio.wait({blocked}, timeout=0.2)
        assert not done
        gate.set()
        await asyncio.wait_for(blocked, 5)
        assert await drain_chunks(queue) == [0, 1, 2]
    finally:
        gate.set()
        await queue.stop(5)


async def test_block_policy_push_chunk_waits_for_acknowledged_space(tmp_path):
    """If this failed, a collector outage would grow the agent's buffer without bound."""
    queue = make_chunk_queue(tmp_path, max_bytes=3000)
    frame = len(_segment.ChunkEncoder().encode(chunk(10, entries=5)))
    await queue.start()
    try:
        n = 0
        while queue.disk_bytes + frame <= 3000:
            await asyncio.wait_for(queue.push_chunk(chunk(n, entries=5)), 5)
            n += 1
            await _until(lambda: not queue._pending and not queue._writing, "written")
        blocked = asyncio.create_task(queue.push_chunk(chunk(n, entries=5)))
        done, _ = await asyncio.wait({blocked}, timeout=0.2)
        assert not done
        popped = await queue.pop_chunks(1000, 1 << 20, 1.0)
        assert [c.first for c in popped] == list(range(n))
        for c in popped:
            c.settle(core.Delivery.DELIVERED)
        await asyncio.wait_for(blocked, 5)
        assert await drain_chunks(queue) == [n]
    finally:
        await queue.stop(5)


async def test_out_of_order_chunk_acks_delete_a_segment_only_when_all_are_acked(tmp_path):
    """If this failed, an early ack of a later chunk would delete chunks still unsent."""
    queue = make_chunk_queue(tmp_path, segment_bytes=1)  # every write starts a new segment
    await queue.start()
    try:
        for n in range(3):
            await queue.push_chunk(chunk(n))
            await _until(lambda: not queue._pending and not queue._writing, "written")
        popped = await queue.pop_chunks(10, 1 << 20, 1.0)
        assert [c.first for c in popped] == [0, 1, 2]
        popped[2].settle()
        popped[1].settle()
        assert len(segments(tmp_path)) == 3  # one finalizer for the pop: not yet
        popped[0].settle()
        await _until(lambda: len(segments(tmp_path)) <= 1, "acknowledged segments deleted")
    finally:
        await queue.stop(5)


async def test_restart_without_stop_replays_exactly_the_unacknowledged_chunks(tmp_path):
    """If this failed, a crashed agent would resend acknowledged chunks or lose unacked ones."""
    crashed = make_chunk_queue(tmp_path, segment_bytes=500)
    await crashed.start()
    try:
        for n in range(30):
            await crashed.push_chunk(chunk(n))
        await _until(lambda: not crashed._pending and not crashed._writing, "written")
        pops = [await crashed.pop_chunks(5, 1 << 20, 1.0) for _ in range(4)]
        for c in pops[3] + pops[1]:
            c.settle()
        acked = {c.first for c in pops[1] + pops[3]}
        again = make_chunk_queue(tmp_path, segment_bytes=500)
        await again.start()
        try:
            assert await drain_chunks(again) == sorted(set(range(30)) - acked)
        finally:
            await again.stop(5)
    finally:
        await crashed.stop(5)


_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from kloghub import config, core, buffer

    async def main():
        cfg = config.QueueConfig(max_bytes=1 << 20, segment_bytes=500)
        queue = buffer.DiskQueue(
            Path(sys.argv[1]), cfg, "child", kind="chunks", flush_interval=0.05
        )
        await queue.start()
        durable = []
        for n in range(30):
            fin = core.Finalizer(durable.append, 1)
            await queue.push_chunk(core.Chunk("t", bytes([0x90 + n % 16]) * 3, 3, first=n,
                                              finalizer=fin))
        while len(durable) < 30:
            await asyncio.sleep(0.01)
        pops = [await queue.pop_chunks(5, 1 << 20, 1.0) for _ in range(4)]
        for c in pops[3] + pops[1]:
            c.settle()
        print(",".join(str(c.first) for c in pops[1] + pops[3]), flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


async def test_sigkill_replays_exactly_the_unacknowledged_chunks(tmp_path):
    """If this failed, an agent killed by the OOM killer would lose or duplicate chunks."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CHILD, str(tmp_path), stdout=asyncio.subprocess.PIPE
    )
    try:
        line = await asyncio.wait_for(child.stdout.readline(), 60)
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()
    acked = {int(n) for n in line.decode().strip().split(",")}
    assert len(acked) == 10
    queue = make_chunk_queue(tmp_path, segment_bytes=500)
    await queue.start()
    try:
        assert await drain_chunks(queue) == sorted(set(range(30)) - acked)
    finally:
        await queue.stop(5)


async def test_drop_oldest_counts_the_entries_of_the_chunks_it_drops(tmp_path):
    """If this failed, dropping a chunk of 1000 lines would be reported as one lost record."""
    queue = make_chunk_queue(tmp_path, max_bytes=4000, when_full="drop_oldest")
    await queue.start()
    before = counter("buffer_full")
    try:
        for n in range(40):
            await asyncio.wait_for(queue.push_chunk(chunk(n, entries=4)), 5)
            await _until(lambda: not queue._pending and not queue._writing, "written")
        kept = await drain_chunks(queue)
        assert kept == list(range(40 - len(kept), 40))
        assert 0 < len(kept) < 40
        assert counter("buffer_full") - before == 4 * (40 - len(kept))
    finally:
        await queue.stop(5)


async def test_drop_oldest_counts_entries_of_recovered_chunk_segments(tmp_path):
    """If this failed, chunks dropped after a restart would be counted as one record each."""
    queue = make_chunk_queue(tmp_path, max_bytes=4000, segment_bytes=1000)
    await queue.start()
    for n in range(10):
        await queue.push_chunk(chunk(n, entries=4))
    await queue.stop(5)
    again = make_chunk_queue(tmp_path, max_bytes=4000, segment_bytes=1000, when_full="drop_oldest")
    await again.start()
    before = counter("buffer_full")
    try:
        for n in range(10, 40):
            await again.push_chunk(chunk(n, entries=4))
            await _until(lambda: not again._pending and not again._writing, "written")
        kept = await drain_chunks(again)
        assert kept == list(range(40 - len(kept), 40))
        assert counter("buffer_full") - before == 4 * (40 - len(kept))
    finally:
        await again.stop(5)


async def test_a_queue_holds_one_kind_and_ignores_segments_of_the_other(tmp_path):
    """If this failed, an event segment would be read as chunks (or the reverse) and garble."""
    events = make_queue(tmp_path)
    await events.start()
    await events.push(numbered(0, 3))
    with pytest.raises(TypeError):
        await events.push_chunk(chunk(0))
    with pytest.raises(TypeError):
        await events.pop_chunks(1, 1, 0.01)
    await events.stop(5)
    before = counter("buffer_corrupt")
    chunks = make_chunk_queue(tmp_path)
    await chunks.start()
    try:
        assert await drain_chunks(chunks) == []
        assert counter("buffer_corrupt") == before + 1
        with pytest.raises(TypeError):
            await chunks.push(numbered(0, 1))
    finally:
        await chunks.stop(5)


async def test_the_pump_hands_chunks_on_as_stored(tmp_path):
    """If this failed, the agent's pump would decode or re-batch what goes on the wire."""
    queue = make_chunk_queue(tmp_path)
    got: list[list[core.Chunk]] = []

    async def send_chunks(chunks: list[core.Chunk]) -> None:
        got.append(chunks)
        for c in chunks:
            c.settle()

    pump = buffer.Pump(queue, send_chunks=send_chunks, name="t", poll=0.05)
    await queue.start()
    await pump.start()
    try:
        pushed = [chunk(n) for n in range(5)]
        for c in pushed:
            await queue.push_chunk(c)
        await _until(lambda: sum(map(len, got)) == 5, "all chunks handed on")
        assert [c.entries for batch in got for c in batch] == [c.entries for c in pushed]
    finally:
        await pump.stop(5)
        await queue.stop(5)
    with pytest.raises(ValueError, match="exactly one"):
        buffer.Pump(queue, name="none")
    assert config.BufferConfig().flush_interval > 0


def _scramble_segments(directory) -> None:
    """Overwrite every frame byte of the segment files (their magic kept): whatever the
    reader reads from disk from now on fails its checksum."""
    for path in segments(directory):
        size = path.stat().st_size
        with path.open("r+b") as file:
            file.seek(len(_segment.CHUNK_MAGIC))
            file.write(b"\xa5" * (size - len(_segment.CHUNK_MAGIC)))


async def test_a_reader_that_keeps_up_gets_durable_chunks_from_memory_not_from_disk(tmp_path):
    """If this failed, every chunk would be read back from its segment (a pread, a copy and a
    checksum per chunk) even when the output keeps up with the tailer."""
    queue = make_chunk_queue(tmp_path)
    await queue.start()
    try:
        settled: list[core.Delivery] = []
        pushed = chunk(3, entries=4, fin=core.Finalizer(settled.append, 1))
        await queue.push_chunk(pushed)
        await _until(lambda: settled, "the chunk was durable")
        _scramble_segments(tmp_path)
        before = counter("buffer_corrupt")
        (popped,) = await queue.pop_chunks(10, 1 << 20, 1.0)
        assert popped.entries is pushed.entries
        assert (popped.first, popped.count, popped.path) == (3, 4, pushed.path)
        assert counter("buffer_corrupt") == before
        popped.settle(core.Delivery.DELIVERED)
        assert await drain_chunks(queue) == []
    finally:
        await queue.stop(5)


async def test_chunks_past_the_memory_bound_are_read_back_from_disk_in_order(tmp_path):
    """If this failed, a reader that fell behind by more than max_recent_bytes would skip,
    repeat or reorder chunks when it mixes those kept in memory with those on disk."""
    queue = make_chunk_queue(tmp_path, max_bytes=64 << 20, max_recent_bytes=1000)
    await queue.start()
    try:
        for n in range(40):
            await queue.push_chunk(chunk(n, entries=5))
        await _until(lambda: queue._reserved == 0, "every chunk was durable")
        assert queue._recent.nbytes <= 1000  # the rest went out of memory
        seen = await drain_chunks(queue, max_chunks=3)
        assert seen == list(range(40))
    finally:
        await queue.stop(5)


async def test_chunks_from_memory_come_back_after_a_restart_until_acknowledged(tmp_path):
    """If this failed, a chunk handed out from memory would not be acknowledged in its
    segment, and would be lost (or sent again for ever) across a restart."""
    queue = make_chunk_queue(tmp_path)
    await queue.start()
    for n in range(3):
        await queue.push_chunk(chunk(n))
    await _until(lambda: queue._reserved == 0, "every chunk was durable")
    (first,) = await queue.pop_chunks(1, 1 << 20, 1.0)  # a pop's chunks share one ack
    rest = await queue.pop_chunks(10, 1 << 20, 1.0)
    assert [c.first for c in [first, *rest]] == [0, 1, 2]
    first.settle(core.Delivery.DELIVERED)
    await queue.stop(5)
    again = make_chunk_queue(tmp_path)
    await again.start()
    try:
        assert await drain_chunks(again) == [1, 2]
    finally:
        await again.stop(5)
