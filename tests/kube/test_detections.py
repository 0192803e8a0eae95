"""Detections live at level run: activity on the real apiserver (tests/_kube.py) → its audit
log → the agent → the collector's rules → alerts in OpenSearch, as a responder would see
them, and notified to a webhook receiver (tests/_notify.py); dry-run and exceptions tuned
in the collector's config apply to both."""

from __future__ import annotations

import contextlib
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests import _notify
from tests._procs import Daemon, search, start_run_pipeline
from tests.kube import _activity

pytestmark = pytest.mark.integration

EXEC = "faa4761f-d604-4387-84c2-e2ed3d5931b1"
PRIVILEGED = "3190e8bf-2a6c-429c-9cd4-161c253af821"
CLUSTER_ADMIN = "a1c5a4e4-7e5a-4877-a7ef-9fef3065bd81"
ALERT_BOUND_S = 60
"""Generous: the benchmark (bench/detect_bench.py) measures the latency; this only proves
alerts arrive while the activity is recent, on a machine the suite shares."""


def _privileged_pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": "no-such-node",
            "containers": [
                {"name": "c", "image": "busybox", "securityContext": {"privileged": True}}
            ],
        },
    }


def _alerts(store: str, ns: str) -> list[dict[str, Any]]:
    docs = search("event.kind:alert", store, since="1h")
    # The audit log is the session's: keep the alerts about this test's objects.
    return [d for d in docs if ns in orjson.dumps(d.get("kubernetes")).decode()]


def _start(kube: Any, tmp_path: Path, ns: str, store: str, hook: str) -> tuple[Daemon, Daemon]:
    return start_run_pipeline(
        tmp_path,
        audit=kube.audit_log,
        audit_source={"read_from": "tail"},
        sinks=[{"url": store, "flush_interval": "200ms"}],
        collector={
            "normalizer": {"namespace": ns.replace("-", "")},
            "detections": {
                "enabled": True,
                "rules": {
                    EXEC: {"mode": "dry-run"},
                    PRIVILEGED: {"exceptions": [{"objectRef.namespace": f"{ns}-ci"}]},
                },
                "notify": [
                    {"type": "webhook", "url": hook, "group_wait": "200ms"},
                ],
            },
        },
    )


def test_activity_on_the_apiserver_raises_alerts_in_opensearch_and_at_a_webhook(
    kube: Any, tmp_path: Path, opensearch_url: str
) -> None:
    """If this failed, a privileged pod, an exec or a cluster-admin binding on a real
    cluster would raise no alert in the SIEM nor reach a receiver (or tuning would not
    apply live)."""
    ns = f"det-{uuid.uuid4().hex[:8]}"
    store = f"opensearch+http://{opensearch_url.split('://', 1)[1]}"
    with _notify.serving_in_thread(_notify.WebhookServer()) as hook:
        alerts, notified = _activity_raises_alerts(kube, tmp_path, ns, store, hook)
    by_rule: dict[str, list[dict[str, Any]]] = {}
    for alert in alerts:
        by_rule.setdefault(alert["rule"]["id"], []).append(alert)
    (binding,) = by_rule[CLUSTER_ADMIN]
    assert binding["kloghub"]["alert"]["mode"] == "alert"
    assert binding["kubernetes"]["audit"]["objectRef"]["name"] == f"{ns}-intruder-admin"
    assert binding["user"]["name"]
    # The exception: the privileged pod of the excepted namespace raised nothing.
    assert [a["kubernetes"]["namespace"] for a in by_rule[PRIVILEGED]] == [ns]
    assert by_rule[PRIVILEGED][0]["event"]["severity"] == 73  # level high
    assert {a["kloghub"]["alert"]["mode"] for a in by_rule[EXEC]} == {"dry-run"}
    # Notified: what alerted, not the dry-run exec nor the excepted namespace.
    labels = [a["labels"] for a in notified]
    assert EXEC not in {label["rule_id"] for label in labels}
    assert [label.get("namespace") for label in labels if label["rule_id"] == PRIVILEGED] == [ns]


def _activity_raises_alerts(
    kube: Any, tmp_path: Path, ns: str, store: str, hook: _notify.WebhookServer
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The activity, then the alerts stored and notified about this test's objects."""
    from kubernetes import client

    collector, agent = _start(kube, tmp_path, ns, store, hook.url)
    try:
        time.sleep(1)  # the agent has opened the audit log at its end
        core, rbac = kube.core(), client.RbacAuthorizationV1Api(kube.admin())
        for namespace in (f"{ns}-ci", ns):
            kube.ensure_namespace(namespace)
            # This apiserver does not --allow-privileged: refused (422) after the audit
            # log recorded the attempt with its body, which is what the rule reads.
            with contextlib.suppress(client.ApiException):
                core.create_namespaced_pod(namespace, _privileged_pod("priv"))
        exec_path = f"/api/v1/namespaces/{ns}/pods/priv/exec?" + urllib.parse.urlencode(
            [("command", "sh"), ("stdout", "true")]
        )
        kube.request("POST", exec_path)  # no kubelet: refused after authorization, recorded
        core.create_namespaced_service_account(ns, {"metadata": {"name": "intruder"}})
        rbac.create_cluster_role_binding(_activity.intruder_admin(ns))
        deadline = time.monotonic() + ALERT_BOUND_S
        while True:
            alerts = _alerts(store, ns)
            rules = {a["rule"]["id"] for a in alerts}
            notified = [a for body in hook.accepted for a in body["alerts"] if ns in str(a)]
            told = {a["labels"]["rule_id"] for a in notified}
            if {EXEC, PRIVILEGED, CLUSTER_ADMIN} <= rules and {PRIVILEGED, CLUSTER_ADMIN} <= told:
                break
            assert time.monotonic() < deadline, (
                f"alerts of {sorted(rules)}, notified {sorted(told)} only; "
                + "".join(collector.raw + agent.raw)[-3000:]
            )
            time.sleep(0.5)
    finally:
        assert agent.stop() == 0
        assert collector.stop() == 0
    return alerts, notified
