"""After a stop, a crash or SIGKILL, the queue replays exactly the unacknowledged records."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap

from kloghub import core
from kloghub.buffer import _queue
from tests.buffer._util import counter, drain, make_queue, numbered, segments
from tests.tail.test_state_disk import fill, small_tmpfs


async def _push_pop_ack(queue):
    """Push 0..299, pop four batches of 50, ack the 2nd and 4th (in reverse order)."""
    for start in range(0, 300, 10):
        await queue.push(numbered(start, 10))
    popped = [await queue.pop(50, 1 << 20, 1.0) for _ in range(4)]
    popped[3].settle(core.Delivery.DELIVERED)
    popped[1].settle(core.Delivery.DELIVERED)
    acked = {e.time_ns for e in popped[1]} | {e.time_ns for e in popped[3]}
    return set(range(300)) - acked


async def test_restart_after_stop_replays_exactly_the_unacknowledged_records(tmp_path):
    """If this failed, a rolling restart of the agent would lose or duplicate buffered logs."""
    queue = make_queue(tmp_path, segment_bytes=500)
    await queue.start()
    expected = await _push_pop_ack(queue)
    await queue.stop(5)
    again = make_queue(tmp_path, segment_bytes=500)
    await again.start()
    try:
        assert await drain(again) == sorted(expected)
        await again.push(numbered(1000, 3))
        assert await drain(again) == [1000, 1001, 1002]
    finally:
        await again.stop(5)


async def test_restart_without_stop_replays_exactly_the_unacknowledged_records(tmp_path):
    """If this failed, a crashed agent would resend acknowledged logs or lose unacked ones."""
    crashed = make_queue(tmp_path, segment_bytes=500)
    await crashed.start()
    try:
        expected = await _push_pop_ack(crashed)
        # No stop: whatever is on disk now is what a crash would leave.
        again = make_queue(tmp_path, segment_bytes=500)
        await again.start()
        try:
            assert await drain(again) == sorted(expected)
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
        queue = buffer.DiskQueue(Path(sys.argv[1]), cfg, "child")
        await queue.start()
        for start in range(0, 300, 10):
            await queue.push(core.Batch(
                core.Event("t", n, {"n": n}) for n in range(start, start + 10)))
        popped = [await queue.pop(50, 1 << 20, 1.0) for _ in range(4)]
        popped[3].settle(core.Delivery.DELIVERED)
        popped[1].settle(core.Delivery.DELIVERED)
        acked = sorted(e.time_ns for b in (popped[1], popped[3]) for e in b)
        print(",".join(map(str, acked)), flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


async def test_sigkill_replays_exactly_the_unacknowledged_records(tmp_path):
    """If this failed, an agent killed by the OOM killer would lose or duplicate logs."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CHILD, str(tmp_path), stdout=asyncio.subprocess.PIPE
    )
    try:
        line = await asyncio.wait_for(child.stdout.readline(), 60)
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()
    acked = {int(n) for n in line.decode().strip().split(",")}
    assert len(acked) == 100
    queue = make_queue(tmp_path, segment_bytes=500)
    await queue.start()
    try:
        assert await drain(queue) == sorted(set(range(300)) - acked)
    finally:
        await queue.stop(5)


async def test_torn_tail_record_is_counted_and_skipped_without_a_crash(tmp_path):
    """If this failed, a crash in the middle of a write would stop the buffer for good."""
    queue = make_queue(tmp_path)
    await queue.start()
    for start in range(0, 30, 10):
        await queue.push(numbered(start, 10))
    await queue.stop(5)
    (last,) = segments(tmp_path)
    os.truncate(last, last.stat().st_size - 5)
    before = counter("buffer_corrupt")
    again = make_queue(tmp_path)
    await again.start()
    try:
        assert await drain(again) == list(range(29))
        assert counter("buffer_corrupt") == before + 1
        await again.push(numbered(100, 2))
        assert await drain(again) == [100, 101]
    finally:
        await again.stop(5)
    assert segments(tmp_path) == []


async def test_torn_frame_header_is_counted_and_skipped(tmp_path):
    """If this failed, a crash that cut a frame inside its length field would go unnoticed."""
    queue = make_queue(tmp_path)
    await queue.start()
    await queue.push(numbered(0, 3))
    await queue.stop(5)
    (seg,) = segments(tmp_path)
    with seg.open("ab") as file:
        file.write(b"\x10\x00\x00")  # three bytes of a next frame's header
    before = counter("buffer_corrupt")
    again = make_queue(tmp_path)
    await again.start()
    try:
        assert await drain(again) == [0, 1, 2]
        assert counter("buffer_corrupt") == before + 1
    finally:
        await again.stop(5)


async def test_checksum_mismatch_skips_the_rest_of_its_segment_and_continues(tmp_path):
    """If this failed, one flipped bit on disk would stall delivery or deliver garbage."""
    queue = make_queue(tmp_path, segment_bytes=1)  # one segment per push
    await queue.start()
    await queue.push(numbered(0, 10))
    await queue.push(numbered(10, 10))
    await queue.stop(5)
    first = segments(tmp_path)[0]
    data = bytearray(first.read_bytes())
    offset = data.index(b"line 5")
    data[offset] ^= 0xFF
    first.write_bytes(bytes(data))
    before = counter("buffer_corrupt")
    again = make_queue(tmp_path, segment_bytes=1)
    await again.start()
    try:
        assert await drain(again) == [0, 1, 2, 3, 4, *range(10, 20)]
        assert counter("buffer_corrupt") == before + 1
    finally:
        await again.stop(5)


async def test_segment_with_a_foreign_header_is_counted_and_removed(tmp_path):
    """If this failed, a stray or damaged file in the state dir would crash the agent at start."""
    (tmp_path / "00000000000000000007.seg").write_bytes(b"not a queue segment at all")
    (tmp_path / "00000000000000000008.seg").write_bytes(b"KLG")  # crash while creating
    before = counter("buffer_corrupt")
    queue = make_queue(tmp_path)
    await queue.start()
    try:
        assert segments(tmp_path) == []
        assert counter("buffer_corrupt") == before + 1
        await queue.push(numbered(0, 2))
        assert await drain(queue) == [0, 1]
        assert [p.name for p in segments(tmp_path)] == ["00000000000000000009.seg"]
    finally:
        await queue.stop(5)


async def test_torn_ack_log_entry_only_replays_records(tmp_path):
    """If this failed, a crash while logging an ack would lose records or crash the restart."""
    queue = make_queue(tmp_path)
    await queue.start()
    await queue.push(numbered(0, 10))
    (await queue.pop(4, 1 << 20, 1.0)).settle()
    await queue.stop(5)
    with (tmp_path / "acks.log").open("ab") as file:
        file.write(b"\x01\x02\x03")
    again = make_queue(tmp_path)
    await again.start()
    try:
        assert await drain(again) == list(range(4, 10))
    finally:
        await again.stop(5)


async def test_segment_ids_never_reuse_an_id_that_old_acks_mention(tmp_path):
    """If this failed, acks of a deleted segment could hide the records of a new one."""
    queue = make_queue(tmp_path, segment_bytes=1)
    await queue.start()
    await queue.push(numbered(0, 5))
    await queue.push(numbered(5, 5))
    (await queue.pop(100, 1 << 20, 1.0)).settle()
    crashed_ids = [p.name for p in segments(tmp_path)]
    # Crash now (no stop): segment 1 is deleted, its acks may still be in the log.
    for seg in segments(tmp_path):
        seg.unlink()
    again = make_queue(tmp_path, segment_bytes=1)
    await again.start()
    try:
        await again.push(numbered(100, 5))
        new_ids = [p.name for p in segments(tmp_path)]
        assert not set(new_ids) & {"00000000000000000001.seg", *crashed_ids}
        assert await drain(again) == list(range(100, 105))
    finally:
        await again.stop(5)
        await queue.stop(5)


async def test_a_queue_whose_disk_is_full_at_start_waits_for_space_then_starts(
    tmp_path, monkeypatch
):
    """If this failed, a collector (or agent) restarted while its state disk is full would
    fail its start (ENOSPC rewriting the acknowledgement log) and crash-loop, shipping
    nothing even after space returns (seen in the chaos run)."""
    monkeypatch.setattr(_queue, "START_RETRY_S", 0.05)
    with small_tmpfs(tmp_path / "disk", "4m") as disk:
        queue = make_queue(disk / "q")
        await queue.start()
        for start in range(0, 300, 30):
            await queue.push(numbered(start, 30, pad=40))
        (await queue.pop(100, 1 << 20, 1.0)).settle(core.Delivery.DELIVERED)
        await queue.stop(5)  # its acknowledgement log now has entries to rewrite
        filler = fill(disk)
        queue = make_queue(disk / "q")
        starting = asyncio.create_task(queue.start())
        done, _ = await asyncio.wait({starting}, timeout=0.5)
        assert not done, "the start should wait while the disk is full"
        filler.unlink()
        await asyncio.wait_for(starting, 10)
        try:
            assert await drain(queue) == list(range(100, 300))
        finally:
            await queue.stop(5)
