"""Detections' fields on real audit events, live: the risky activity of tests/kube/_risky.py
on the real apiserver (shipped audit policy), its audit lines normalized and indexed into
Elasticsearch and OpenSearch with kloghub's templates, then found by field queries."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.kube import _activity, _risky
from tests.normalize import _audit_fields as af

pytestmark = pytest.mark.integration


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
