"""The dead-letter queue: durable entries, the size bound, summaries for ``kloghub dlq list``."""

from __future__ import annotations

from pathlib import Path

from kloghub import core, sinks
from kloghub.runtime import metrics

from ._support import NS, counter, doc

SINK = "elasticsearch+https://es.example:9200"


def rejection(i: int, error: str = "document_parsing_exception") -> sinks.Rejection:
    event = core.Event(
        "logs-kubernetes.container_logs-shop", NS + i, {"id": f"d{i}", "doc": doc(i)}
    )
    return sinks.Rejection(event, error, f"{error}: failed to parse field [n] ({i})", 400)


async def started(directory: Path, max_bytes: int = 1 << 20, **kw: int) -> sinks.DeadLetterQueue:
    dlq = sinks.DeadLetterQueue(directory, max_bytes, **kw)
    await dlq.start()
    return dlq


async def test_an_entry_keeps_the_reason_and_the_original_event(tmp_path: Path):
    """If this failed, a dead-lettered event could not be understood or replayed."""
    dlq = await started(tmp_path / "dlq")
    await dlq.put(SINK, [rejection(1)])
    await dlq.stop(5)
    [entry] = list(sinks.read(tmp_path / "dlq"))
    assert entry.sink == SINK
    assert entry.error == "document_parsing_exception"
    assert "failed to parse field [n] (1)" in entry.reason
    assert entry.status == 400
    assert entry.tag == "logs-kubernetes.container_logs-shop"
    assert entry.time_ns == NS + 1
    assert entry.id == "d1"
    assert entry.doc == doc(1)
    assert entry.time.endswith("Z")
    event = entry.to_event()
    assert event.record == {"id": "d1", "doc": doc(1)}


async def test_entries_survive_a_restart_in_a_new_segment(tmp_path: Path):
    """If this failed, a restarted collector would lose or overwrite earlier dead letters."""
    dlq = await started(tmp_path / "dlq")
    await dlq.put(SINK, [rejection(1)])
    await dlq.stop(5)
    dlq = await started(tmp_path / "dlq")
    await dlq.put(SINK, [rejection(2)])
    await dlq.stop(5)
    assert [e.id for e in sinks.read(tmp_path / "dlq")] == ["d1", "d2"]
    assert len(list((tmp_path / "dlq").glob("*.ndjson"))) == 2


async def test_the_oldest_segments_go_beyond_max_bytes_and_are_counted(tmp_path: Path):
    """If this failed, a flood of mapping conflicts could fill the collector's volume."""
    before = counter(metrics.DROPPED, "dead_letter_full")
    dlq = await started(tmp_path / "dlq", max_bytes=40_000, segment_bytes=5_000)
    for i in range(200):
        await dlq.put(SINK, [rejection(i)])
    await dlq.stop(5)
    on_disk = sum(p.stat().st_size for p in (tmp_path / "dlq").glob("*.ndjson"))
    assert on_disk <= 40_000
    ids = [e.id for e in sinks.read(tmp_path / "dlq")]
    assert ids[-1] == "d199"
    dropped = counter(metrics.DROPPED, "dead_letter_full") - before
    assert dropped == 200 - len(ids)
    assert dropped > 0


async def test_summary_counts_by_error_and_sink_and_shows_the_newest(tmp_path: Path):
    """If this failed, `kloghub dlq list` would not tell an operator what to fix."""
    dlq = await started(tmp_path / "dlq")
    await dlq.put(SINK, [rejection(i) for i in range(3)])
    await dlq.put("splunk-hec+https://hec:8088", [rejection(9, "hec_code_6")])
    await dlq.stop(5)
    with (tmp_path / "dlq" / "00000000000000000001.ndjson").open("ab") as handle:
        handle.write(b'{"sink": "torn')  # a write cut by a crash
    summary = sinks.summarize(tmp_path / "dlq", newest=2)
    assert summary.entries == 4
    assert summary.unreadable == 1
    assert summary.by_error == {"document_parsing_exception": 3, "hec_code_6": 1}
    assert summary.by_sink == {SINK: 3, "splunk-hec+https://hec:8088": 1}
    assert [e.id for e in summary.newest] == ["d2", "d9"]
    assert summary.segments == 1
    assert summary.bytes > 0


async def test_odd_values_never_make_a_put_fail(tmp_path: Path):
    """If this failed, the one event the SIEM refused for being odd could not be kept either."""
    dlq = await started(tmp_path / "dlq")
    event = core.Event("t", 1, {"id": "x", "doc": {"raw": b"\xff\xfe", 1: object()}})
    await dlq.put(SINK, [sinks.Rejection(event, "unencodable", "TypeError", None)])
    await dlq.stop(5)
    [entry] = list(sinks.read(tmp_path / "dlq"))
    assert entry.doc["raw"] == "\ufffd\ufffd"
    assert entry.status is None
