"""The agent on a state directory it cannot write: up, not ready, saying why (issue 16)."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import orjson

from tests._procs import Daemon
from tests._world import World


def readyz(port: int) -> dict:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
            return orjson.loads(r.read())
    except urllib.error.HTTPError as exc:
        return orjson.loads(exc.read())


def test_agent_waits_for_its_state_dir_and_readyz_says_why(world: World):
    """If this failed, an agent whose state disk is full or unwritable at start would exit
    and crash-loop (or look ready while reading nothing)."""
    blocker = world.root / "blocked"
    blocker.write_text("a file where the state directory's parent should be")
    out = world.root / "out.ndjson"
    log = world.container_dir() / "0.log"
    world.append(log, range(20))
    agent = Daemon(
        "agent",
        config={
            "agent": {
                "state_dir": str(blocker / "state"),
                "metrics_addr": "127.0.0.1:0",
                "enrichment": {"kubernetes_api": False},
                "sources": {
                    "containers": {"paths": [str(world.pods / "*/*/*.log")]},
                    "poll_interval": "50ms",
                },
                "outputs": [{"url": f"file:{out}"}],
            },
        },
        workdir=world.root,
    ).start()
    try:
        agent.wait_log(
            "cannot open the checkpoint database; waiting for the state directory to take it"
        )
        port = agent.metrics_port()
        state = readyz(port)
        assert state["ready"] is False
        assert "cannot open the checkpoint database" in state["problems"]["tailer"]
        blocker.unlink()
        deadline = time.monotonic() + 30
        while readyz(port)["ready"] is not True:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        while not out.exists() or len(out.read_bytes().splitlines()) < 20:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        assert agent.stop() == 0
