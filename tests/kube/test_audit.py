"""Audit logs for real: the apiserver's own audit log, written with the shipped policy
(forwarders/audit-policy.yaml) while tests/kube/_activity.py drives it, tailed by the agent
at level run into a collector. The ECS documents are the normalizer's, with the fields and
types it gives Elastic's audit fixtures."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from kloghub import config, normalize
from tests._procs import start_run_pipeline
from tests.kube import _activity
from tests.normalize import _fixtures as fx

pytestmark = pytest.mark.integration

VOLATILE = ("event.ingested", "kloghub.", "log.offset", "log.file.", "_id", "host.name")
"""Where a document from the pipeline and one made here from the same line may differ:
the time it was made, where the agent read the line, and the sender the collector
authenticated (host.name, from its proven identity)."""


def _type(value: Any) -> str:
    return (
        "number"
        if isinstance(value, int | float) and not isinstance(value, bool)
        else type(value).__name__
    )


def _types(doc: dict[str, Any]) -> dict[str, str]:
    return {path: _type(value) for path, value in fx.flatten(doc)}


def _fixture_types() -> dict[str, set[str]]:
    """Field → JSON types in what the normalizer makes of Elastic's native audit fixture."""
    normalizer = normalize.Normalizer(config.NormalizerConfig(preserve_original=True))
    seen: dict[str, set[str]] = {}
    for offset, line in enumerate(fx.audit_lines("test-audit.log")):
        doc = normalizer(fx.audit_event(line, offset)).record["doc"]
        for path, kind in _types(doc).items():
            seen.setdefault(path, set()).add(kind)
    return seen


def _read_docs(out: Path) -> list[dict[str, Any]]:
    if not out.exists():
        return []
    data = out.read_bytes()
    return [orjson.loads(line) for line in data[: data.rfind(b"\n") + 1].splitlines()]


def _doc_body(line: dict[str, Any]) -> dict[str, Any]:
    body = line.get("doc", line)
    return body if isinstance(body, dict) else line


@pytest.fixture(scope="module")
def activity(kube) -> tuple[str, list[dict[str, Any]], dict[str, str]]:
    """(namespace, the audit events the activity caused, usernames) — once per module."""
    ns = f"audit-{uuid.uuid4().hex[:8]}"
    users = _activity.drive(kube, ns)
    return ns, _activity.caused_by(kube.audit_events(), ns), users


def test_the_policy_records_rbac_and_exec_in_full_and_secrets_as_metadata_only(activity) -> None:
    """If this failed, the shipped audit policy would leak secret values into the log, or
    leave out what an investigation of a compromise (or a detection of a risky pod) needs."""
    _, events, users = activity
    by_resource: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        ref = e.get("objectRef") or {}
        key = ref.get("resource", "") + ("/" + ref["subresource"] if ref.get("subresource") else "")
        by_resource.setdefault(key, []).append(e)
    secrets = by_resource["secrets"]
    assert {e["verb"] for e in secrets} >= {"create", "get", "list"}
    for e in secrets + by_resource.get("serviceaccounts/token", []):
        assert e["level"] == "Metadata"
        assert "requestObject" not in e
        assert "responseObject" not in e
    binding = [e for e in by_resource["clusterrolebindings"] if e["verb"] == "create"]
    assert binding
    assert binding[0]["level"] == "RequestResponse"
    assert binding[0]["requestObject"]["roleRef"]["name"] == "cluster-admin"
    assert binding[0]["responseObject"]["subjects"][0]["name"] == "intruder"
    execs = by_resource["pods/exec"]
    assert {e["level"] for e in execs} == {"RequestResponse"}
    assert all("command=%2Fetc%2Fshadow" in e["requestURI"] for e in execs)
    refused = [e for e in execs if e["user"].get("username") == users["reader"]]
    assert refused and refused[0]["responseStatus"]["code"] == 403
    assert refused[0]["annotations"]["authorization.k8s.io/decision"] == "forbid"
    anonymous = [e for e in events if e["user"].get("username") == "system:anonymous"]
    assert anonymous and anonymous[0]["responseStatus"]["code"] == 403
    pods = {e["verb"] for e in by_resource["pods"]}
    assert pods >= {"create", "patch", "delete"}
    # Pod writes with their request body (what detections of risky pods read), not the
    # response; a deletion says nothing more than its metadata.
    for e in by_resource["pods"]:
        if e["verb"] in ("create", "patch"):
            assert e["level"] == "Request" and "responseObject" not in e
        else:
            assert e["level"] == "Metadata" and "requestObject" not in e
    created = next(e for e in by_resource["pods"] if e["verb"] == "create")
    assert created["requestObject"]["spec"]["containers"][0]["name"] == "app"


def test_the_agent_at_level_run_ships_the_real_audit_log_as_elastics_ecs_documents(
    kube, activity, tmp_path
) -> None:
    """If this failed, a real cluster's audit events would not reach the SIEM, or would reach
    it with other fields or types than the ones Elastic's integration (and its detection
    rules) expect."""
    _, events, users = activity
    wanted = {(e["auditID"], e["stage"]) for e in events}
    out = tmp_path / "sink.ndjson"
    # Audit events are accepted only from an identity with the control-plane role.
    collector, agent = start_run_pipeline(
        tmp_path,
        audit=kube.audit_log,
        sinks=[{"url": f"file:{out}"}],
        collector={"detections": {"enabled": False}},
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            docs = [_doc_body(d) for d in _read_docs(out)]
            audit = {
                (d["kubernetes"]["audit"]["auditID"], d["kubernetes"]["audit"]["stage"]): d
                for d in docs
                if isinstance(d.get("kubernetes"), dict) and "audit" in d["kubernetes"]
            }
            if wanted <= audit.keys():
                break
            assert time.monotonic() < deadline, (
                f"{len(wanted - audit.keys())} of {len(wanted)} audit events missing; "
                + "".join(collector.raw + agent.raw)[-3000:]
            )
            time.sleep(0.3)
    finally:
        assert agent.stop() == 0
        assert collector.stop() == 0

    normalizer = normalize.Normalizer(config.NormalizerConfig(preserve_original=True))
    fixture_types = _fixture_types()
    shared_with_fixtures: set[str] = set()
    for n, event in enumerate(events):
        doc = audit[(event["auditID"], event["stage"])]
        # The pipeline's document is the normalizer's for that line: same fields, same values.
        line = orjson.dumps(event).decode()
        direct = normalizer(fx.audit_event(line, n)).record["doc"]
        ours = {p: v for p, v in fx.flatten(doc) if not p.startswith(VOLATILE)}
        theirs = {p: v for p, v in fx.flatten(direct) if not p.startswith(VOLATILE)}
        assert ours.keys() == theirs.keys(), (ours.keys() ^ theirs.keys(), event["requestURI"])
        assert {p: _type(v) for p, v in ours.items()} == {p: _type(v) for p, v in theirs.items()}
        # And a field Elastic's fixtures also have is of the type it has there.
        for path, kind in _types(doc).items():
            if path in fixture_types and not path.startswith(VOLATILE):
                assert kind in fixture_types[path], (path, kind, fixture_types[path])
                shared_with_fixtures.add(path)
        assert doc["data_stream"]["dataset"] == "kubernetes.audit_logs"
        assert doc["host"]["name"] == "cp-1"  # the control-plane identity that sent it
        assert doc["event"]["action"] == event["verb"]
        assert doc["user"]["name"] == event["user"]["username"]
    assert {
        "@timestamp",
        "event.action",
        "event.outcome",
        "event.original",
        "user.name",
        "source.ip",
        "user_agent.original",
        "kubernetes.audit.auditID",
        "kubernetes.audit.objectRef.resource",
        "kubernetes.audit.responseStatus.code",
    } <= shared_with_fixtures
    refused = [
        d
        for d in audit.values()
        if d["user"]["name"] == users["reader"] and d["kubernetes"]["audit"]["verb"] == "create"
    ]
    assert refused and {d["event"]["outcome"] for d in refused} == {"failure"}
