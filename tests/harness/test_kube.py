"""The test control plane (tests/_kube.py) is a real, locked-down kube-apiserver: TLS with our
CA, RBAC refusing what was not granted, ServiceAccount tokens from the TokenRequest API,
and an audit log written with the shipped policy."""

from __future__ import annotations

import pytest

from tests import _kube

pytestmark = pytest.mark.integration


def test_the_apiserver_answers_the_admin_over_tls_with_its_version(kube) -> None:
    """If this failed, the harness would start something other than the pinned release."""
    status, version = kube.request("GET", "/version")
    assert status == 200
    assert version["gitVersion"] == _kube._get_kube().KUBE_VERSION
    status, namespaces = kube.request("GET", "/api/v1/namespaces")
    assert status == 200
    assert {"default", "kube-system"} <= {n["metadata"]["name"] for n in namespaces["items"]}


def test_anonymous_requests_reach_rbac_and_are_refused(kube) -> None:
    """If this failed, the RBAC tests would pass against a server that allows everything."""
    status, answer = kube.request("GET", "/api/v1/secrets", anonymous=True)
    assert status == 403
    assert answer["reason"] == "Forbidden"
    assert "system:anonymous" in answer["message"]


def test_a_token_request_token_authenticates_as_its_service_account(kube) -> None:
    """If this failed, the agent's token in the RBAC and watch tests would not be its own."""
    from kubernetes import client

    kube.ensure_namespace("harness")
    kube.core().create_namespaced_service_account(
        "harness", client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="probe"))
    )
    token = kube.service_account_token("harness", "probe")
    review = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "SelfSubjectReview",
    }
    status, answer = kube.request(
        "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", token=token, body=review
    )
    assert status == 201
    assert answer["status"]["userInfo"]["username"] == "system:serviceaccount:harness:probe"
    status, _ = kube.request("GET", "/api/v1/namespaces/harness/pods", token=token)
    assert status == 403  # a ServiceAccount has no rights until a binding grants them


def test_the_audit_log_records_requests_with_the_shipped_policy(kube) -> None:
    """If this failed, the audit tests would read no log, or one made by another policy."""
    kube.request("GET", "/api/v1/namespaces/default/secrets/not-there", anonymous=True)
    events = kube.audit_events()
    assert events, "no audit events"
    assert all(e["apiVersion"] == "audit.k8s.io/v1" for e in events)
    assert all(e["stage"] != "RequestReceived" for e in events)  # omitStages of the policy
    anonymous = [
        e
        for e in events
        if e["user"].get("username") == "system:anonymous"
        and e["objectRef"].get("name") == "not-there"
    ]
    assert anonymous and anonymous[-1]["level"] == "Metadata"
    assert anonymous[-1]["responseStatus"]["code"] == 403
    assert not [e for e in events if e.get("requestURI", "").startswith("/readyz")]


def test_missing_binaries_fail_under_ci_and_skip_otherwise(tmp_path, monkeypatch) -> None:
    """If this failed, CI could pass with every Kubernetes test silently skipped."""
    monkeypatch.setenv(_kube.KUBE_BIN_VAR, str(tmp_path))
    bindir, why = _kube.find_binaries()
    assert bindir is None
    assert "kube-apiserver: missing or broken" in why
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        _kube._unavailable(why)
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match=r"get_kube\.py"):
        _kube._unavailable(why)
