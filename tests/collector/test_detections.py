"""Detections in the real collector: the fixture's audit log (tests/fixtures/kube-audit)
tailed by a real agent, sent over Forward, normalized, matched by the default pack, and the
alerts written to every sink — the embedded store, OpenSearch and Elasticsearch — in the
kloghub.alerts data stream, found by `kloghub search`; dry-run and exceptions as set."""

from __future__ import annotations

import shutil
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests._procs import Daemon, search, start_run_pipeline
from tests.detect import _events as ev

pytestmark = pytest.mark.integration

EXEC = "faa4761f-d604-4387-84c2-e2ed3d5931b1"
SECRET_ACCESS = "e2d97bc4-c54f-463d-966a-11c341f6f387"
SENSITIVE_ROLE = "e8c41498-9d04-4d65-b928-3a6e95683195"
CLUSTER_ADMIN = "a1c5a4e4-7e5a-4877-a7ef-9fef3065bd81"
READER = "system:serviceaccount:shop:reader"


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return orjson.loads(resp.read())


def _pipeline(
    tmp_path: Path, ns: str, sinks: list[dict[str, Any]], **detections: Any
) -> tuple[Daemon, Daemon]:
    """A collector with the default pack (the admin's exec excepted, cluster-admin bindings
    in dry-run, ``detections`` added) and an agent tailing the fixture's audit log."""
    audit = tmp_path / "audit.log"
    shutil.copy(ev.FIXTURE, audit)
    return start_run_pipeline(
        tmp_path,
        audit=audit,
        sinks=sinks,
        collector={
            "normalizer": {"namespace": ns},  # its own data streams on shared servers
            "detections": {
                "enabled": True,
                "rules": {
                    # The operator's own exec is allowed; the ServiceAccount's is not.
                    EXEC: {"exceptions": [{"user.username": "kloghub-admin"}]},
                    CLUSTER_ADMIN: {"mode": "dry-run"},
                },
                **detections,
            },
        },
    )


def _check_alerts(alerts: list[dict[str, Any]], where: str) -> None:
    by_rule: dict[str, list[dict[str, Any]]] = {}
    for doc in alerts:
        by_rule.setdefault(doc["rule"]["id"], []).append(doc)
    assert set(by_rule) == {EXEC, SECRET_ACCESS, SENSITIVE_ROLE, CLUSTER_ADMIN}, where
    (exec_alert,) = by_rule[EXEC]  # the admin's exec is excepted
    assert exec_alert["user"]["name"] == READER
    assert exec_alert["kloghub"]["alert"]["mode"] == "alert"
    (binding,) = by_rule[CLUSTER_ADMIN]
    assert binding["kloghub"]["alert"]["mode"] == "dry-run" and binding["tags"] == ["dry-run"]
    for doc in alerts:
        assert doc["event"]["kind"] == "alert"
        assert doc["data_stream"]["dataset"] == "kloghub.alerts"
        assert doc["kloghub"]["alert"]["trigger_ids"]


def test_the_collector_writes_the_alerts_of_real_audit_events_to_every_sink(
    tmp_path: Path, opensearch_url: str, elasticsearch_url: str
) -> None:
    """If this failed, level run's built-in detections would not reach the SIEM or the
    store (or would ignore the rule settings a user tuned)."""
    ns = f"det{uuid.uuid4().hex[:10]}"
    os_host = opensearch_url.split("://", 1)[1]
    es_host = elasticsearch_url.split("://", 1)[1]
    db = tmp_path / "store.db"
    stores = {
        "store": f"store:{db}",
        "opensearch": f"opensearch+http://{os_host}",
        "elasticsearch": f"elasticsearch+http://{es_host}",
    }
    collector, agent = _pipeline(
        tmp_path,
        ns,
        [{"url": url, "flush_interval": "200ms"} for url in stores.values()],
    )
    query = f"event.kind:alert data_stream.namespace:{ns}"
    found: dict[str, list[dict[str, Any]]] = {}
    try:
        deadline = time.monotonic() + 90
        while len(found) < len(stores):
            for name, store in stores.items():
                if name not in found and len(hits := search(query, store)) >= 4:
                    found[name] = hits
            assert time.monotonic() < deadline, (
                f"alerts only in {sorted(found)}: " + "".join(collector.raw)[-3000:]
            )
            time.sleep(1)
        # The events are there too: the alerts did not take their place.
        assert len(search("dataset:kubernetes.audit_logs", stores["store"])) == len(ev.raw_events())
    finally:
        assert agent.stop() == 0
        assert collector.stop() == 0
    for name, alerts in found.items():
        _check_alerts(alerts, name)
    # The same alert ids everywhere: deterministic, so a resend overwrites, never adds.
    ids = {
        name: sorted(d["kloghub"]["alert"]["id"] for d in alerts) for name, alerts in found.items()
    }
    assert len({tuple(v) for v in ids.values()}) == 1, ids
    # OpenSearch lists its data streams (the harness's Elasticsearch build has no
    # _data_stream API); on both, the alerts index was made by kloghub's template.
    streams = _get(f"{opensearch_url}/_data_stream/logs-kloghub.alerts-{ns}")["data_streams"]
    assert [s["template"] for s in streams] == ["kloghub-kloghub.alerts"]
    for url in (opensearch_url, elasticsearch_url):
        (index,) = _get(f"{url}/_resolve/index/logs-kloghub.alerts-{ns}")["data_streams"]
        assert index["name"] == f"logs-kloghub.alerts-{ns}"
        mapping = next(iter(_get(f"{url}/logs-kloghub.alerts-{ns}/_mapping").values()))
        props = mapping["mappings"]["properties"]
        assert props["event"]["properties"]["severity"]["type"] == "long"
        assert props["rule"]["properties"]["id"]["type"] == "keyword"
