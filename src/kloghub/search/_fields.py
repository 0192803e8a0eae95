"""Field names of the query language: short aliases for the ECS fields a responder types most."""

from __future__ import annotations

import re

__all__ = ["ALIASES", "TEXT_FIELD", "TIME_FIELD", "is_field_name", "resolve"]

TIME_FIELD = "@timestamp"
TEXT_FIELD = "message"

ALIASES: dict[str, str] = {
    "ns": "kubernetes.namespace",
    "namespace": "kubernetes.namespace",
    "pod": "kubernetes.pod.name",
    "container": "kubernetes.container.name",
    "node": "kubernetes.node.name",
    "host": "host.name",
    "level": "log.level",
    "user": "user.name",
    "verb": "kubernetes.audit.verb",
    "resource": "kubernetes.audit.objectRef.resource",
    "code": "kubernetes.audit.responseStatus.code",
    "dataset": "data_stream.dataset",
    "image": "container.image.name",
    "msg": "message",
    "time": "@timestamp",
}
"""Alias → ECS field. Any other name is taken as a field path as it is (``event.action``)."""

_FIELD = re.compile(r"[A-Za-z_@][A-Za-z0-9_@/\-]*(?:\.[A-Za-z0-9_@/\-]+)*")


def is_field_name(text: str) -> bool:
    """A dotted ECS path (letters, digits, ``_ @ / -``) or an alias."""
    return _FIELD.fullmatch(text) is not None


def resolve(name: str) -> str:
    return ALIASES.get(name, name)
