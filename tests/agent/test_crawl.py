"""Level crawl end to end: the agent alone keeps container logs in the node's store, and
`kloghub search` finds them there."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson

from tests import _notify as servers
from tests._procs import Daemon, run_kloghub
from tests._world import World
from tests.detect import _events as ev


def search(*args: str) -> subprocess.CompletedProcess[str]:
    return run_kloghub("search", *args)


def test_crawl_agent_keeps_lines_in_the_node_store_for_search(world: World):
    """If this failed, level crawl would not be 'kubectl logs, but kept'."""
    store = world.root / "node-store.db"
    log = world.container_dir(ns="shop", pod="web-1") / "0.log"
    world.append(log, range(50), text="GET /cart 200")
    world.append(log, [50], stream="stderr", text="connection refused by payments")
    agent = Daemon(
        "agent",
        config={
            "level": "crawl",
            "agent": {
                "state_dir": str(world.state),
                "metrics_addr": "127.0.0.1:0",
                "sources": {
                    "containers": {"paths": [str(world.pods / "*/*/*.log")]},
                    "poll_interval": "50ms",
                },
                "outputs": [{"url": f"store:{store}"}],
            },
        },
        workdir=world.root,
    ).start()
    try:
        deadline = time.monotonic() + 60
        while True:
            result = search(
                "",
                "--store",
                f"store:{store}",
                "--since",
                "1000d",
                "--format",
                "ndjson",
                "--limit",
                "1000",
            )
            if result.returncode == 0 and len(result.stdout.splitlines()) >= 51:
                break
            assert time.monotonic() < deadline, result.stderr
            time.sleep(0.3)
    finally:
        assert agent.stop() == 0
    result = search(
        '"connection refused"',
        "--store",
        f"store:{store}",
        "--since",
        "1000d",
        "--namespace",
        "shop",
        "--format",
        "ndjson",
    )
    (doc,) = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert doc["kubernetes"]["pod"]["name"] == "web-1"
    assert doc["stream"] == "stderr"


def _audit_agent(world: World, store: Path, detections: dict[str, Any]) -> Daemon:
    """A crawl agent tailing a copy of the fixture's audit log into ``store``."""
    audit = world.root / "audit.log"
    shutil.copy(ev.FIXTURE, audit)
    return Daemon(
        "agent",
        config={
            "level": "crawl",
            "agent": {
                "state_dir": str(world.state),
                "metrics_addr": "127.0.0.1:0",
                "sources": {
                    "containers": {"paths": [str(world.pods / "*/*/*.log")]},
                    "audit": {"enabled": True, "path": str(audit)},
                    "poll_interval": "50ms",
                },
                "outputs": [{"url": f"store:{store}"}],
                "detections": detections,
            },
        },
        workdir=world.root,
    ).start()


def test_crawl_agent_runs_the_detections_on_the_nodes_audit_log_into_its_store(world: World):
    """If this failed, level crawl could not give the default detections' alerts on a
    control-plane node without a collector."""
    store = world.root / "node-store.db"
    agent = _audit_agent(world, store, {"enabled": True})
    args = ("--store", f"store:{store}", "--since", "1000d", "--format", "ndjson")
    try:
        deadline = time.monotonic() + 60
        while True:
            result = search("event.kind:alert", *args)
            alerts = [orjson.loads(line) for line in result.stdout.splitlines()]
            if len(alerts) >= 5:  # what the fixture's story raises with the default pack
                break
            assert time.monotonic() < deadline, result.stderr + "".join(agent.raw)[-2000:]
            time.sleep(0.3)
    finally:
        assert agent.stop() == 0
    assert {a["data_stream"]["dataset"] for a in alerts} == {"kloghub.alerts"}
    assert {a["kloghub"]["alert"]["mode"] for a in alerts} == {"alert"}
    execs = search('rule.name:"Exec or attach into a pod"', *args).stdout.splitlines()
    assert len(execs) == 2


async def test_crawl_agent_notifies_its_alerts_to_a_receiver(world: World):
    """If this failed, agent.detections.notify would be accepted and never read: level
    crawl's alerts would reach nobody in real time."""
    hook = servers.WebhookServer()
    await hook.start()
    receiver = {"type": "webhook", "url": hook.url, "group_wait": "100ms"}
    agent = _audit_agent(
        world, world.root / "node-store.db", {"enabled": True, "notify": [receiver]}
    )
    try:
        async with asyncio.timeout(60):
            while sum(len(b["alerts"]) for b in hook.accepted) < 5:
                await asyncio.sleep(0.2)
    finally:
        assert agent.stop() == 0
        await hook.stop()
    notified = [a for b in hook.accepted for a in b["alerts"]]
    assert len({a["labels"]["rule_id"] for a in notified}) == 4  # the story's four rules
    assert all(a["document"]["event"]["kind"] == "alert" for a in notified)
