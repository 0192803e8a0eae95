"""Audit documents for the detection tests: the real fixture events, normalized, and
real-shaped variants built from them where the fixture has no such case.

Every variant starts from one real event of tests/fixtures/kube-audit/audit.log and
changes only what its case needs (user, namespace, resource, request body); each builder
says which event it starts from. The request bodies of pods and services are what the
apiserver records at level ``Request`` (kloghub's policy records pod and service writes
so since this issue; the fixture was recorded before, at ``Metadata``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from functools import cache
from typing import Any

from kloghub import config, core, normalize
from tests.normalize import _fixtures as fx

FIXTURE = fx.FIXTURES / "kube-audit" / "audit.log"

# Line indexes (0-based) of the fixture's events, named for what they are.
POD_CREATE = 3
EXEC_ADMIN_STARTED = 5
EXEC_ADMIN_COMPLETE = 6
SECRET_CREATE = 7
ROLE_SECRET_READER = 10
ROLEBINDING_SECRET_READER = 11
TOKEN_REQUEST_READER = 12
SECRET_GET_READER = 13
SECRETS_LIST_FORBIDDEN = 14
EXEC_READER_STARTED = 15
CLUSTER_ADMIN_BINDING = 17
ANONYMOUS_FORBIDDEN = 18
POD_DELETE = 19


@cache
def raw_events() -> tuple[str, ...]:
    return tuple(line for line in FIXTURE.read_text().split("\n") if line)


def raw(index: int) -> dict[str, Any]:
    """A copy of the fixture's audit event ``index`` (as the apiserver wrote it)."""
    event: dict[str, Any] = json.loads(raw_events()[index])
    return event


_NORMALIZER = normalize.Normalizer(config.NormalizerConfig())


def document(event: dict[str, Any], offset: int = 0) -> tuple[str, dict[str, Any], int]:
    """``(id, ECS document, time_ns)`` of an audit event, through kloghub's normalizer."""
    out: core.Event = _NORMALIZER(fx.audit_event(json.dumps(event), offset))
    doc: dict[str, Any] = out.record["doc"]
    assert doc["event"].get("kind") != "pipeline_error", doc.get("error")
    return out.record["id"], doc, out.time_ns


def fixture_documents() -> list[tuple[str, dict[str, Any], int]]:
    return [document(raw(i), i) for i in range(len(raw_events()))]


def variant(index: int, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    event = copy.deepcopy(raw(index))
    change(event)
    return event


def pod_with_spec(spec: dict[str, Any], namespace: str = "shop") -> dict[str, Any]:
    """The fixture's pod creation (event 3) with a request body holding ``spec``."""

    def change(event: dict[str, Any]) -> None:
        event["level"] = "Request"
        event["objectRef"]["namespace"] = namespace
        event["requestURI"] = f"/api/v1/namespaces/{namespace}/pods"
        base = {"containers": [{"name": "web", "image": "nginx:1.27"}], "nodeName": "shop-node"}
        event["requestObject"] = {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {**base, **spec},
        }

    return variant(POD_CREATE, change)


def as_user(index: int, username: str, groups: list[str] | None = None) -> dict[str, Any]:
    def change(event: dict[str, Any]) -> None:
        event["user"]["username"] = username
        if groups is not None:
            event["user"]["groups"] = groups

    return variant(index, change)
