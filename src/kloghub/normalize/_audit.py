"""Kubernetes API server audit events → ECS, as Elastic's Kubernetes integration maps them.

Three shapes are understood: the API server's own ``audit.k8s.io`` events (one JSON line
per event and stage), Google Cloud audit log entries of GKE clusters (``protoPayload``),
and Azure diagnostic records of AKS clusters (``category: kube-audit[-admin]`` with the
event in ``properties.log``, as text or as an object).

Like Elastic's pipeline: the event goes under ``kubernetes.audit`` without its empty values
and without ``requestObject.metadata`` / ``responseObject.metadata``; annotation keys are
de-dotted (``authorization_k8s_io/decision``) and no other keys are: ``user.extra`` keeps
``authentication.kubernetes.io/pod-name`` as the apiserver wrote it, which Elasticsearch and
OpenSearch index at the path ``user.extra.authentication.kubernetes.io/pod-name``, the
field Elastic's rules and their exceptions name. ``event.action`` is the verb,
``event.outcome`` comes from the ``authorization.k8s.io/decision`` annotation, ``user.*``,
``user_agent.original``, ``source.ip`` / ``client.ip`` (every source IP, as a list),
``related.*`` and ``orchestrator.*`` are filled. kloghub adds ``event.category: [api]``,
``event.type`` (from the verb and the decision), ``user.effective.*`` for impersonation, an
outcome from the response code when no decision was recorded, a one-line ``message``, and
takes ``@timestamp`` from ``stageTimestamp`` (the time of the stage this event reports).
"""

from __future__ import annotations

import ipaddress
from typing import Any

import orjson

from kloghub import parse

__all__ = ["MAX_DEPTH", "Audit", "from_event", "looks_like_audit"]

_VERB_TYPES = {
    "get": "access",
    "list": "access",
    "watch": "access",
    "create": "creation",
    "post": "creation",
    "update": "change",
    "patch": "change",
    "put": "change",
    "delete": "deletion",
    "deletecollection": "deletion",
}
_DECISION = "authorization.k8s.io/decision"
_EMPTY: tuple[Any, ...] = (None, "", {}, [])
MAX_DEPTH = 32
"""Nesting kept as structure under ``kubernetes.audit`` (real audit events stay far below)."""


class Audit:
    """The ECS fragments of one audit event, and what the document id and time need."""

    __slots__ = ("fields", "stage", "time_ns")

    def __init__(self, fields: dict[str, Any], stage: str | None, time_ns: int | None) -> None:
        self.fields = fields
        self.stage = stage
        self.time_ns = time_ns


def looks_like_audit(record: dict[str, Any]) -> bool:
    """A record that is itself an audit event (Fluent Bit tailing the audit log as JSON)."""
    api = record.get("apiVersion")
    return (type(api) is str and api.startswith("audit.k8s.io")) or "protoPayload" in record


def _prune(value: Any, depth: int = 0) -> Any:
    """A copy without ``None``, ``""``, ``{}`` and ``[]`` (at any depth); 0 and false stay.

    Past :data:`MAX_DEPTH` levels the rest is kept as JSON text: JSON encoders (and
    Elasticsearch) refuse deeper documents.
    """
    kind = type(value)
    if kind is dict or kind is list:
        return _prune_container(value, depth)
    if kind is bytes:
        return value.decode("utf-8", "replace")
    if value is None or kind in (str, int, float, bool):
        return value
    return str(value)


def _prune_container(value: dict[Any, Any] | list[Any], depth: int) -> Any:
    if depth >= MAX_DEPTH:
        try:
            return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
        except (TypeError, orjson.JSONEncodeError):
            return "[nested too deep to keep]"
    if isinstance(value, list):
        return [p for p in (_prune(item, depth + 1) for item in value) if p not in _EMPTY]
    out = {}
    for key, item in value.items():
        pruned = _prune(item, depth + 1)
        if pruned not in _EMPTY:
            out[str(key)] = pruned
    return out


def _dedot_keys(mapping: Any, enabled: bool) -> Any:
    if not enabled or type(mapping) is not dict:
        return mapping
    return {key.replace(".", "_"): value for key, value in mapping.items()}


def _str(value: Any) -> str | None:
    return value if type(value) is str and value else None


def _ips(values: Any) -> list[str]:
    if type(values) is str:
        values = [values]
    if type(values) is not list:
        return []
    ips: list[str] = []
    for value in values:
        if type(value) is str and value not in ips:
            try:
                ipaddress.ip_address(value)
            except ValueError:
                continue
            ips.append(value)
    return ips


def _time(value: Any) -> int | None:
    if type(value) is not str:
        return None
    return parse.parse_rfc3339(value.encode("ascii", "replace"))


def _outcome(decision: Any, code: Any) -> str:
    if decision == "allow":
        return "success"
    if decision == "forbid":
        return "failure"
    if type(code) is int and code > 0:
        return "success" if code < 400 else "failure"
    return "unknown"


def _set(target: dict[str, Any], key: str, value: Any) -> None:
    if value not in _EMPTY:
        target[key] = value


def _common(
    audit: dict[str, Any],
    *,
    verb: str | None,
    decision: Any,
    code: Any,
    user: Any,
    impersonated: Any,
    user_agent: str | None,
    source_ips: list[str],
    orchestrator: dict[str, Any],
    stage: str | None,
    time_ns: int | None,
    uri: str | None,
) -> Audit:
    event: dict[str, Any] = {"kind": "event", "category": ["api"]}
    types = [_VERB_TYPES.get(verb, "info") if verb else "info"]
    if decision == "allow":
        types.append("allowed")
    elif decision == "forbid":
        types.append("denied")
    event["type"] = types
    _set(event, "action", verb)
    event["outcome"] = _outcome(decision, code)
    fields: dict[str, Any] = {"event": event, "kubernetes": {"audit": audit}}

    ecs_user: dict[str, Any] = {}
    related_users: list[str] = []
    if type(user) is dict:
        _set(ecs_user, "name", _str(user.get("username")))
        _set(ecs_user, "id", _str(user.get("uid")))
        related_users.extend(v for v in (ecs_user.get("id"), ecs_user.get("name")) if v)
    if type(impersonated) is dict:
        effective: dict[str, Any] = {}
        _set(effective, "name", _str(impersonated.get("username")))
        _set(effective, "id", _str(impersonated.get("uid")))
        _set(ecs_user, "effective", effective)
        related_users.extend(
            v for v in (effective.get("id"), effective.get("name")) if v and v not in related_users
        )
    _set(fields, "user", ecs_user)
    if user_agent:
        fields["user_agent"] = {"original": user_agent}
    if source_ips:
        fields["source"] = {"ip": source_ips}
        fields["client"] = {"ip": list(source_ips)}
    related: dict[str, Any] = {}
    _set(related, "ip", list(source_ips))
    _set(related, "user", related_users)
    _set(fields, "related", related)
    fields["orchestrator"] = orchestrator

    who = ecs_user.get("name") or "unknown user"
    what = uri or orchestrator.get("resource", {}).get("name") or ""
    summary = f"{who} {verb or 'request'} {what}".rstrip()
    if type(code) is int:
        summary += f" -> {code}"
    fields["message"] = summary
    return Audit(fields, stage, time_ns)


def _native(event: dict[str, Any], dedot: bool) -> Audit:
    audit = _prune(event)
    for key in ("requestObject", "responseObject"):
        obj = audit.get(key)
        if type(obj) is dict:
            obj.pop("metadata", None)
            if not obj:
                del audit[key]
    annotations = event.get("annotations")
    decision = annotations.get(_DECISION) if type(annotations) is dict else None
    if "annotations" in audit:
        audit["annotations"] = _dedot_keys(audit["annotations"], dedot)
    status = audit.get("responseStatus")
    code = status.get("code") if type(status) is dict else None
    ref = audit.get("objectRef")
    ref = ref if type(ref) is dict else {}
    orchestrator: dict[str, Any] = {}
    _set(orchestrator, "api_version", _str(audit.get("apiVersion")))
    _set(orchestrator, "namespace", _str(ref.get("namespace")))
    resource: dict[str, Any] = {}
    _set(resource, "name", _str(ref.get("name")))
    _set(resource, "type", _str(ref.get("resource")))
    _set(orchestrator, "resource", resource)
    orchestrator["type"] = "kubernetes"
    stage = _str(audit.get("stage"))
    time_ns = _time(audit.get("stageTimestamp"))
    if time_ns is None:
        time_ns = _time(audit.get("requestReceivedTimestamp"))
    verb = _str(audit.get("verb"))
    return _common(
        audit,
        verb=verb,
        decision=decision,
        code=code,
        user=audit.get("user"),
        impersonated=audit.get("impersonatedUser"),
        user_agent=_str(audit.get("userAgent")),
        source_ips=_ips(audit.get("sourceIPs")),
        orchestrator=orchestrator,
        stage=stage,
        time_ns=time_ns,
        uri=_str(audit.get("requestURI")),
    )


def _gke(entry: dict[str, Any], dedot: bool) -> Audit:
    payload = entry.get("protoPayload")
    payload = _prune(payload) if type(payload) is dict else {}
    status = payload.pop("status", None)
    audit: dict[str, Any] = {}
    labels = entry.get("labels")
    if type(labels) is dict:
        _set(audit, "annotations", _dedot_keys(_prune(labels), dedot))
    _set(audit, "auditID", _str(entry.get("insertId")))
    _set(audit, "logName", _str(entry.get("logName")))
    for key in ("operation", "resource"):
        if type(entry.get(key)) is dict:
            _set(audit, key, _prune(entry[key]))
    _set(audit, "protoPayload", payload)
    _set(audit, "requestReceivedTimestamp", _str(entry.get("receiveTimestamp")))
    _set(audit, "stageTimestamp", _str(entry.get("timestamp")))
    code = None
    if type(status) is dict:
        response: dict[str, Any] = {}
        code = status.get("code")
        if type(code) is int:
            response["code"] = code
        _set(response, "message", _str(status.get("message")))
        _set(audit, "responseStatus", response)
    resource = entry.get("resource")
    resource = resource if type(resource) is dict else {}
    resource_labels = resource.get("labels")
    resource_labels = resource_labels if type(resource_labels) is dict else {}
    orchestrator: dict[str, Any] = {}
    cluster: dict[str, Any] = {}
    _set(cluster, "id", _str(resource_labels.get("project_id")))
    _set(cluster, "name", _str(resource_labels.get("cluster_name")))
    _set(orchestrator, "cluster", cluster)
    target: dict[str, Any] = {}
    _set(target, "name", _str(payload.get("resourceName")))
    _set(target, "type", _str(resource.get("type")))
    _set(orchestrator, "resource", target)
    orchestrator["type"] = "kubernetes"
    method = _str(payload.get("methodName"))
    auth = payload.get("authenticationInfo")
    meta = payload.get("requestMetadata")
    meta = meta if type(meta) is dict else {}
    principal = _str(auth.get("principalEmail")) if type(auth) is dict else None
    time_ns = _time(entry.get("timestamp"))
    if time_ns is None:
        time_ns = _time(entry.get("receiveTimestamp"))
    return _common(
        audit,
        verb=method.rsplit(".", 1)[-1] if method else None,
        decision=labels.get(_DECISION) if type(labels) is dict else None,
        code=code if type(code) is int and code > 0 else None,
        user={"username": principal} if principal else None,
        impersonated=None,
        user_agent=_str(meta.get("callerSuppliedUserAgent")),
        source_ips=_ips(meta.get("callerIp")),
        orchestrator=orchestrator,
        stage=None,
        time_ns=time_ns,
        uri=_str(payload.get("resourceName")),
    )


_AKS_METADATA = (
    ("category", None, "category"),
    ("containerID", "properties", "container_id"),
    ("operationName", None, "operation_name"),
    ("pod", "properties", "pod"),
    ("resourceId", None, "resource_id"),
    ("serviceBuild", None, "service_build"),
    ("stream", "properties", "stream"),
    ("time", None, "time"),
)


def _aks(entry: dict[str, Any], dedot: bool) -> Audit | None:
    properties = entry.get("properties")
    if type(properties) is not dict:
        return None
    inner = properties.get("log")
    if type(inner) is str:
        try:
            inner = orjson.loads(inner)
        except orjson.JSONDecodeError:
            return None
    if type(inner) is not dict:
        return None
    result = _native(inner, dedot)
    metadata: dict[str, Any] = {}
    for key, parent, field in _AKS_METADATA:
        source = properties if parent else entry
        _set(metadata, field, _str(source.get(key)))
    _set(result.fields["kubernetes"]["audit"], "aks_metadata", metadata)
    return result


def from_event(event: dict[str, Any], dedot: bool) -> Audit | None:
    """The ECS fragments of an audit event in any of the three shapes; None if it is none."""
    if "protoPayload" in event:
        return _gke(event, dedot)
    category = event.get("category")
    if type(category) is str and category.startswith("kube-audit") and "properties" in event:
        return _aks(event, dedot)
    return _native(event, dedot)
