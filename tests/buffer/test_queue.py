"""The disk queue hands records through unchanged and acknowledges them as they settle."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from kloghub import core
from tests.buffer._util import drain, gauge, make_queue, numbered, segments


async def test_round_trip_keeps_tag_nanosecond_time_str_and_bytes(tmp_path):
    """If this failed, records would change type or lose precision while buffered."""
    queue = make_queue(tmp_path)
    await queue.start()
    try:
        record = {
            "log": "héllo",
            "raw": b"\xff\x00bin",
            "nested": {"labels": {"app.kubernetes.io/name": "x"}, "list": [1, "a", b"b"]},
            "none": None,
            "float": 1.5,
        }
        await queue.push(core.Batch([core.Event("kube.a.b.c", 1_700_000_000_123_456_789, record)]))
        batch = await queue.pop(10, 1 << 20, 1.0)
        assert len(batch) == 1
        event = batch.events[0]
        assert event.tag == "kube.a.b.c"
        assert event.time_ns == 1_700_000_000_123_456_789
        assert event.record == record
        assert isinstance(event.record["raw"], bytes)
        assert isinstance(event.record["log"], str)
        assert event.size > 0
        assert event.finalizer is not None
    finally:
        await queue.stop(5)


async def test_records_come_out_in_push_order_across_segments(tmp_path):
    """If this failed, a consumer would see logs out of order after a segment roll."""
    queue = make_queue(tmp_path, segment_bytes=300)
    await queue.start()
    try:
        for start in range(0, 200, 20):
            await queue.push(numbered(start, 20))
        assert len(segments(tmp_path)) > 3
        assert await drain(queue, max_records=7) == list(range(200))
    finally:
        await queue.stop(5)


async def test_pushed_batch_is_settled_only_after_fsync(tmp_path, monkeypatch):
    """If this failed, the tailer could move its checkpoint past data a power cut would lose."""
    entered = threading.Event()
    release = threading.Event()
    real_fsync = os.fsync

    def gated_fsync(fd):
        entered.set()
        assert release.wait(10)
        real_fsync(fd)

    queue = make_queue(tmp_path)
    await queue.start()
    try:
        monkeypatch.setattr(os, "fsync", gated_fsync)
        settled = []
        push = asyncio.create_task(queue.push(numbered(0, 5, core.Finalizer(settled.append, 5))))
        assert await asyncio.to_thread(entered.wait, 5)
        await asyncio.sleep(0.05)
        assert settled == []
        assert not push.done()
        release.set()
        await asyncio.wait_for(push, 5)
        assert settled == [core.Delivery.DELIVERED]
    finally:
        release.set()
        monkeypatch.setattr(os, "fsync", real_fsync)
        await queue.stop(5)


async def test_concurrent_pushes_share_one_fsync(tmp_path, monkeypatch):
    """If this failed, each batch would pay its own fsync and the agent could not keep up."""
    calls = []
    real_fsync = os.fsync

    def counting_fsync(fd):
        calls.append(fd)
        real_fsync(fd)

    queue = make_queue(tmp_path)
    await queue.start()
    try:
        monkeypatch.setattr(os, "fsync", counting_fsync)
        await asyncio.gather(*(queue.push(numbered(i * 10, 10)) for i in range(50)))
        assert len(calls) < 10
        assert sorted(await drain(queue)) == list(range(500))
    finally:
        monkeypatch.setattr(os, "fsync", real_fsync)
        await queue.stop(5)


async def test_out_of_order_acks_delete_a_segment_only_when_all_its_records_are_acked(tmp_path):
    """If this failed, a late ack could delete records still in flight, or disk never freed."""
    queue = make_queue(tmp_path, segment_bytes=1)  # every push starts a new segment
    await queue.start()
    try:
        for start in range(0, 40, 10):
            await queue.push(numbered(start, 10))
        seg1, seg2, seg3, seg4 = segments(tmp_path)
        first = await queue.pop(15, 1 << 20, 1.0)  # seg1 + half of seg2
        second = await queue.pop(15, 1 << 20, 1.0)  # rest of seg2 + seg3
        assert [e.time_ns for e in first] == list(range(15))
        assert [e.time_ns for e in second] == list(range(15, 30))
        second.settle(core.Delivery.DELIVERED)
        assert not seg3.exists()
        assert seg1.exists()
        assert seg2.exists()
        first.settle(core.Delivery.REJECTED)  # dead-lettered counts as done
        assert not seg1.exists()
        assert not seg2.exists()
        assert seg4.exists()
    finally:
        await queue.stop(5)


async def test_a_batch_settled_in_parts_acknowledges_once_all_parts_are_settled(tmp_path):
    """If this failed, a sink that splits batches would free records it has not delivered."""
    queue = make_queue(tmp_path, segment_bytes=1)
    await queue.start()
    try:
        await queue.push(numbered(0, 10))
        await queue.push(numbered(10, 10))
        seg1 = segments(tmp_path)[0]
        batch = await queue.pop(100, 1 << 20, 1.0)
        core.Batch(batch.events[:15]).settle(core.Delivery.DELIVERED)
        assert seg1.exists()
        core.Batch(batch.events[15:]).settle(core.Delivery.DROPPED)
        assert not seg1.exists()
    finally:
        await queue.stop(5)


async def test_gauge_tracks_the_bytes_on_disk(tmp_path):
    """If this failed, operators would not see a buffer filling while the collector is down."""
    queue = make_queue(tmp_path, name="gauge-test", segment_bytes=1)
    await queue.start()
    try:
        await queue.push(numbered(0, 50))
        await queue.push(numbered(50, 50))
        on_disk = sum(p.stat().st_size for p in segments(tmp_path))
        assert on_disk > 0
        assert gauge("gauge-test") == on_disk == queue.disk_bytes
        await drain(queue)
        after = sum(p.stat().st_size for p in segments(tmp_path))
        assert gauge("gauge-test") == after == queue.disk_bytes < on_disk
    finally:
        await queue.stop(5)
    assert gauge("gauge-test") == 0
    assert segments(tmp_path) == []


async def test_pop_returns_an_empty_batch_after_its_timeout(tmp_path):
    """If this failed, an idle output could never flush or notice a stop."""
    queue = make_queue(tmp_path)
    await queue.start()
    try:
        batch = await asyncio.wait_for(queue.pop(10, 1000, 0.05), 5)
        assert batch.events == []
    finally:
        await queue.stop(5)


async def test_pop_waiting_for_data_wakes_up_when_a_batch_is_pushed(tmp_path):
    """If this failed, records would sit in the buffer until the consumer's timeout."""
    queue = make_queue(tmp_path)
    await queue.start()
    try:
        pop = asyncio.create_task(queue.pop(10, 1000, 30))
        await asyncio.sleep(0.01)
        await queue.push(numbered(0, 3))
        batch = await asyncio.wait_for(pop, 5)
        assert [e.time_ns for e in batch] == [0, 1, 2]
    finally:
        await queue.stop(5)


async def test_pop_respects_its_byte_limit_but_always_returns_one_record(tmp_path):
    """If this failed, a consumer could receive requests larger than its server accepts."""
    queue = make_queue(tmp_path)
    await queue.start()
    try:
        await queue.push(numbered(0, 10, pad=100))
        one = await queue.pop(100, 10, 1.0)
        assert len(one) == 1
        some = await queue.pop(100, 400, 1.0)
        assert 1 < len(some) < 9
        assert sum(e.size for e in some) <= 400
    finally:
        await queue.stop(5)


async def test_unencodable_values_are_kept_as_text_instead_of_failing_the_push(tmp_path):
    """If this failed, one odd record (a lone surrogate, a huge int) would stall the pipeline."""
    queue = make_queue(tmp_path)
    await queue.start()
    try:
        record = {"log": "bad \udc80 text", "big": 2**80, "obj": object(), "ok": 1}
        await queue.push(core.Batch([core.Event("t", 1, record)]))
        (event,) = (await queue.pop(10, 1 << 20, 1.0)).events
        assert event.record["log"] == "bad \\udc80 text"
        assert event.record["big"] == str(2**80)
        assert event.record["obj"].startswith("<object")
        assert event.record["ok"] == 1
    finally:
        await queue.stop(5)


async def test_push_and_pop_refuse_a_queue_that_is_not_running(tmp_path):
    """If this failed, a batch pushed after stop would be reported safe and never written."""
    queue = make_queue(tmp_path)
    settled = []
    with pytest.raises(RuntimeError):
        await queue.push(numbered(0, 1, core.Finalizer(settled.append, 1)))
    with pytest.raises(RuntimeError):
        await queue.pop(1, 1, 0.01)
    await queue.start()
    await queue.stop(5)
    with pytest.raises(RuntimeError):
        await queue.push(numbered(0, 1, core.Finalizer(settled.append, 1)))
    assert settled == []


async def test_settling_after_stop_is_harmless_and_the_records_come_back(tmp_path):
    """If this failed, a sink finishing late during shutdown would crash the daemon."""
    queue = make_queue(tmp_path)
    await queue.start()
    await queue.push(numbered(0, 5))
    batch = await queue.pop(10, 1 << 20, 1.0)
    await queue.stop(5)
    batch.settle(core.Delivery.DELIVERED)
    again = make_queue(tmp_path)
    await again.start()
    try:
        assert await drain(again) == list(range(5))
    finally:
        await again.stop(5)


async def test_a_failed_write_is_retried_in_a_new_segment_and_never_acknowledged_early(
    tmp_path, monkeypatch
):
    """If this failed, a full disk would acknowledge lost data or duplicate records."""
    real_fsync = os.fsync
    failures = [OSError(28, "No space left on device")]

    def failing_fsync(fd):
        if failures:
            raise failures.pop()
        real_fsync(fd)

    queue = make_queue(tmp_path)
    await queue.start()
    try:
        await queue.push(numbered(0, 5))
        monkeypatch.setattr(os, "fsync", failing_fsync)
        settled = []
        await asyncio.wait_for(queue.push(numbered(5, 5, core.Finalizer(settled.append, 5))), 5)
        assert settled == [core.Delivery.DELIVERED]
        assert failures == []
        assert await drain(queue, settle=False) == list(range(10))
    finally:
        monkeypatch.setattr(os, "fsync", real_fsync)
        await queue.stop(5)
    again = make_queue(tmp_path)
    await again.start()
    try:
        assert await drain(again) == list(range(10))
    finally:
        await again.stop(5)
