"""Each rule of the default pack fires on the real audit event it is written for and stays
quiet on its look-alike (tests/fixtures/kube-audit, variants from tests/detect/_events)."""

from __future__ import annotations

from typing import Any

import pytest

from kloghub import config
from kloghub.detect import _engine
from tests.detect import _events as ev

EXEC = "faa4761f-d604-4387-84c2-e2ed3d5931b1"
SECRET_ACCESS = "e2d97bc4-c54f-463d-966a-11c341f6f387"
PRIVILEGED = "3190e8bf-2a6c-429c-9cd4-161c253af821"
HOST_NS = "d9660fe8-57e2-4fd6-8b2d-3c94801d4ad3"
HOSTPATH = "ef180d4a-1c8e-47f8-b19f-c42fb449874d"
KUBE_SYSTEM_POD = "4a2c695f-be97-4777-b5de-3f66e2d8f5c7"
SENSITIVE_ROLE = "e8c41498-9d04-4d65-b928-3a6e95683195"
CLUSTER_ADMIN = "a1c5a4e4-7e5a-4877-a7ef-9fef3065bd81"
ANONYMOUS = "d387d259-2ca3-4a98-baa0-40b8bc0f6f5c"
SYSTEM_TOKEN = "d5844adc-dff6-49e3-8276-adc772f624e8"
NODEPORT = "8ba1ca32-196c-4bd4-81af-53e06200bb4f"
EVENTS_DELETED = "fa19bd38-2486-4332-a7da-cc7c52c473be"


def fired(event: dict[str, Any]) -> set[str]:
    detector = _engine.Detector.from_config(config.DetectionsConfig(enabled=True))
    doc_id, doc, time_ns = ev.document(event)
    return {alert.rule.id for alert in detector(doc_id, doc, time_ns)}


def _set(path: list[str], value: Any) -> Any:
    def change(event: dict[str, Any]) -> None:
        node = event
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value

    return change


def _role_rules(rules: list[dict[str, Any]]) -> Any:
    def change(event: dict[str, Any]) -> None:
        event["requestObject"]["rules"] = rules

    return change


def _service(kind: str) -> dict[str, Any]:
    def change(event: dict[str, Any]) -> None:
        event["level"] = "Request"
        event["objectRef"].update(resource="services", name="web")
        event["requestURI"] = "/api/v1/namespaces/shop/services"
        event["requestObject"] = {
            "kind": "Service",
            "apiVersion": "v1",
            "metadata": {"name": "web"},
            "spec": {"type": kind, "ports": [{"port": 80}], "selector": {"app": "web"}},
        }

    return ev.variant(ev.POD_CREATE, change)


def _kube_system_token(user: str) -> dict[str, Any]:
    def change(event: dict[str, Any]) -> None:
        event["objectRef"].update(namespace="kube-system", name="replicaset-controller")
        event["requestURI"] = (
            "/api/v1/namespaces/kube-system/serviceaccounts/replicaset-controller/token"
        )
        event["user"]["username"] = user

    return ev.variant(ev.TOKEN_REQUEST_READER, change)


def _anonymous_allowed(uri: str) -> dict[str, Any]:
    def change(event: dict[str, Any]) -> None:
        event["annotations"]["authorization.k8s.io/decision"] = "allow"
        event["annotations"]["authorization.k8s.io/reason"] = (
            'RBAC: allowed by ClusterRoleBinding "open" of ClusterRole "view" to Group '
            '"system:unauthenticated"'
        )
        event["responseStatus"] = {"metadata": {}, "code": 200}
        event["requestURI"] = uri

    return ev.variant(ev.ANONYMOUS_FORBIDDEN, change)


def _events_deleted(resource: str) -> dict[str, Any]:
    return ev.variant(ev.POD_DELETE, _set(["objectRef", "resource"], resource))


CASES = {
    # rule: (positive event, negative event), each with where it comes from
    EXEC: (ev.raw(ev.EXEC_READER_STARTED), ev.raw(ev.POD_CREATE)),
    SECRET_ACCESS: (
        ev.raw(ev.SECRET_GET_READER),
        ev.as_user(
            ev.SECRET_GET_READER, "system:serviceaccount:kube-system:generic-garbage-collector"
        ),
    ),
    PRIVILEGED: (
        ev.pod_with_spec(
            {
                "containers": [
                    {"name": "web", "image": "nginx", "securityContext": {"privileged": True}}
                ]
            }
        ),
        ev.pod_with_spec(
            {
                "containers": [
                    {"name": "web", "image": "nginx", "securityContext": {"privileged": False}}
                ]
            }
        ),
    ),
    HOST_NS: (ev.pod_with_spec({"hostPID": True}), ev.pod_with_spec({"hostNetwork": False})),
    HOSTPATH: (
        ev.pod_with_spec({"volumes": [{"name": "root", "hostPath": {"path": "/"}}]}),
        ev.pod_with_spec({"volumes": [{"name": "tmp", "emptyDir": {}}]}),
    ),
    KUBE_SYSTEM_POD: (
        ev.pod_with_spec({}, namespace="kube-system"),
        ev.as_user(ev.POD_CREATE, "system:serviceaccount:kube-system:daemon-set-controller")
        | {"objectRef": {"resource": "pods", "namespace": "kube-system", "name": "x"}},
    ),
    SENSITIVE_ROLE: (
        ev.raw(ev.ROLE_SECRET_READER),
        ev.variant(
            ev.ROLE_SECRET_READER,
            _role_rules([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]),
        ),
    ),
    CLUSTER_ADMIN: (ev.raw(ev.CLUSTER_ADMIN_BINDING), ev.raw(ev.ROLEBINDING_SECRET_READER)),
    ANONYMOUS: (_anonymous_allowed("/api/v1/namespaces/shop/pods"), _anonymous_allowed("/version")),
    SYSTEM_TOKEN: (
        _kube_system_token("kloghub-admin"),
        _kube_system_token("system:kube-controller-manager"),
    ),
    NODEPORT: (_service("NodePort"), _service("ClusterIP")),
    EVENTS_DELETED: (_events_deleted("events"), ev.raw(ev.POD_DELETE)),
}


@pytest.mark.parametrize("rule", list(CASES))
def test_default_rule_fires_on_its_positive_event(rule: str) -> None:
    """If this failed, a default rule would miss the attack it is written for."""
    assert rule in fired(CASES[rule][0])


@pytest.mark.parametrize("rule", list(CASES))
def test_default_rule_is_quiet_on_its_negative_event(rule: str) -> None:
    """If this failed, a default rule would alert on its benign look-alike."""
    assert rule not in fired(CASES[rule][1])


def test_the_real_fixture_raises_exactly_the_expected_alerts() -> None:
    """If this failed, the default pack would fire on other real events than the story's
    (exec by admin and by reader, the secret-reader Role, the secret read, cluster-admin)."""
    detector = _engine.Detector.from_config(config.DetectionsConfig(enabled=True))
    got = []
    for offset, (doc_id, doc, time_ns) in enumerate(ev.fixture_documents()):
        got.extend((offset, a.rule.id) for a in detector(doc_id, doc, time_ns))
    assert got == [
        (ev.EXEC_ADMIN_STARTED, EXEC),
        (ev.ROLE_SECRET_READER, SENSITIVE_ROLE),
        (ev.SECRET_GET_READER, SECRET_ACCESS),
        (ev.EXEC_READER_STARTED, EXEC),
        (ev.CLUSTER_ADMIN_BINDING, CLUSTER_ADMIN),
    ]


def test_every_default_rule_has_a_test_case() -> None:
    """If this failed, a rule was added to the pack without its positive/negative test."""
    detector = _engine.Detector.from_config(config.DetectionsConfig(enabled=True))
    alerting = {d.id for d in detector.ruleset.detections if d.level != "informational"}
    alerting -= {"dd365c1d-0a0c-4923-832f-1a138b019498"}  # read by the burst correlation
    assert alerting == set(CASES)


def test_wildcard_role_fires_and_a_literal_star_is_not_any_value() -> None:
    """If this failed, a Role granting ``*`` would pass unseen, or every Role would alert
    (an unescaped ``*`` in Sigma matches any value)."""
    wildcard = ev.variant(
        ev.ROLE_SECRET_READER,
        _role_rules([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]),
    )
    assert SENSITIVE_ROLE in fired(wildcard)
