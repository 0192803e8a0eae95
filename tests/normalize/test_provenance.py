"""Provenance from the collector, not the sender: host from the proven identity, ids scoped
by it, audit events only from senders allowed to send them."""

from __future__ import annotations

import orjson

from kloghub import config, core, normalize
from kloghub.runtime import metrics

NS = 1_700_000_000_000_000_000
WORKER = core.Origin("password", "worker-1", "worker-1", frozenset({"node"}), False, "worker-1")
CP = core.Origin("certificate", "cp-1", "cp-1", frozenset({"control-plane"}), True, "cp-1")
GROUP = core.Origin("shared_key", None, None, frozenset(), False, "node-5")
AUDIT_LINE = orjson.dumps(
    {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "auditID": "a-1",
        "stage": "ResponseComplete",
        "verb": "delete",
        "requestURI": "/api/v1/namespaces/prod/secrets/db",
        "user": {"username": "mallory"},
        "stageTimestamp": "2024-05-01T10:00:00.000001Z",
    }
).decode()


def container(host: str = "worker-1", offset: int = 100) -> core.Event:
    record = {
        "log": "GET /healthz 200",
        "stream": "stdout",
        "kubernetes": {
            "pod_name": "web-1",
            "namespace_name": "shop",
            "container_name": "web",
            "host": host,
        },
        "kloghub": {"file": "/var/log/pods/x/web/0.log", "file_id": "f00d", "offset": offset},
    }
    return core.Event("kube.shop.web-1.web", NS, record)


def audit(offset: int = 10) -> core.Event:
    record = {"log": AUDIT_LINE, "kloghub": {"file_id": "aud1", "offset": offset, "host": "cp-1"}}
    return core.Event("audit", NS, record)


def doc(event: core.Event) -> dict:
    return event.record["doc"]


def violations() -> float:
    value = metrics.REGISTRY.get_sample_value(
        "kloghub_policy_violations_total", {"reason": "audit_sender"}
    )
    return value or 0.0


def test_host_and_node_come_from_the_proven_identity_and_the_claim_is_kept_apart() -> None:
    """If this failed, a node could write records that look as if another node sent them."""
    normalizer = normalize.Normalizer(config.NormalizerConfig())
    forged = doc(normalizer(container(host="cp-1"), WORKER))
    assert forged["host"] == {"name": "worker-1"}
    assert forged["kubernetes"]["node"] == {"name": "worker-1"}
    assert forged["kloghub"]["claimed_host"] == "cp-1"
    assert forged["kloghub"]["sender"] == {"method": "password", "identity": "worker-1"}
    honest = doc(normalizer(container(), WORKER))
    assert honest["host"] == {"name": "worker-1"} and "claimed_host" not in honest["kloghub"]
    # the shared metadata of that container was not changed by the forged record
    assert doc(normalizer(container(host="cp-1")))["host"] == {"name": "cp-1"}


def test_a_shared_credential_leaves_the_host_as_claimed_and_says_so() -> None:
    """If this failed, a DaemonSet-wide key would be presented as proof of a node."""
    normalizer = normalize.Normalizer(config.NormalizerConfig())
    out = doc(normalizer(container(host="node-5"), GROUP))
    assert out["host"] == {"name": "node-5"}
    assert out["kloghub"]["sender"] == {"method": "shared_key"}


def test_ids_are_scoped_by_the_sender_so_one_node_cannot_take_anothers() -> None:
    """If this failed, a node copying another's file id and next offset would pre-empt (and
    so erase) that node's real line in the SIEM."""
    normalizer = normalize.Normalizer(config.NormalizerConfig())
    real = normalizer(container(), WORKER).record["id"]
    forged = normalizer(container(), CP).record["id"]
    assert real != forged
    assert real == normalizer(container(), WORKER).record["id"]  # resends still collapse
    assert real != normalizer(container()).record["id"]  # local records keep unscoped ids
    foreign = core.Event("kube.a.b.c", NS, {"log": "no offsets"})
    assert normalizer(foreign, WORKER).record["id"] != normalizer(foreign, CP).record["id"]


def test_audit_from_a_control_plane_identity_is_an_audit_document() -> None:
    """If this failed, the real audit log would no longer reach the audit data stream."""
    normalizer = normalize.Normalizer(config.NormalizerConfig())
    out = normalizer(audit(), CP)
    assert out.tag == "logs-kubernetes.audit_logs-default"
    assert doc(out)["user"]["name"] == "mallory"
    assert doc(out)["host"] == {"name": "cp-1"}


def test_audit_from_another_identity_is_an_ordinary_flagged_log_and_counted() -> None:
    """If this failed, any node could forge Kubernetes audit events (and blame someone)."""
    normalizer = normalize.Normalizer(config.NormalizerConfig())
    before = violations()
    for origin in (WORKER, GROUP, core.Origin("none", address="10.0.0.9")):
        out = normalizer(audit(), origin)
        assert out.tag == "logs-kubernetes.node_logs-default"
        assert "policy_violation" in doc(out)["kloghub"]["flags"]
        assert "user" not in doc(out) and "audit" not in doc(out).get("kubernetes", {})
    assert violations() == before + 3
    # an audit-shaped record under another tag is caught too
    disguised = core.Event("app", NS, orjson.loads(AUDIT_LINE))
    assert normalizer(disguised, WORKER).tag == "logs-kubernetes.node_logs-default"
    assert violations() == before + 4


def test_local_records_are_unchanged_without_an_origin() -> None:
    """If this failed, the agent's own node store (level crawl) would lose its audit log."""
    normalizer = normalize.Normalizer(config.NormalizerConfig())
    assert normalizer(audit()).tag == "logs-kubernetes.audit_logs-default"
    assert "sender" not in doc(normalizer(container())).get("kloghub", {})
