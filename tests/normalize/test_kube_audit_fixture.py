"""The real audit events of tests/fixtures/kube-audit (kube-apiserver v1.37.2, kloghub's
policy) normalize like Elastic's: no pipeline error, outcomes from the decisions."""

from __future__ import annotations

import json

from kloghub import config, normalize
from tests.normalize import _fixtures as fx

FIXTURE = fx.FIXTURES / "kube-audit" / "audit.log"


def test_every_real_audit_event_becomes_an_ecs_audit_document() -> None:
    """If this failed, the fixture the detections are written against would not be what the
    pipeline makes of a real apiserver's log (or the file went stale)."""
    normalizer = normalize.Normalizer(config.NormalizerConfig(preserve_original=True))
    lines = [line for line in FIXTURE.read_text().split("\n") if line]
    assert len(lines) >= 20
    outcomes = {}
    for offset, line in enumerate(lines):
        event = json.loads(line)
        out = normalizer(fx.audit_event(line, offset))
        doc = out.record["doc"]
        assert out.tag == "logs-kubernetes.audit_logs-default"
        assert doc["event"].get("kind") != "pipeline_error", doc.get("error")
        assert doc["kubernetes"]["audit"]["auditID"] == event["auditID"]
        assert doc["user"]["name"] == event["user"]["username"]
        outcomes[(event["user"]["username"], event["responseStatus"]["code"])] = doc["event"][
            "outcome"
        ]
    assert outcomes[("system:anonymous", 403)] == "failure"
    assert outcomes[("system:serviceaccount:shop:reader", 403)] == "failure"
    assert outcomes[("system:serviceaccount:shop:reader", 200)] == "success"
