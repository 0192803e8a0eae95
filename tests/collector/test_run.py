"""Level run end to end: agent → collector → the real OpenSearch of the harness, with the
index templates installed at collector start, and `kloghub search` against it."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request

import orjson
import pytest

from tests._procs import Daemon, free_port
from tests._world import World

pytestmark = pytest.mark.integration


def test_run_level_lines_and_audit_events_land_in_opensearch_data_streams(
    world: World, opensearch_url: str, tmp_path
):
    """If this failed, level run would not deliver searchable ECS documents to the SIEM."""
    port = free_port()
    ns = f"run{time.monotonic_ns() % 10**9}"
    log = world.container_dir(ns=ns, pod="api-1") / "0.log"
    with log.open("w") as f:
        for n in range(40):
            f.write(
                f'2026-11-27T06:20:43.{n:09d}Z stdout F {{"level":"error","msg":"db timeout",'
                f'"n":{n}}}\n'
            )
    audit = tmp_path / "audit.log"
    audit.write_text(
        orjson.dumps(
            {
                "kind": "Event",
                "apiVersion": "audit.k8s.io/v1",
                "auditID": "x1",
                "stage": "ResponseComplete",
                "verb": "get",
                "requestURI": "/api/v1/secrets",
                "user": {"username": f"system:serviceaccount:{ns}:intruder"},
                "objectRef": {"resource": "secrets", "namespace": ns},
                "stageTimestamp": "2026-11-27T06:20:43.000001Z",
                "requestReceivedTimestamp": "2026-11-27T06:20:43.000001Z",
                "annotations": {"authorization.k8s.io/decision": "allow"},
            }
        ).decode()
        + "\n"
    )
    host = opensearch_url.split("://", 1)[1]
    collector = Daemon(
        "collector",
        config={
            "level": "run",
            "collector": {
                "listen": f"127.0.0.1:{port}",
                "state_dir": str(world.state / "c"),
                "metrics_addr": "127.0.0.1:0",
                # Its own data streams: other tests share this OpenSearch.
                "normalizer": {"namespace": ns},
                "listener": {
                    "shared_key": "run-key",
                    "users": [{"username": "cp-1", "password": "pw", "roles": ["control-plane"]}],
                },
                "sinks": [{"url": f"opensearch+http://{host}", "flush_interval": "200ms"}],
            },
        },
        workdir=world.root,
    ).start()
    agent = Daemon(
        "agent",
        config={
            "level": "run",
            "agent": {
                "state_dir": str(world.state / "a"),
                "metrics_addr": "127.0.0.1:0",
                "enrichment": {"kubernetes_api": False},
                "sources": {
                    "containers": {"paths": [str(world.pods / "*/*/*.log")]},
                    "node": {"enabled": False},
                    "audit": {"path": str(audit)},
                    "poll_interval": "50ms",
                },
                "node_name": "cp-1",
                "outputs": [
                    {
                        "url": f"forward://127.0.0.1:{port}",
                        "flush_interval": "100ms",
                        "shared_key": "run-key",
                        "username": "cp-1",
                        "password": "pw",
                    }
                ],
            },
        },
        workdir=world.root,
    ).start()
    try:

        def count(query: str) -> int:
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "kloghub",
                    "search",
                    query,
                    "--store",
                    f"opensearch+http://{host}",
                    "--since",
                    "1000d",
                    "--limit",
                    "1000",
                    "--format",
                    "ndjson",
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            return len(result.stdout.splitlines())

        deadline = time.monotonic() + 90
        while (
            count(f"ns:{ns} level:error") < 40
            or count(f'user:"system:serviceaccount:{ns}:intruder"') < 1
        ):
            assert time.monotonic() < deadline, "".join(collector.raw)[-3000:]
            time.sleep(1)
    finally:
        assert agent.stop() == 0
        assert collector.stop() == 0
    with urllib.request.urlopen(
        f"{opensearch_url}/_index_template/kloghub-kubernetes.container_logs", timeout=10
    ) as resp:
        assert resp.status == 200
