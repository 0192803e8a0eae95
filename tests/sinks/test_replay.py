"""``kloghub dlq replay`` (library side): what is accepted leaves, what is refused stays."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kloghub import config, core, sinks

from ._fakes import BulkServer
from ._support import FAST_RETRY, NS, doc

TAG = "logs-kubernetes.container_logs-shop"
OTHER = "splunk-hec+https://hec.example:8088"


def sink_config(server: BulkServer) -> config.SinkConfig:
    return config.SinkConfig(
        url=f"elasticsearch+http://127.0.0.1:{server.port}", retry=FAST_RETRY, flush_interval=0.02
    )


def rejection(i: int) -> sinks.Rejection:
    event = core.Event(TAG, NS + i, {"id": f"d{i}", "doc": doc(i)})
    return sinks.Rejection(event, "document_parsing_exception", "failed to parse [n]", 400)


async def dead_letters(directory: Path, by_sink: dict[str, list[int]]) -> None:
    dlq = sinks.DeadLetterQueue(directory, 1 << 20)
    await dlq.start()
    for sink, numbers in by_sink.items():
        await dlq.put(sink, [rejection(i) for i in numbers])
    await dlq.stop(5)


async def test_accepted_entries_leave_and_refused_ones_stay_with_the_new_reason(
    tmp_path: Path, server: BulkServer
):
    """If this failed, a replay would lose entries refused again, or keep delivered ones."""
    cfg = sink_config(server)
    await dead_letters(tmp_path / "dlq", {cfg.url: [0, 1, 2, 3]})

    def still_bad(target: dict[str, Any], _doc: Any) -> Any:
        if target["_id"] == "d2":
            return 400, {"type": "strict_dynamic_mapping_exception", "reason": "still wrong"}
        return None

    server.item_script = still_bad
    report = await sinks.replay(tmp_path / "dlq", [cfg], timeout=10)
    assert (report.delivered, report.refused, report.unsettled) == (3, 1, 0)
    assert sorted(key[1] for key in server.docs) == ["d0", "d1", "d3"]
    [left] = list(sinks.read(tmp_path / "dlq"))
    assert left.id == "d2"
    assert left.error == "strict_dynamic_mapping_exception"
    assert "still wrong" in left.reason
    assert left.doc == doc(2)


async def test_entries_of_other_sinks_or_other_errors_are_left_alone(
    tmp_path: Path, server: BulkServer
):
    """If this failed, replaying one SIEM's entries would send or drop another SIEM's."""
    cfg = sink_config(server)
    await dead_letters(tmp_path / "dlq", {cfg.url: [0], OTHER: [1]})
    report = await sinks.replay(tmp_path / "dlq", [cfg], error="hec_code_6", timeout=10)
    assert (report.delivered, report.skipped) == (0, 2)
    report = await sinks.replay(tmp_path / "dlq", [cfg], timeout=10)
    assert (report.delivered, report.skipped) == (1, 1)
    assert [e.sink for e in sinks.read(tmp_path / "dlq")] == [OTHER]


async def test_the_segment_a_running_collector_writes_is_not_replayed(
    tmp_path: Path, server: BulkServer
):
    """If this failed, a replay could rewrite a file the collector appends to (lost entries)."""
    cfg = sink_config(server)
    dlq = sinks.DeadLetterQueue(tmp_path / "dlq", 1 << 20)
    await dlq.start()
    try:
        await dlq.put(cfg.url, [rejection(0)])
        report = await sinks.replay(tmp_path / "dlq", [cfg], timeout=10)
    finally:
        await dlq.stop(5)
    assert report.busy_segments == 1
    assert report.delivered == 0
    assert [e.id for e in sinks.read(tmp_path / "dlq")] == ["d0"]


async def test_what_is_not_settled_in_time_stays(tmp_path: Path):
    """If this failed, a replay against a dead server would drop the entries it could not send."""
    cfg = config.SinkConfig(
        url="elasticsearch+http://127.0.0.1:9", retry=FAST_RETRY, flush_interval=0.02
    )
    await dead_letters(tmp_path / "dlq", {cfg.url: [0, 1]})
    report = await sinks.replay(tmp_path / "dlq", [cfg], timeout=0.5)
    assert report.unsettled == 2
    assert [e.id for e in sinks.read(tmp_path / "dlq")] == ["d0", "d1"]
