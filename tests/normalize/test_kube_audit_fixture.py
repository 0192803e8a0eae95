"""The real audit events of tests/fixtures/kube-audit (kube-apiserver v1.37.2, kloghub's
policy) normalize like Elastic's: no pipeline error, outcomes from the decisions."""

from __future__ import annotations

import json

from kloghub import config, normalize
from tests.normalize import _audit_fields as af
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


def test_the_risky_activity_keeps_the_bodies_and_keys_the_rules_read() -> None:
    """The real events of risky.log keep their request and response bodies (without
    metadata, as Elastic drops it), the apiserver's dotted user.extra keys, and the
    impersonated identity as user.effective; if this failed, the fields the detection rules
    and the template tests query would not be in the documents at all."""
    docs = [out.record["doc"] for out in af.documents(af.risky_lines(), "default")]
    assert len(docs) >= 20
    assert all(doc["event"].get("kind") != "pipeline_error" for doc in docs)
    audits = [doc["kubernetes"]["audit"] for doc in docs]
    pods = [a for a in audits if a["objectRef"]["resource"] == "pods" and a["verb"] == "create"]
    assert {a["objectRef"]["name"] for a in pods} == {"host-ns", "caps", "hostpath"}
    assert all(a["level"] == "Request" and "metadata" not in a["requestObject"] for a in pods)
    bound = [
        a for a in audits if "authentication.kubernetes.io/pod-name" in a["user"].get("extra", {})
    ]
    assert [a["user"]["extra"]["authentication.kubernetes.io/pod-name"] for a in bound] == [
        ["caps"]
    ]
    effective = [doc["user"]["effective"] for doc in docs if "effective" in doc["user"]]
    assert effective == [{"name": "system:admin"}]
