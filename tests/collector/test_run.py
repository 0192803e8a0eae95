"""Level run end to end: agent → collector → the real OpenSearch of the harness, with the
index templates installed at collector start, and `kloghub search` against it."""

from __future__ import annotations

import time
import urllib.request

import orjson
import pytest

from tests._procs import search, start_run_pipeline
from tests._world import World

pytestmark = pytest.mark.integration


def test_run_level_lines_and_audit_events_land_in_opensearch_data_streams(
    world: World, opensearch_url: str, tmp_path
):
    """If this failed, level run would not deliver searchable ECS documents to the SIEM."""
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
    collector, agent = start_run_pipeline(
        world.root,
        audit=audit,
        containers=str(world.pods / "*/*/*.log"),
        sinks=[{"url": f"opensearch+http://{host}", "flush_interval": "200ms"}],
        # Its own data streams: other tests share this OpenSearch.
        collector={"normalizer": {"namespace": ns}},
    )
    try:

        def count(query: str) -> int:
            return len(search(query, f"opensearch+http://{host}"))

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
