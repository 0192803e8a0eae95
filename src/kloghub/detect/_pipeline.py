"""The processing pipeline: Sigma's Kubernetes audit taxonomy → kloghub's ECS fields.

Sigma rules for ``logsource: {product: kubernetes, service: audit}`` name the fields of
the audit event as the apiserver writes them (``verb``, ``objectRef.resource``,
``user.username``, ``responseStatus.code``, ``requestURI``, ``userAgent``,
``sourceIPs``...). kloghub keeps that event whole under ``kubernetes.audit`` (as Elastic's
integration does) and adds the ECS view (``user.name``, ``source.ip``...). The pipeline
rewrites every taxonomy name to its place under ``kubernetes.audit``; the keys that the
normalizer de-dots (``annotations``, as Elastic's pipeline does) are de-dotted the same way;
``user.extra`` keys stay as written (``user.extra.authentication.kubernetes.io/pod-name``,
the field Elastic's rules name; the matcher finds a key that holds dots). The bare
names of pySigma's stock ``ecs_kubernetes`` pipeline (``resource``, ``subresource``,
``namespace``, ``apiGroup``, ``username``, ``capabilities``, ``privileged``, ``hostPath``)
are mapped too. Any other field name is an ECS field and stays as written
(``user.name``, ``kubernetes.namespace``, ``container.image.name``).
"""

from __future__ import annotations

from sigma.processing.conditions import LogsourceCondition
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations import FieldFunctionTransformation

__all__ = ["AUDIT", "audit_field", "pipeline"]

AUDIT = "kubernetes.audit"

_TOP = frozenset(
    {
        "verb",
        "objectRef",
        "user",
        "impersonatedUser",
        "responseStatus",
        "requestURI",
        "userAgent",
        "sourceIPs",
        "stage",
        "level",
        "auditID",
        "annotations",
        "requestObject",
        "responseObject",
        "requestReceivedTimestamp",
        "stageTimestamp",
    }
)
"""Top-level keys of an ``audit.k8s.io/v1`` Event that rules read."""

_USER = frozenset({"username", "groups", "uid", "extra"})
"""Keys of the audit event's ``user``; other ``user.*`` names are ECS fields."""

_BARE = {
    "resource": "objectRef.resource",
    "subresource": "objectRef.subresource",
    "namespace": "objectRef.namespace",
    "apiGroup": "objectRef.apiGroup",
    "name": "objectRef.name",
    "username": "user.username",
    "capabilities": "requestObject.spec.containers.securityContext.capabilities.add",
    "privileged": "requestObject.spec.containers.securityContext.privileged",
    "hostPath": "requestObject.spec.volumes.hostPath",
}
"""The bare names of pySigma's stock ``ecs_kubernetes`` pipeline, which SigmaHQ's rules use
(``hostPath``, ``capabilities``). ``privileged`` is read in the request (what was asked
for: kloghub's audit policy records pod writes at ``Request``), not the response."""

_DEDOTTED = ("annotations.",)
"""Prefixes whose remaining key is one de-dotted map key
(``authorization.k8s.io/decision`` → ``authorization_k8s_io/decision``)."""


def audit_field(name: str) -> str:
    """The kloghub document field of the Sigma audit field ``name``."""
    name = _BARE.get(name, name)
    head, _, rest = name.partition(".")
    if head not in _TOP:
        return name
    if head == "user" and rest.split(".", 1)[0] not in _USER:
        return name  # ECS user.* (user.name, user.id...)
    for prefix in _DEDOTTED:
        if name.startswith(prefix):
            return f"{AUDIT}.{prefix}{name[len(prefix) :].replace('.', '_')}"
    return f"{AUDIT}.{name}"


def _transform(name: str | None) -> str:
    return audit_field(name) if name is not None else ""


def pipeline() -> ProcessingPipeline:
    """kloghub's pipeline for Kubernetes audit rules (other log sources pass unchanged)."""
    return ProcessingPipeline(
        name="kloghub kubernetes audit",
        priority=20,
        items=[
            ProcessingItem(
                identifier="kloghub_kubernetes_audit_fields",
                transformation=FieldFunctionTransformation({}, _transform),
                rule_conditions=[LogsourceCondition(product="kubernetes", service="audit")],
            )
        ],
    )
