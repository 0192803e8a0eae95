"""An alert as an ECS document (``event.kind: alert``), ready for any sink.

Fields: ``rule.{id,name,description,reference,ruleset,version,author}``;
``event.severity`` and ``event.risk_score`` (Elastic's numbers for Sigma's levels: 21, 47,
73, 99; informational 1); ``threat.*`` from the rule's ATT&CK tags (``attack.t1609``,
``attack.execution``); the triggering documents' ids in ``kloghub.alert.trigger_ids``; the
context of the (last) triggering event — ``kubernetes.*``, ``user.*``, ``source.*``,
``orchestrator.*``, ``user_agent.*``, ``related.*``, ``host.*``, ``container.*``.

The document id is derived from the rule and the triggering ids, so a chunk resent by an
agent (and detected again) overwrites the same alert instead of adding one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from kloghub import normalize
from kloghub.detect import _engine

__all__ = ["DATASET", "RISK", "alert_document", "tag"]

DATASET = "kloghub.alerts"
RISK = {"informational": 1, "low": 21, "medium": 47, "high": 73, "critical": 99}

_CONTEXT = (
    "kubernetes",
    "user",
    "source",
    "client",
    "orchestrator",
    "user_agent",
    "related",
    "host",
    "container",
    "cloud",
)
_TACTICS = {
    "reconnaissance": "TA0043",
    "resource_development": "TA0042",
    "initial_access": "TA0001",
    "execution": "TA0002",
    "persistence": "TA0003",
    "privilege_escalation": "TA0004",
    "defense_evasion": "TA0005",
    "credential_access": "TA0006",
    "discovery": "TA0007",
    "lateral_movement": "TA0008",
    "collection": "TA0009",
    "command_and_control": "TA0011",
    "exfiltration": "TA0010",
    "impact": "TA0040",
}


def tag(namespace: str) -> str:
    """The data stream (index) of alerts: ``logs-kloghub.alerts-<namespace>``."""
    return f"logs-{DATASET}-{namespace}"


def _iso(time_ns: int) -> str:
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    stamp = dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{nanos:09d}Z"


def threat(tags: tuple[str, ...]) -> dict[str, Any] | None:
    """ECS ``threat.*`` of a rule's ATT&CK tags (None when it has none)."""
    techniques: list[dict[str, Any]] = []
    tactics: list[dict[str, Any]] = []
    for raw in tags:
        namespace, _, name = raw.partition(".")
        if namespace != "attack":
            continue
        if name[:1] in "tT" and name[1:2].isdigit():
            tid = name.upper()
            path = tid.replace(".", "/")
            techniques.append(
                {"id": tid, "reference": f"https://attack.mitre.org/techniques/{path}/"}
            )
        else:
            key = name.replace("-", "_")
            if key in _TACTICS:
                tactics.append(
                    {
                        "id": _TACTICS[key],
                        "name": key.replace("_", " ").title(),
                        "reference": f"https://attack.mitre.org/tactics/{_TACTICS[key]}/",
                    }
                )
    if not techniques and not tactics:
        return None
    out: dict[str, Any] = {"framework": "MITRE ATT&CK"}
    if techniques:
        out["technique"] = {
            "id": [t["id"] for t in techniques],
            "reference": [t["reference"] for t in techniques],
        }
    if tactics:
        out["tactic"] = {
            "id": [t["id"] for t in tactics],
            "name": [t["name"] for t in tactics],
            "reference": [t["reference"] for t in tactics],
        }
    return out


def alert_document(
    alert: _engine.Alert, namespace: str, now_ns: int, ruleset: str = "kloghub"
) -> tuple[str, dict[str, Any]]:
    """``(document id, ECS alert document)`` of ``alert``."""
    rule = alert.rule
    trigger = alert.doc
    doc: dict[str, Any] = {key: trigger[key] for key in _CONTEXT if key in trigger}
    risk = RISK.get(alert.severity, 47)
    event: dict[str, Any] = {
        "kind": "alert",
        "category": ["configuration"] if rule.audit else ["process"],
        "type": ["info"],
        "severity": risk,
        "risk_score": float(risk),
        "dataset": DATASET,
        "module": "kloghub",
        "created": _iso(now_ns),
        "start": _iso(alert.first_ns),
        "end": _iso(alert.last_ns),
    }
    trigger_event = trigger.get("event")
    if isinstance(trigger_event, dict) and "action" in trigger_event:
        event["action"] = trigger_event["action"]
    doc["event"] = event
    rule_doc: dict[str, Any] = {
        "id": rule.id,
        "uuid": rule.id,
        "name": rule.title,
        "ruleset": ruleset,
        "version": rule.version,
        "category": "kubernetes audit" if rule.audit else "logs",
    }
    if rule.description:
        rule_doc["description"] = rule.description
    if rule.references:
        rule_doc["reference"] = rule.references[0]
    if rule.author:
        rule_doc["author"] = [rule.author]
    doc["rule"] = rule_doc
    found = threat(rule.tags)
    if found:
        doc["threat"] = found
    details: dict[str, Any] = {
        "mode": alert.mode,
        "severity": alert.severity,
        "trigger_ids": list(alert.ids),
        "count": alert.count,
    }
    if alert.group:
        details["group"] = {k: v for k, v in alert.group.items() if v is not None}
    correlation = getattr(rule, "type", None)
    if correlation:
        details["correlation"] = correlation
    doc["kloghub"] = {"alert": details}
    if alert.mode == "dry-run":
        doc["tags"] = ["dry-run"]
    message = trigger.get("message")
    summary = f"{rule.title} ({alert.severity})"
    if alert.count > 1:
        summary += f": {alert.count} events"
    doc["message"] = f"{summary}: {message}" if isinstance(message, str) else summary
    doc["@timestamp"] = _iso(alert.last_ns)
    doc["data_stream"] = {"type": "logs", "dataset": DATASET, "namespace": namespace}
    doc["ecs"] = {"version": normalize.ECS_VERSION}
    digest = hashlib.blake2b(digest_size=12)
    digest.update(rule.id.encode())
    for trigger_id in alert.ids:
        digest.update(b"\0" + trigger_id.encode())
    return "alert-" + digest.hexdigest(), doc
