"""Audit events: ECS fields of the request, its time, its outcome, and broken lines."""

from __future__ import annotations

from typing import Any

import orjson

from kloghub import config, core, normalize
from tests.normalize import _fixtures as fx

EVENT: dict[str, Any] = {
    "kind": "Event",
    "apiVersion": "audit.k8s.io/v1",
    "level": "RequestResponse",
    "auditID": "5b0e",
    "stage": "ResponseComplete",
    "requestURI": "/api/v1/namespaces/prod/secrets/db",
    "verb": "delete",
    "user": {
        "username": "alice",
        "uid": "u-1",
        "groups": ["dev"],
        "extra": {"authentication.kubernetes.io/pod-name": ["p"]},
    },
    "impersonatedUser": {"username": "system:admin"},
    "sourceIPs": ["10.0.0.9", "not-an-ip", "fd00::1"],
    "userAgent": "kubectl/v1.31",
    "objectRef": {"resource": "secrets", "namespace": "prod", "name": "db", "apiVersion": "v1"},
    "responseStatus": {"metadata": {}, "status": "Failure", "code": 403},
    "requestObject": {
        "kind": "DeleteOptions",
        "metadata": {"x": 1},
        "propagationPolicy": "Foreground",
    },
    "requestReceivedTimestamp": "2025-01-02T03:04:05.100000Z",
    "stageTimestamp": "2025-01-02T03:04:05.123456Z",
    "annotations": {"authorization.k8s.io/decision": "forbid", "authorization.k8s.io/reason": ""},
}


def _out(event: dict[str, Any], stage: str | None = None, **cfg: Any) -> core.Event:
    if stage is not None:
        event = {**event, "stage": stage}
    return normalize.Normalizer(config.NormalizerConfig(**cfg))(
        fx.audit_event(orjson.dumps(event).decode(), 77)
    )


def test_an_audit_event_gives_the_ecs_fields_of_the_request() -> None:
    """verb, decision, user, impersonation, source IPs, user agent and object become
    event.*, user.*, source.*, related.* and orchestrator.*; broken, detections on who did
    what to which object would not work."""
    out = _out(EVENT)
    doc = out.record["doc"]
    assert out.tag == "logs-kubernetes.audit_logs-default"
    assert doc["event"]["action"] == "delete"
    assert doc["event"]["outcome"] == "failure"
    assert doc["event"]["category"] == ["api"]
    assert doc["event"]["type"] == ["deletion", "denied"]
    assert doc["event"]["kind"] == "event"
    assert doc["user"] == {"name": "alice", "id": "u-1", "effective": {"name": "system:admin"}}
    assert doc["source"] == {"ip": ["10.0.0.9", "fd00::1"]} == doc["client"]
    assert doc["related"] == {
        "ip": ["10.0.0.9", "fd00::1"],
        "user": ["u-1", "alice", "system:admin"],
    }
    assert doc["user_agent"] == {"original": "kubectl/v1.31"}
    assert doc["orchestrator"]["resource"] == {"name": "db", "type": "secrets"}
    assert doc["orchestrator"]["namespace"] == "prod"
    audit = doc["kubernetes"]["audit"]
    assert audit["annotations"] == {"authorization_k8s_io/decision": "forbid"}
    assert audit["user"]["extra"] == {"authentication.kubernetes.io/pod-name": ["p"]}
    assert audit["requestObject"] == {"kind": "DeleteOptions", "propagationPolicy": "Foreground"}
    assert audit["responseStatus"] == {"status": "Failure", "code": 403}
    assert doc["message"] == "alice delete /api/v1/namespaces/prod/secrets/db -> 403"


def test_only_annotation_keys_are_de_dotted_as_elastic_does() -> None:
    """Annotations become authorization_k8s_io/..., user.extra and impersonatedUser.extra
    keep their dotted keys, whatever ``dedot`` says; broken, an exception written for
    Elastic's data (user.extra.authentication.kubernetes.io/pod-name) would not match
    kloghub's documents and its rule would fire on them."""
    event = {
        **EVENT,
        "impersonatedUser": {
            "username": "system:admin",
            "extra": {"authentication.kubernetes.io/node-name": ["n1"]},
        },
    }
    for dedot in (True, False):
        audit = _out(event, dedot=dedot).record["doc"]["kubernetes"]["audit"]
        assert audit["user"]["extra"] == {"authentication.kubernetes.io/pod-name": ["p"]}
        assert audit["impersonatedUser"]["extra"] == {
            "authentication.kubernetes.io/node-name": ["n1"]
        }
        key = "authorization_k8s_io/decision" if dedot else "authorization.k8s.io/decision"
        assert audit["annotations"] == {key: "forbid"}


def test_the_timestamp_is_the_stage_timestamp() -> None:
    """@timestamp (and the event time) is stageTimestamp, not the time the line was read;
    broken, an incident timeline would be ordered by collection delays."""
    out = _out(EVENT)
    assert out.record["doc"]["@timestamp"] == "2025-01-02T03:04:05.123456000Z"
    assert out.time_ns == 1_735_787_045_123_456_000


def test_the_outcome_falls_back_to_the_response_code() -> None:
    """Without an authorization decision the response code decides success or failure,
    and nothing at all gives unknown; broken, failed requests would look successful."""
    event = {k: v for k, v in EVENT.items() if k != "annotations"}
    assert _out(event).record["doc"]["event"]["outcome"] == "failure"
    event["responseStatus"] = {"code": 201}
    event["verb"] = "create"
    doc = _out(event).record["doc"]
    assert (doc["event"]["outcome"], doc["event"]["type"]) == ("success", ["creation"])
    del event["responseStatus"]
    assert _out(event).record["doc"]["event"]["outcome"] == "unknown"


def test_each_stage_of_a_request_is_its_own_document() -> None:
    """The same auditID at two stages gives two document ids (the stage is part of the id);
    broken, the second stage would be refused as a duplicate and lost."""
    ids = {_out(EVENT, stage).record["id"] for stage in ("RequestReceived", "ResponseComplete")}
    assert len(ids) == 2


def test_a_line_that_is_not_an_audit_event_is_kept_as_a_pipeline_error() -> None:
    """A non-JSON audit line is still indexed, as event.kind pipeline_error with the line
    as message; broken, a tampered or truncated audit log would vanish silently."""
    out = normalize.Normalizer(config.NormalizerConfig(preserve_original=True))(
        fx.audit_event('{"kind":"Event", truncated', 5)
    )
    doc = out.record["doc"]
    assert out.tag == "logs-kubernetes.audit_logs-default"
    assert doc["event"]["kind"] == "pipeline_error"
    assert doc["message"] == '{"kind":"Event", truncated'
    assert doc["event"]["original"] == doc["message"]
    assert "error" in doc


def test_fluent_bit_audit_records_without_a_log_key_are_read() -> None:
    """An audit event that a Fluent Bit agent parsed into the record itself is mapped the
    same way; broken, audit logs shipped by Fluent Bit would be pipeline errors."""
    out = normalize.Normalizer(config.NormalizerConfig())(core.Event("kube-audit", 1, dict(EVENT)))
    doc = out.record["doc"]
    assert out.tag == "logs-kubernetes.audit_logs-default"
    assert doc["event"]["action"] == "delete"
    assert doc["kubernetes"]["audit"]["auditID"] == "5b0e"


def test_aks_records_with_the_event_as_an_object_are_read() -> None:
    """An AKS kube-audit-admin record whose properties.log is an object (not text) is
    unwrapped; broken, AKS admin audit logs would lose every ECS field."""
    line = fx.audit_lines("test-audit.log.0b97ab02")[4]
    doc = normalize.Normalizer(config.NormalizerConfig())(fx.audit_event(line, 1)).record["doc"]
    assert doc["event"]["action"] == "update"
    assert doc["user"] == {"name": "aksService"}
    assert doc["kubernetes"]["audit"]["aks_metadata"]["category"] == "kube-audit-admin"
    assert doc["@timestamp"] == "2025-09-30T06:23:35.101182000Z"


def test_the_cluster_name_is_added_when_configured() -> None:
    """cluster_name fills orchestrator.cluster.name of audit and container documents;
    broken, multi-cluster SIEMs could not tell clusters apart."""
    normalizer = normalize.Normalizer(config.NormalizerConfig(), cluster_name="prod-eu")
    audit = normalizer(fx.audit_event(orjson.dumps(EVENT).decode(), 1)).record["doc"]
    assert audit["orchestrator"]["cluster"] == {"name": "prod-eu"}
    container = normalizer(fx.nginx_events()[0]).record["doc"]
    assert container["orchestrator"]["cluster"] == {"name": "prod-eu"}
