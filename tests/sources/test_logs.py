"""The agent's log source: container, node and audit files become events in the
Fluent Bit kubernetes layout with kloghub's own block."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from kloghub import config, sources
from tests._world import Collector, World, cri


async def run_source(src: config.SourcesConfig, state: Path, count: int) -> Collector:
    sink = Collector()
    source = sources.LogSource(src, config.ParsersConfig(), state, sink)
    await source.start()
    try:
        await sink.wait_for(count)
        await asyncio.sleep(0.1)
    finally:
        await source.stop(5)
    return sink


async def test_container_events_carry_tag_path_metadata_and_kloghub_block(world: World):
    """If this failed, crawl-level events would lose the pod identity or their offsets."""
    log = world.container_dir(ns="shop", pod="api-1") / "0.log"
    log.write_bytes(cri(1) + cri(2, stream="stderr"))
    src = config.SourcesConfig(
        containers=config.ContainerSource(paths=[str(world.pods / "*/*/*.log")]),
        poll_interval=0.02,
    )
    sink = await run_source(src, world.state, 2)
    first, second = sink.events
    assert first.tag == "kube.shop.api-1.app"
    assert first.record["kubernetes"] == {
        "pod_name": "api-1",
        "namespace_name": "shop",
        "pod_id": "0b3c5a4e-1111-2222-3333-444455556666",
        "container_name": "app",
    }
    assert first.record["log"] == "n=1 "
    assert first.record["stream"] == "stdout"
    assert second.record["stream"] == "stderr"
    assert first.time_ns == 1795760443_000000001
    kh = second.record["kloghub"]
    assert kh["file"] == str(log)
    assert kh["offset"] == log.stat().st_size
    assert len(kh["file_id"]) == 16


async def test_node_log_lines_are_text_events_tagged_with_the_file(world: World, tmp_path):
    """If this failed, syslog/kubelet logs would be parsed as CRI and flagged as garbage."""
    syslog = tmp_path / "syslog"
    syslog.write_text("Nov 27 06:20:43 node-1 kubelet[123]: started\nsecond line\n")
    src = config.SourcesConfig(
        containers=config.ContainerSource(enabled=False),
        node=config.NodeSource(enabled=True, paths=[str(syslog)], read_from="head"),
        poll_interval=0.02,
    )
    sink = await run_source(src, world.state, 2)
    assert [e.tag for e in sink.events] == ["node.syslog", "node.syslog"]
    assert sink.events[0].record["log"].endswith("kubelet[123]: started")
    assert "kubernetes" not in sink.events[0].record
    assert "flags" not in sink.events[0].record["kloghub"]


async def test_audit_log_lines_are_json_events_timed_by_stage_timestamp(world: World, tmp_path):
    """If this failed, audit events would be timed by when the agent read them."""
    audit = tmp_path / "audit.log"
    event = {
        "kind": "Event",
        "auditID": "a1",
        "stage": "ResponseComplete",
        "verb": "get",
        "stageTimestamp": "2026-11-27T06:20:43.123456Z",
    }
    audit.write_text(json.dumps(event) + "\nnot json at all\n")
    src = config.SourcesConfig(
        containers=config.ContainerSource(enabled=False),
        audit=config.AuditSource(enabled=True, path=str(audit)),
        poll_interval=0.02,
    )
    sink = await run_source(src, world.state, 2)
    good, bad = sink.events
    assert good.tag == "audit"
    assert json.loads(good.record["log"]) == event
    assert good.time_ns == 1795760443_123456000
    assert bad.record["log"] == "not json at all"
    assert bad.record["kloghub"]["flags"] == ["parse_error"]


async def test_node_logs_start_at_the_tail_on_first_start_when_configured(world, tmp_path):
    """If this failed, the first start of an agent would re-ship years of syslog."""
    syslog = tmp_path / "messages"
    syslog.write_text("old line\n" * 100)
    src = config.SourcesConfig(
        containers=config.ContainerSource(enabled=False),
        node=config.NodeSource(enabled=True, paths=[str(syslog)]),  # read_from: tail
        poll_interval=0.02,
    )
    sink = Collector()
    source = sources.LogSource(src, config.ParsersConfig(), world.state, sink)
    await source.start()
    try:
        await asyncio.sleep(0.2)
        with syslog.open("a") as f:
            f.write("new line\n")
        await sink.wait_for(1)
        await asyncio.sleep(0.1)
    finally:
        await source.stop(5)
    assert [e.record["log"] for e in sink.events] == ["new line"]


async def test_invalid_utf8_long_lines_and_partial_lines_are_kept_and_flagged(world: World):
    """If this failed, bad input would be dropped silently or stall the file."""
    log = world.container_dir() / "0.log"
    long_msg = b"y" * 10000
    log.write_bytes(
        b"2026-11-27T06:20:43.000000001Z stdout F bad \xff\xfe bytes\n"
        + b"2026-11-27T06:20:43.000000002Z stdout F "
        + long_msg
        + b"\n"
        + b"2026-11-27T06:20:43.000000003Z stdout P part one \n"
        + b"2026-11-27T06:20:43.000000004Z stdout F and two\n"
        + b"2026-11-27T06:20:43.000000005Z stdout F after\n"
    )
    src = config.SourcesConfig(
        containers=config.ContainerSource(paths=[str(world.pods / "*/*/*.log")]),
        poll_interval=0.02,
    )
    sink = Collector()
    source = sources.LogSource(src, config.ParsersConfig(max_line_bytes=4096), world.state, sink)
    await source.start()
    try:
        await sink.wait_for(4)
    finally:
        await source.stop(5)
    bad, long_, joined, after = sink.events
    assert bad.record["log"] == "bad \ufffd\ufffd bytes"
    assert "invalid_utf8" in bad.record["kloghub"]["flags"]
    assert bad.record["kloghub"]["raw"] == b"bad \xff\xfe bytes"
    assert "truncated" in long_.record["kloghub"]["flags"]
    assert len(long_.record["log"]) < 4096
    assert joined.record["log"] == "part one and two"
    assert "partial" in joined.record["kloghub"]["flags"]
    assert after.record["log"] == "after"


async def test_audit_and_node_files_are_not_looked_up_as_pods_when_the_cache_changes(
    world: World, tmp_path
):
    """If this failed, a pod cache update would crash the agent while it tails the audit log."""
    from kloghub import enrich

    audit = tmp_path / "audit.log"
    audit.write_text('{"kind":"Event","stage":"ResponseComplete"}\n')
    cache = enrich.PodCache()
    src = config.SourcesConfig(
        containers=config.ContainerSource(enabled=False),
        audit=config.AuditSource(enabled=True, path=str(audit)),
        poll_interval=0.02,
    )
    sink = Collector()
    decider = enrich.Enricher(cache, node_name="n1")
    source = sources.LogSource(src, config.ParsersConfig(), world.state, sink, decider=decider)
    await source.start()
    try:
        await sink.wait_for(1)
        cache.generation += 1  # what any pod event does
        with audit.open("a") as f:
            f.write('{"kind":"Event","stage":"ResponseStarted"}\n')
        await sink.wait_for(2)
    finally:
        await source.stop(5)
    assert [e.tag for e in sink.events] == ["audit", "audit"]


async def test_invalid_utf8_lines_are_counted_by_a_metric(world: World):
    """If this failed, invalid UTF-8 would be flagged on each event but counted nowhere:
    no alert could tell a node that starts writing binary garbage."""
    from kloghub.runtime import metrics

    log = world.container_dir() / "0.log"
    log.write_bytes(
        b"2026-11-27T06:20:43.000000001Z stdout F bad \xff bytes\n"
        b"2026-11-27T06:20:43.000000002Z stdout F fine\n"
        b"2026-11-27T06:20:43.000000003Z stderr F worse \xc3\x28\n"
    )
    counter = metrics.INVALID_UTF8.labels("containers")
    before = counter._value.get()
    src = config.SourcesConfig(
        containers=config.ContainerSource(paths=[str(world.pods / "*/*/*.log")]),
        poll_interval=0.02,
    )
    sink = Collector()
    source = sources.LogSource(src, config.ParsersConfig(), world.state, sink)
    await source.start()
    try:
        await sink.wait_for(3)
    finally:
        await source.stop(5)
    assert counter._value.get() == before + 2
