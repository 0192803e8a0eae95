"""Detections' fields on real audit events, live: the risky activity of tests/kube/_risky.py
on the real apiserver (shipped audit policy), its audit lines normalized and indexed into
Elasticsearch and OpenSearch with kloghub's templates, then found by field queries; and
the default pack's body-reading rules fire on the same events."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from kloghub import detect
from tests.kube import _activity, _risky
from tests.normalize import _audit_fields as af

pytestmark = pytest.mark.integration

# Rules of the default pack (src/kloghub/detect/rules) that read request bodies.
HOST_NS = "d9660fe8-57e2-4fd6-8b2d-3c94801d4ad3"
PRIVILEGED = "3190e8bf-2a6c-429c-9cd4-161c253af821"
HOSTPATH = "ef180d4a-1c8e-47f8-b19f-c42fb449874d"
NODEPORT = "8ba1ca32-196c-4bd4-81af-53e06200bb4f"
SENSITIVE_ROLE = "e8c41498-9d04-4d65-b928-3a6e95683195"
CLUSTER_ADMIN = "a1c5a4e4-7e5a-4877-a7ef-9fef3065bd81"


@pytest.fixture(scope="module")
def risky(kube) -> tuple[str, list[str]]:
    """(namespace, the audit lines the risky activity caused) — once per module."""
    import json

    ns = f"risky-{uuid.uuid4().hex[:8]}"
    _risky.drive(kube, ns)
    return ns, [json.dumps(e) for e in _activity.caused_by(kube.audit_events(), ns)]


def _key_cases(found: dict[str, set[str]], ns: str) -> None:
    assert "host-ns" in found["a pod created with hostNetwork"]
    assert "caps" in found["added capabilities"]
    assert found["a binding to cluster-admin"] == {"intruder-admin"}
    assert f"{ns}-admins" in found["cluster-admin bound, in the response"]
    assert found["a wildcard Role"] == {"wildcard"}


async def test_elasticsearch_finds_risky_pods_and_rbac_by_field(risky, es_client: Any) -> None:
    """A pod created with hostNetwork, added capabilities, a binding to cluster-admin and a
    wildcard Role, as this apiserver records them, are each found by a field query in
    Elasticsearch; broken, Elastic's prebuilt rules for them would never fire on kloghub."""
    ns, lines = risky
    docs = af.documents(lines, "t" + uuid.uuid4().hex[:12])
    _key_cases(await af.check_on_server(af.elasticsearch(es_client), docs), ns)


async def test_opensearch_finds_risky_pods_and_rbac_by_field(risky, os_client: Any) -> None:
    """The same in OpenSearch; broken, its detectors and alert queries would be blind."""
    ns, lines = risky
    namespace = "t" + uuid.uuid4().hex[:12]
    docs = af.documents(lines, namespace)
    try:
        _key_cases(await af.check_on_server(af.opensearch(os_client), docs), ns)
    finally:
        await os_client.indices.delete_data_stream(
            name=f"logs-kubernetes.audit_logs-{namespace}", ignore=[404]
        )


def test_the_shipped_policy_records_what_the_default_pack_reads(risky) -> None:
    """With forwarders/audit-policy.yaml, the real apiserver's events of the risky activity
    carry the request bodies the default pack matches on: its host-namespace, privileged,
    hostPath, NodePort, sensitive-role and cluster-admin rules each fire on the object made
    for them; broken, the pack would be blind on a real cluster however good its rules."""
    ns, lines = risky
    ruleset = detect.load([detect.default_pack()])
    docs = af.documents(lines, "default")
    fired: dict[str, set[str]] = {}
    for rule in ruleset.detections:
        for event in docs:
            if rule.match(event.record["doc"]):
                name = event.record["doc"]["kubernetes"]["audit"]["objectRef"].get("name", "")
                fired.setdefault(rule.title, set()).add(name)
    titles = {rule.id: rule.title for rule in ruleset.detections}
    assert fired[titles[HOST_NS]] == {"host-ns"}
    assert fired[titles[PRIVILEGED]] == {"caps"}
    assert fired[titles[HOSTPATH]] == {"hostpath"}
    assert fired[titles[NODEPORT]] == {"exposed"}
    assert fired[titles[SENSITIVE_ROLE]] == {"wildcard", f"{ns}-escalate"}
    assert fired[titles[CLUSTER_ADMIN]] == {"intruder-admin", f"{ns}-admins"}
