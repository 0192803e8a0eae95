"""What a notification says, per receiver type: labels of an alert, and the request body.

An alert document (:func:`kloghub.detect._alert.alert_document`) is seen by receivers as an
Alertmanager alert: **labels** are its identity (two alert documents with the same labels
are the same alert, seen again), **annotations** describe it.

- labels (non-empty only): ``alertname`` (``rule.name``), ``rule_id``, ``severity``,
  ``user`` (``user.name``), ``namespace``, ``resource`` (``pods/exec``) and ``name`` of the
  triggering audit event's object;
- annotations: ``summary`` (the alert's ``message``), ``description``, ``reference``,
  ``source_ip``, ``user_agent``, ``trigger_ids``.

Bodies:

- ``webhook``: one JSON object per group, in the shape of Alertmanager's webhook payload
  (``receiver``, ``status``, ``groupKey``, ``groupLabels``, ``commonLabels``,
  ``commonAnnotations``, ``externalURL``, ``truncatedAlerts``, ``alerts[]`` with
  ``status``/``labels``/``annotations``/``startsAt``/``endsAt``/``generatorURL``/
  ``fingerprint``), so receivers written for Alertmanager read it; kloghub adds
  ``version: "kloghub/1"``, ``droppedAlerts`` and, per alert, ``count`` and ``document``
  (the ECS alert document).
- ``slack``: ``{"text": ...}`` in Slack's ``mrkdwn`` (``&``, ``<``, ``>`` escaped as
  Slack's formatting reference asks), at most :data:`SLACK_MAX_TEXT` characters.
- ``alertmanager``: the ``postableAlerts`` array of Alertmanager's API v2 (``labels``,
  ``annotations``, ``startsAt``, ``endsAt``, ``generatorURL``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from typing import Any

from kloghub import core

__all__ = [
    "SLACK_MAX_TEXT",
    "Item",
    "Message",
    "annotations_of",
    "body",
    "fingerprint",
    "get",
    "iso",
    "labels_of",
]

SLACK_MAX_TEXT = 3000
"""Slack advises keeping ``text`` to a few thousand characters (it truncates at 40,000)."""


def get(doc: dict[str, Any], dotted: str) -> Any:
    """The value at the dotted path ``dotted`` of ``doc`` (nested maps only), or None."""
    node: Any = doc
    for part in dotted.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value if v is not None)
    return str(value)


def labels_of(doc: dict[str, Any]) -> dict[str, str]:
    """The labels (identity) of an alert document; empty values left out."""
    ref = get(doc, "kubernetes.audit.objectRef")
    ref = ref if isinstance(ref, dict) else {}
    resource = _text(ref.get("resource"))
    if resource and ref.get("subresource"):
        resource = f"{resource}/{ref['subresource']}"
    namespace = _text(ref.get("namespace")) or _text(get(doc, "kubernetes.namespace"))
    found = {
        "alertname": _text(get(doc, "rule.name")),
        "rule_id": _text(get(doc, "rule.id")),
        "severity": _text(get(doc, "kloghub.alert.severity")),
        "user": _text(get(doc, "user.name")),
        "namespace": namespace,
        "resource": resource,
        "name": _text(ref.get("name")) or _text(get(doc, "kubernetes.pod.name")),
    }
    return {k: v for k, v in found.items() if v}


def annotations_of(doc: dict[str, Any]) -> dict[str, str]:
    found = {
        "summary": _text(doc.get("message")),
        "description": _text(get(doc, "rule.description")),
        "reference": _text(get(doc, "rule.reference")),
        "source_ip": _text(get(doc, "source.ip")),
        "user_agent": _text(get(doc, "user_agent.original")),
        "trigger_ids": _text(get(doc, "kloghub.alert.trigger_ids")),
    }
    return {k: v for k, v in found.items() if v}


def fingerprint(labels: dict[str, str]) -> str:
    digest = hashlib.blake2b(digest_size=8)
    for key in sorted(labels):
        digest.update(key.encode() + b"\0" + labels[key].encode() + b"\0")
    return digest.hexdigest()


def iso(seconds: float) -> str:
    """RFC 3339 UTC with milliseconds (``2026-12-03T12:00:00.000Z``)."""
    stamp = dt.datetime.fromtimestamp(seconds, dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


@dataclasses.dataclass(frozen=True)
class Item:
    """One alert as a notification lists it (a snapshot: the group goes on changing)."""

    fingerprint: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: float
    ends_at: float
    count: int
    doc: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Message:
    """One notification: a group's alerts at the moment it is sent."""

    receiver: str
    group_key: str
    group_labels: dict[str, str]
    items: tuple[Item, ...]
    truncated: int = 0
    dropped: int = 0
    generator_url: str | None = None
    tokens: tuple[core.Finalizer, ...] = ()
    """Acknowledgements of the durable queue entries this notification carries (settled
    once it is delivered or given up)."""


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    first = maps[0]
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in maps[1:])}


def _webhook(msg: Message) -> dict[str, Any]:
    return {
        "version": "kloghub/1",
        "receiver": msg.receiver,
        "status": "firing",
        "groupKey": msg.group_key,
        "groupLabels": msg.group_labels,
        "commonLabels": _common([i.labels for i in msg.items]),
        "commonAnnotations": _common([i.annotations for i in msg.items]),
        "externalURL": msg.generator_url or "",
        "truncatedAlerts": msg.truncated,
        "droppedAlerts": msg.dropped,
        "alerts": [
            {
                "status": "firing",
                "labels": i.labels,
                "annotations": i.annotations,
                "startsAt": iso(i.starts_at),
                "endsAt": iso(i.ends_at),
                "generatorURL": msg.generator_url or "",
                "fingerprint": i.fingerprint,
                "count": i.count,
                "document": i.doc,
            }
            for i in msg.items
        ],
    }


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack(msg: Message) -> dict[str, Any]:
    first = msg.items[0].labels if msg.items else {}
    severity = first.get("severity", "").upper()
    title = _slack_escape(first.get("alertname", "kloghub alert"))
    events = sum(i.count for i in msg.items)
    head = f"*[{severity}] {title}*" if severity else f"*{title}*"
    who = msg.group_labels.get("user")
    if who:
        head += f" by `{_slack_escape(who)}`"
    head += f": {len(msg.items)} alert{'s' if len(msg.items) != 1 else ''}"
    if events != len(msg.items):
        head += f", {events} events"
    lines = [head]
    for i in msg.items:
        target = "/".join(
            v
            for v in (i.labels.get("namespace"), i.labels.get("resource"), i.labels.get("name"))
            if v
        )
        line = f"• {_slack_escape(i.annotations.get('summary', i.labels.get('alertname', '')))}"
        if target:
            line += f" — `{_slack_escape(target)}`"
        if i.count > 1:
            line += f" (x{i.count})"
        line += f" since {iso(i.starts_at)}"
        lines.append(line)
    if msg.truncated:
        lines.append(f"_{msg.truncated} more alerts not listed_")
    if msg.dropped:
        lines.append(f"_{msg.dropped} alerts were dropped (kloghub notification queue full)_")
    if msg.generator_url:
        lines.append(f"<{msg.generator_url}|Open in the SIEM>")
    text = "\n".join(lines)
    if len(text) > SLACK_MAX_TEXT:
        text = text[: SLACK_MAX_TEXT - 1] + "…"
    return {"text": text}


def _alertmanager(msg: Message) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in msg.items:
        alert: dict[str, Any] = {
            "labels": i.labels,
            "annotations": i.annotations,
            "startsAt": iso(i.starts_at),
            "endsAt": iso(i.ends_at),
        }
        if msg.generator_url:
            alert["generatorURL"] = msg.generator_url
        out.append(alert)
    return out


def body(kind: str, msg: Message) -> Any:
    """The JSON body of ``msg`` for a receiver of type ``kind``."""
    if kind == "slack":
        return _slack(msg)
    if kind == "alertmanager":
        return _alertmanager(msg)
    return _webhook(msg)
