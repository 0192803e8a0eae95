"""API activity that a security team wants in its audit log, driven on the real apiserver.

:func:`drive` does, in one namespace of its own: pods created, patched, exec'd into (as
admin: the apiserver records it, then fails to reach a kubelet that does not exist) and
deleted; a Secret read by a ServiceAccount a Role allows, and refused to it cluster-wide;
an exec refused to that ServiceAccount; ``cluster-admin`` bound to a second ServiceAccount
(RBAC: the full request and response are recorded); an anonymous request (refused).

``python -m tests.kube._activity`` starts a control plane, drives this activity, and
writes the audit lines it caused, sanitized (:func:`sanitize`), to
``tests/fixtures/kube-audit/audit.log`` — the fixture the detections work reads.
"""

from __future__ import annotations

import json
import sys
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.kube import _objects

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "kube-audit" / "audit.log"
FIXTURE_NAMESPACE = "shop"


def drive(kube: Any, ns: str) -> dict[str, str]:
    """The activity (module docstring) in namespace ``ns``; returns the usernames used."""
    from kubernetes import client

    kube.ensure_namespace(ns)
    core, rbac = kube.core(), client.RbacAuthorizationV1Api(kube.admin())
    node = f"{ns}-node"
    core.create_namespaced_pod(ns, _objects.pod("web", node, labels={"app": "web"}))
    core.patch_namespaced_pod("web", ns, {"metadata": {"labels": {"app": "web", "v": "2"}}})
    exec_path = f"/api/v1/namespaces/{ns}/pods/web/exec?" + urllib.parse.urlencode(
        [("command", "cat"), ("command", "/etc/shadow"), ("stdout", "true")]
    )
    kube.request("POST", exec_path)  # no kubelet: refused after authorization, but recorded

    core.create_namespaced_secret(
        ns, {"metadata": {"name": "db-password"}, "stringData": {"password": "s3cr3t-value"}}
    )
    for sa in ("reader", "intruder"):
        core.create_namespaced_service_account(ns, {"metadata": {"name": sa}})
    rbac.create_namespaced_role(
        ns,
        {
            "metadata": {"name": "secret-reader"},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        ns,
        _objects.binding(
            "secret-reader", "Role", "secret-reader", [_objects.account_subject("reader", ns)]
        ),
    )
    reader = kube.service_account_token(ns, "reader")
    kube.request("GET", f"/api/v1/namespaces/{ns}/secrets/db-password", token=reader)  # allowed
    kube.request("GET", f"/api/v1/secrets?fieldSelector=metadata.namespace%3D{ns}", token=reader)
    kube.request("POST", exec_path, token=reader)  # refused by RBAC

    rbac.create_cluster_role_binding(intruder_admin(ns))
    kube.request("GET", f"/api/v1/namespaces/{ns}/pods", anonymous=True)
    core.delete_namespaced_pod("web", ns, grace_period_seconds=0)
    return {
        "reader": f"system:serviceaccount:{ns}:reader",
        "intruder": f"system:serviceaccount:{ns}:intruder",
    }


def intruder_admin(ns: str) -> dict[str, Any]:
    """The ClusterRoleBinding of ``cluster-admin`` to the ServiceAccount ``intruder`` of ``ns``."""
    return _objects.binding(
        f"{ns}-intruder-admin",
        "ClusterRole",
        "cluster-admin",
        [_objects.account_subject("intruder", ns)],
    )


def caused_by(events: list[dict[str, Any]], ns: str) -> list[dict[str, Any]]:
    """The audit events of :func:`drive` in ``ns``: those that name it anywhere (objectRef,
    requestURI, user, or the recorded objects). ``ns`` is unique to one run."""
    return [event for event in events if ns in json.dumps(event)]


def sanitize(event: dict[str, Any], ns: str) -> dict[str, Any]:
    """The event with this run's namespace renamed to :data:`FIXTURE_NAMESPACE`; nothing in
    it is a credential (the policy keeps secrets and tokens at Metadata)."""
    text = json.dumps(event, sort_keys=True)
    text = text.replace(ns, FIXTURE_NAMESPACE)
    assert "s3cr3t-value" not in text
    assert "eyJ" not in text  # no JWT (ServiceAccount token) anywhere
    return dict(json.loads(text))


def record(drive: Callable[[Any, str], object], fixture: Path) -> int:
    """What ``python -m`` of a fixture's driver does: start a control plane, ``drive`` it in a
    namespace of its own, and write the audit lines that caused, sanitized, to ``fixture``."""
    import tempfile
    import uuid

    from tests import _kube

    bindir, why = _kube.find_binaries()
    if bindir is None:
        print(why, file=sys.stderr)
        return 1
    ns = f"act-{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory(prefix="kloghub-kube-") as tmp:
        plane = _kube.ControlPlane(bindir, Path(tmp)).start()
        try:
            drive(plane, ns)
            events = caused_by(plane.audit_events(), ns)
        finally:
            plane.stop()
    fixture.parent.mkdir(parents=True, exist_ok=True)
    fixture.write_text("".join(json.dumps(sanitize(e, ns)) + "\n" for e in events))
    print(f"{len(events)} events written to {fixture}")
    return 0


if __name__ == "__main__":
    sys.exit(record(drive, FIXTURE))
