"""The processing pipeline: the field names today's Kubernetes Sigma rules use reach the
fields kloghub's audit documents have."""

from __future__ import annotations

from pathlib import Path

import pytest

from kloghub import detect
from tests.detect import _events as ev


@pytest.mark.parametrize(
    ("sigma", "kloghub"),
    [
        ("objectRef.resource", "kubernetes.audit.objectRef.resource"),
        ("responseStatus.code", "kubernetes.audit.responseStatus.code"),
        ("requestURI", "kubernetes.audit.requestURI"),
        ("userAgent", "kubernetes.audit.userAgent"),
        ("sourceIPs", "kubernetes.audit.sourceIPs"),
        ("impersonatedUser.username", "kubernetes.audit.impersonatedUser.username"),
        ("annotations.authorization.k8s.io/decision",
         "kubernetes.audit.annotations.authorization_k8s_io/decision"),
        ("user.username", "kubernetes.audit.user.username"),
        ("user.name", "user.name"),
        ("resource", "kubernetes.audit.objectRef.resource"),
        ("apiGroup", "kubernetes.audit.objectRef.apiGroup"),
        ("username", "kubernetes.audit.user.username"),
        ("hostPath", "kubernetes.audit.requestObject.spec.volumes.hostPath"),
        ("capabilities",
         "kubernetes.audit.requestObject.spec.containers.securityContext.capabilities.add"),
        ("container.image.name", "container.image.name"),
    ],
)  # fmt: skip
def test_sigma_audit_names_map_to_kloghub_fields(sigma: str, kloghub: str) -> None:
    """If this failed, a public Sigma rule naming this field would never match."""
    assert detect.audit_field(sigma) == kloghub


def test_a_rule_with_stock_bare_names_matches_the_pod_it_describes(tmp_path: Path) -> None:
    """If this failed, SigmaHQ-style rules (bare ``capabilities``/``hostPath``) would load
    but stay blind on kloghub's documents."""
    (tmp_path / "r.yml").write_text(
        "title: Added capability or hostPath\nid: 0b0c3a5e-1b7e-4d55-9a7e-000000000001\n"
        "level: low\nlogsource: {product: kubernetes, service: audit}\n"
        "detection:\n  caps: {verb: create, resource: pods, capabilities: NET_ADMIN}\n"
        "  mount: {verb: create, resource: pods, hostPath: '*'}\n"
        "  condition: caps or mount\n"
    )
    (rule,) = detect.load([tmp_path]).detections
    added = {"capabilities": {"add": ["NET_ADMIN"]}}
    caps = {"containers": [{"name": "web", "image": "nginx:1.27", "securityContext": added}]}
    mount = {"volumes": [{"name": "root", "hostPath": {"path": "/", "type": "Directory"}}]}
    assert rule.match(ev.document(ev.pod_with_spec(caps))[1])
    assert rule.match(ev.document(ev.pod_with_spec(mount))[1])
    assert not rule.match(ev.document(ev.pod_with_spec({}))[1])
