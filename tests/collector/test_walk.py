"""Level walk end to end: agent and collector as real processes on loopback.

Lines written to kubelet-style files arrive in the collector's sink with their fields and
nanosecond times, and nothing is lost when the collector dies or stays away.
"""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import orjson

from tests._procs import Daemon, free_port
from tests._world import NUM, World


def agent_config(world: World, port: int, **buffer) -> dict:
    return {
        "level": "walk",
        "agent": {
            "state_dir": str(world.state / "agent"),
            "metrics_addr": "127.0.0.1:0",
            "enrichment": {"kubernetes_api": False},
            "sources": {
                "containers": {"paths": [str(world.pods / "*/*/*.log")]},
                "node": {"enabled": False},
                "poll_interval": "50ms",
            },
            "buffer": {"max_bytes": "64MiB", **buffer},
            "outputs": [
                {
                    "url": f"forward://127.0.0.1:{port}",
                    "flush_interval": "100ms",
                    "ack_timeout": "2s",
                    "retry": {"initial_backoff": "50ms", "max_backoff": "500ms"},
                }
            ],
        },
    }


def collector_config(world: World, port: int, out: Path) -> dict:
    return {
        "level": "walk",
        "collector": {
            "listen": f"127.0.0.1:{port}",
            "state_dir": str(world.state / "collector"),
            "metrics_addr": "127.0.0.1:0",
            "sinks": [{"url": f"file:{out}"}],
        },
    }


def read_numbers(out: Path) -> dict[int, int]:
    seen: dict[int, int] = {}
    if not out.exists():
        return seen
    data = out.read_bytes()
    # The sink may be writing its last line right now: only complete lines count.
    for line in data[: data.rfind(b"\n") + 1].splitlines():
        doc = orjson.loads(line)
        m = NUM.search(doc["message"])
        if m:
            seen[int(m.group(1))] = seen.get(int(m.group(1)), 0) + 1
    return seen


def wait_numbers(out: Path, count: int, timeout: float = 60.0) -> dict[int, int]:
    deadline = time.monotonic() + timeout
    seen: dict[int, int] = {}
    while time.monotonic() < deadline:
        seen = read_numbers(out)
        if len(seen) >= count:
            return seen
        time.sleep(0.2)
    raise AssertionError(f"{len(seen)} of {count} lines arrived")


def metric(port: int, name: str) -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_lines_reach_the_collector_sink_with_fields_and_nanosecond_time(world: World):
    """If this failed, level walk would not move a container's lines to the collector."""
    port, out = free_port(), world.root / "sink.ndjson"
    log = world.container_dir(ns="shop", pod="api-1") / "0.log"
    world.append(log, range(500))
    collector = Daemon(
        "collector", config=collector_config(world, port, out), workdir=world.root
    ).start()
    agent = Daemon("agent", config=agent_config(world, port), workdir=world.root).start()
    try:
        seen = wait_numbers(out, 500)
        # The agent's records are of the layout the collector's compiled path covers.
        kernel = "kloghub_collector_kernel_records_total"
        assert metric(collector.metrics_port(), f'{kernel}{{path="compiled"}}') == 500
        assert metric(collector.metrics_port(), f'{kernel}{{path="python"}}') == 0
    finally:
        assert agent.stop() == 0
        assert collector.stop() == 0
    assert set(seen) == set(range(500))
    assert max(seen.values()) == 1
    first = orjson.loads(out.read_bytes().splitlines()[0])
    # The collector writes ECS documents (DESIGN.md §4) with their deterministic id.
    assert first["data_stream"]["dataset"] == "kubernetes.container_logs"
    assert first["kubernetes"]["namespace"] == "shop"
    assert first["kubernetes"]["pod"]["name"] == "api-1"
    assert first["_id"]
    # 2026-11-27T06:20:43.<n as 9 digits>Z survives the wire to the nanosecond
    n = int(NUM.search(first["message"]).group(1))
    assert first["@timestamp"] == f"2026-11-27T06:20:43.{n:09d}Z"


def test_collector_killed_mid_stream_then_restarted_loses_nothing(world: World):
    """If this failed, a collector crash would lose the chunks it had not acknowledged."""
    port, out = free_port(), world.root / "sink.ndjson"
    log = world.container_dir() / "0.log"
    collector = Daemon(
        "collector", config=collector_config(world, port, out), workdir=world.root
    ).start()
    agent = Daemon("agent", config=agent_config(world, port), workdir=world.root).start()
    try:
        world.append(log, range(20000), text="y" * 100)
        wait_numbers(out, 1000)
        collector.kill()
        world.append(log, range(20000, 30000), text="y" * 100)
        time.sleep(1.5)
        collector.start()
        seen = wait_numbers(out, 30000, timeout=90)
    finally:
        assert agent.stop() == 0
        collector.stop()
    assert set(seen) == set(range(30000))
    duplicates = sum(c - 1 for c in seen.values())
    print(f"collector kill: duplicates={duplicates}")


def test_collector_away_longer_than_the_buffer_holds_drops_oldest_and_counts(world: World):
    """If this failed, a full agent buffer would drop silently or stop the agent."""
    port, out = free_port(), world.root / "sink.ndjson"
    log = world.container_dir() / "0.log"
    collector = Daemon("collector", config=collector_config(world, port, out), workdir=world.root)
    agent = Daemon(
        "agent",
        config=agent_config(
            world, port, max_bytes="1MiB", segment_bytes="128KiB", when_full="drop_oldest"
        ),
        workdir=world.root,
    ).start()
    try:
        metrics_port = agent.metrics_port()
        world.append(log, range(20000), text="z" * 200)  # ~5 MB into a 1 MiB buffer
        deadline = time.monotonic() + 30
        while metric(metrics_port, 'kloghub_records_dropped_total{reason="buffer_full"}') == 0:
            assert time.monotonic() < deadline, "nothing was dropped and counted"
            time.sleep(0.2)
        collector.start()
        world.append(log, range(20000, 20100))
        seen = wait_numbers(out, 100, timeout=60)
        deadline = time.monotonic() + 30
        while not set(range(20000, 20100)) <= set(seen):
            assert time.monotonic() < deadline
            time.sleep(0.2)
            seen = read_numbers(out)
        dropped = metric(metrics_port, 'kloghub_records_dropped_total{reason="buffer_full"}')
    finally:
        agent.stop()
        collector.stop()
    # The newest lines all arrived; what is missing is exactly what was counted.
    missing = 20100 - len(seen)
    assert dropped >= missing > 0


def test_collector_away_with_block_policy_pauses_reading_and_loses_nothing(world: World):
    """If this failed, the block policy would lose lines or grow memory without bound."""
    port, out = free_port(), world.root / "sink.ndjson"
    log = world.container_dir() / "0.log"
    collector = Daemon("collector", config=collector_config(world, port, out), workdir=world.root)
    agent = Daemon(
        "agent",
        config=agent_config(world, port, max_bytes="1MiB", segment_bytes="128KiB"),
        workdir=world.root,
    ).start()
    try:
        metrics_port = agent.metrics_port()
        world.append(log, range(20000), text="z" * 200)
        deadline = time.monotonic() + 30
        # Reading pauses with the buffer full: megabytes stay unread (lag), none dropped.
        while metric(metrics_port, "kloghub_lag_bytes") < 1_000_000:
            assert time.monotonic() < deadline, "reading did not pause"
            time.sleep(0.2)
        time.sleep(1)
        assert metric(metrics_port, "kloghub_lag_bytes") > 1_000_000
        collector.start()
        seen = wait_numbers(out, 20000, timeout=90)
    finally:
        agent.stop()
        collector.stop()
    assert set(seen) == set(range(20000))
