"""Sink queues that store the bytes the sink sends (encoded once, before the queue)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from kloghub import buffer, config, core
from tests.buffer._util import counter, numbered, segments


def _line(event: core.Event) -> bytes:
    if "bad" in event.record:
        raise TypeError("this sink cannot encode that")
    return orjson.dumps({"n": event.record["n"], "tag": event.tag}) + b"\n"


def _queue(directory: Any, encode: Any = _line, codec: str = "test-lines/1") -> buffer.DiskQueue:
    cfg = config.QueueConfig(max_bytes=1 << 20, segment_bytes=1 << 20)
    if encode is None:
        return buffer.DiskQueue(directory, cfg, "encoded")
    return buffer.DiskQueue(directory, cfg, "encoded", encode=encode, codec=codec)


def _documents(start: int, count: int) -> core.Batch:
    return core.Batch(
        core.Event("logs-t-default", 10**18 + n, {"id": f"d{n}", "doc": {"n": n}, "n": n})
        for n in range(start, start + count)
    )


async def test_an_encoded_queue_hands_out_the_sinks_bytes_with_tag_time_and_id(tmp_path):
    """If this failed, a sink behind the queue would send other bytes than it encoded, or
    lose the id and time its rollover check and dead letters need."""
    queue = _queue(tmp_path)
    await queue.start()
    try:
        await queue.push(_documents(0, 3))
        batch = await queue.pop(10, 1 << 20, 1.0)
        records = [e.record for e in batch]
        assert all(isinstance(r, core.Encoded) for r in records)
        assert [r.data for r in records] == [  # type: ignore[attr-defined]
            b'{"n":%d,"tag":"logs-t-default"}\n' % n for n in range(3)
        ]
        assert [r.id for r in records] == ["d0", "d1", "d2"]  # type: ignore[attr-defined]
        assert [(e.tag, e.time_ns) for e in batch] == [
            ("logs-t-default", 10**18 + n) for n in range(3)
        ]
        batch.settle(core.Delivery.DELIVERED)
    finally:
        await queue.stop(5)


async def test_an_event_the_sink_cannot_encode_is_queued_as_the_event(tmp_path):
    """If this failed, one event the encoder chokes on would fail the whole push (the agent
    would resend its chunk forever), or reach the sink without its document to dead-letter."""
    queue = _queue(tmp_path)
    await queue.start()
    try:
        batch = _documents(0, 3)
        batch.events[1].record["bad"] = True
        await queue.push(batch)
        popped = await queue.pop(10, 1 << 20, 1.0)
        assert isinstance(popped.events[0].record, core.Encoded)
        assert popped.events[1].record == {"id": "d1", "doc": {"n": 1}, "n": 1, "bad": True}
        assert isinstance(popped.events[2].record, core.Encoded)
    finally:
        await queue.stop(5)


async def test_unacknowledged_encoded_events_come_back_after_a_restart(tmp_path):
    """If this failed, a collector restart would lose or resend what its sink had not sent."""
    queue = _queue(tmp_path)
    await queue.start()
    await queue.push(_documents(0, 4))
    first = await queue.pop(2, 1 << 20, 1.0)
    first.settle(core.Delivery.DELIVERED)
    await queue.pop(2, 1 << 20, 1.0)  # handed out, never settled
    await queue.stop(5)
    again = _queue(tmp_path)
    await again.start()
    try:
        batch = await again.pop(10, 1 << 20, 1.0)
        assert [e.record.id for e in batch] == ["d2", "d3"]  # type: ignore[attr-defined]
    finally:
        await again.stop(5)


async def test_segments_of_the_previous_format_are_read_as_events_by_an_encoding_queue(tmp_path):
    """If this failed, upgrading a collector would lose what its sink queues held: they were
    written as msgpack events, and the sink must still get (and encode) them."""
    old = _queue(tmp_path, encode=None)
    await old.start()
    await old.push(numbered(0, 3))
    await old.stop(5)
    queue = _queue(tmp_path)
    await queue.start()
    try:
        await queue.push(_documents(3, 1))
        popped = []
        while batch := (await queue.pop(10, 1 << 20, 0.2)).events:
            popped.extend(batch)
        assert [e.record["n"] for e in popped[:3]] == [0, 1, 2]  # decoded documents
        assert isinstance(popped[3].record, core.Encoded)
    finally:
        await queue.stop(5)


async def test_a_queue_of_documents_refuses_to_start_on_encoded_segments(tmp_path):
    """If this failed, a sink that needs documents (the store) would read (or delete) bytes
    encoded for another sink: the operator gets a clear error and the data stays."""
    queue = _queue(tmp_path)
    await queue.start()
    await queue.push(_documents(0, 2))
    await queue.stop(5)
    documents = _queue(tmp_path, encode=None)
    with pytest.raises(RuntimeError, match="encoded for the network by another sink"):
        await documents.start()
    await documents.stop(5)
    assert segments(tmp_path)


async def test_a_queue_refuses_to_start_on_segments_of_another_encoding(tmp_path):
    """If this failed, events queued as ``_bulk`` lines would be sent to a sink of another
    kind (HEC) after its configuration changed."""
    queue = _queue(tmp_path)
    await queue.start()
    await queue.push(_documents(0, 2))
    await queue.stop(5)
    other = _queue(tmp_path, codec="other-lines/1")
    with pytest.raises(RuntimeError, match="encoded as test-lines/1"):
        await other.start()
    await other.stop(5)
    assert segments(tmp_path)


async def _pop_all(queue: buffer.DiskQueue, records: int, nbytes: int) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    while True:
        batch = await queue.pop(records, nbytes, 0.3)
        if not batch.events:
            return out
        for e in batch:
            r = e.record
            data = r.data if isinstance(r, core.Encoded) else r  # type: ignore[attr-defined]
            out.append((e.tag, e.time_ns, getattr(r, "id", None), data, e.size))
        batch.settle(core.Delivery.DELIVERED)


@pytest.mark.parametrize(("records", "nbytes"), [(1000, 1 << 20), (7, 1 << 20), (1000, 90)])
async def test_compiled_pop_hands_out_what_the_python_loop_does(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, records: int, nbytes: int
) -> None:
    """The compiled frame loop (native/src/wire.rs) takes the plain frames and leaves every
    other one — a frame the sink could not encode, a flipped bit, limits — to the Python
    loop: both give the same events, the same sizes and count the same corruption."""
    from kloghub.buffer import _queue as queue_module

    results = []
    for native in (True, False):
        if not native:
            monkeypatch.setattr(queue_module, "_TAKE_WIRE", None)
        directory = tmp_path / str(native)
        queue = _queue(directory)
        await queue.start()
        await queue.push(_documents(0, 40))
        bad = core.Event("logs-t-default", 5, {"id": "x", "doc": {}, "bad": True, "n": -1})
        await queue.push(core.Batch([bad]))
        await queue.push(_documents(40, 40))
        await queue.stop(5)
        (segment,) = segments(directory)
        data = bytearray(segment.read_bytes())
        data[data.index(b'"n":60')] ^= 0x01  # the checksum of record 60 no longer matches
        segment.write_bytes(bytes(data))
        before = counter("buffer_corrupt")
        again = _queue(directory)
        await again.start()
        try:
            results.append(
                (await _pop_all(again, records, nbytes), counter("buffer_corrupt") - before)
            )
        finally:
            await again.stop(5)
    assert results[0] == results[1]
    assert len(results[0][0]) == 61  # 0..59 and the unencodable event; the rest is corrupt
