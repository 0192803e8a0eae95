"""kloghub's Sigma backend evaluates each supported construct as Sigma defines it, on the
fields the pipeline maps from the Kubernetes audit taxonomy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kloghub import detect
from tests.detect import _events as ev
from tests.detect._rules_helper import matcher

SECRET_GET = ev.document(ev.raw(ev.SECRET_GET_READER))[1]
EXEC = ev.document(ev.raw(ev.EXEC_ADMIN_COMPLETE))[1]


@pytest.mark.parametrize(
    ("selection", "doc", "expected"),
    [
        ({"verb": "GET"}, SECRET_GET, True),  # case-insensitive equality
        ({"verb|cased": "GET"}, SECRET_GET, False),
        ({"verb": ["list", "get"]}, SECRET_GET, True),  # a list is any of
        ({"user.username": "system:serviceaccount:*:reader"}, SECRET_GET, True),  # wildcard
        ({"user.username": "system:serviceaccount:?hop:reader"}, SECRET_GET, True),
        ({"requestURI|contains": "/etc/shadow"}, EXEC, False),  # the URI is URL-encoded
        ({"requestURI|contains": "%2Fetc%2Fshadow"}, EXEC, True),
        ({"requestURI|startswith": "/api/v1/namespaces/shop"}, EXEC, True),
        ({"requestURI|endswith": "stdout=true"}, EXEC, True),
        ({"requestURI|contains|all": ["command=cat", "exec"]}, EXEC, True),
        ({"requestURI|contains|all": ["command=cat", "attach"]}, EXEC, False),
        ({"requestURI|re": r"command=(cat|sh|bash)&"}, EXEC, True),
        ({"requestURI|re|i": r"COMMAND=CAT"}, EXEC, True),
        ({"requestURI|re": r"COMMAND=CAT"}, EXEC, False),
        ({"sourceIPs|cidr": "127.0.0.0/8"}, EXEC, True),  # a list field matches by item
        ({"sourceIPs|cidr": "10.0.0.0/8"}, EXEC, False),
        ({"objectRef.subresource|exists": True}, EXEC, True),
        ({"objectRef.subresource|exists": True}, SECRET_GET, False),
        ({"objectRef.subresource": None}, SECRET_GET, True),  # null: missing
        ({"responseStatus.code": 404}, EXEC, True),  # numbers
        ({"responseStatus.code": "404"}, EXEC, True),
        ({"responseStatus.code|gte": 400}, EXEC, True),
        ({"responseStatus.code|lt": 400}, EXEC, False),
        ({"user.groups": "system:masters"}, EXEC, True),
        ({"annotations.authorization.k8s.io/decision": "allow"}, SECRET_GET, True),  # de-dotted
        # user.extra keeps its dotted keys, as Elastic's documents do
        (
            {"user.extra.authentication.kubernetes.io/credential-id|startswith": "JTI="},
            SECRET_GET,
            True,
        ),
        ({"user.extra.authentication.kubernetes.io/credential-id|startswith": "JTI="}, EXEC, False),
        ({"user.name": "system:serviceaccount:shop:reader"}, SECRET_GET, True),  # an ECS field
        ({"resource": "secrets"}, SECRET_GET, True),  # pySigma's stock ecs_kubernetes name
    ],
)
def test_construct_matches_as_sigma_defines_it(
    tmp_path: Path, selection: dict[str, Any], doc: dict[str, Any], expected: bool
) -> None:
    """If this failed, a Sigma construct would match differently here than in a SIEM."""
    assert matcher(tmp_path, {"sel": selection, "condition": "sel"})(doc) is expected


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("a and b", False),
        ("a or b", True),
        ("a and not b", True),
        ("1 of sel*", True),
        ("all of sel*", False),
        ("all of them", False),
        ("1 of them and not b", True),
        ("(a or b) and not (b or c)", True),
    ],
)
def test_conditions_combine_selections(tmp_path: Path, condition: str, expected: bool) -> None:
    """If this failed, and/or/not/1 of/all of would combine selections wrongly."""
    detection = {
        "a": {"verb": "get"},
        "b": {"verb": "list"},
        "c": {"objectRef.resource": "pods"},
        "sel1": {"verb": "get"},
        "sel2": {"objectRef.resource": "pods"},
        "condition": condition,
    }
    assert matcher(tmp_path, detection)(SECRET_GET) is expected


def test_lookup_finds_keys_that_hold_dots() -> None:
    """If this failed, label keys such as app.kubernetes.io/name could not be matched."""
    doc = {"requestObject": {"metadata": {"labels": {"app.kubernetes.io/name": "web"}}}}
    assert detect.lookup(doc, "requestObject.metadata.labels.app.kubernetes.io/name") == "web"


def test_pipeline_maps_the_audit_taxonomy_to_kloghub_fields() -> None:
    """If this failed, Sigma's Kubernetes rules would read fields kloghub documents lack."""
    assert detect.audit_field("objectRef.resource") == "kubernetes.audit.objectRef.resource"
    assert detect.audit_field("responseStatus.code") == "kubernetes.audit.responseStatus.code"
    assert detect.audit_field("user.username") == "kubernetes.audit.user.username"
    assert detect.audit_field("sourceIPs") == "kubernetes.audit.sourceIPs"
    assert detect.audit_field("userAgent") == "kubernetes.audit.userAgent"
    assert (
        detect.audit_field("user.extra.authentication.kubernetes.io/pod-name")
        == "kubernetes.audit.user.extra.authentication.kubernetes.io/pod-name"
    )
    assert (
        detect.audit_field("annotations.authorization.k8s.io/decision")
        == "kubernetes.audit.annotations.authorization_k8s_io/decision"
    )
    assert detect.audit_field("kubernetes.namespace") == "kubernetes.namespace"


def test_a_compiled_rule_finds_keys_that_hold_dots(tmp_path: Path) -> None:
    """If this failed, the compiled matchers' fast field walk would miss dotted keys that
    lookup() finds (label and annotation keys when de-dotting is off)."""
    doc = {
        "kubernetes": {
            "audit": {"requestObject": {"metadata": {"labels": {"app.kubernetes.io/name": "web"}}}}
        }
    }
    match = matcher(
        tmp_path,
        {"s": {"requestObject.metadata.labels.app.kubernetes.io/name": "web"}, "condition": "s"},
    )
    assert match(doc)
    assert not match({"kubernetes": {"audit": {"requestObject": {"metadata": {}}}}})


def test_a_rule_names_the_resource_it_requires_and_only_when_it_must(tmp_path: Path) -> None:
    """If this failed, the detector would skip a rule on a document it could match (a
    resource in an 'or' is not required) or offer every document to every rule."""
    field = "kubernetes.audit.objectRef.resource"
    required = detect.required
    both = {"s": {"objectRef.resource": ["pods", "Secrets"], "verb": "get"}, "condition": "s"}
    assert required(matcher(tmp_path, both), field) == {"pods", "secrets"}
    either = {
        "a": {"objectRef.resource": "pods"},
        "b": {"verb": "delete"},
        "condition": "a or b",
    }
    assert required(matcher(tmp_path, either), field) is None
    nested = {"a": {"objectRef.resource": "pods"}, "b": {"verb": "create"}, "condition": "a and b"}
    assert required(matcher(tmp_path, nested), field) == {"pods"}
