"""Risky API activity that Kubernetes detection rules look for, driven on the real apiserver.

Where :mod:`tests.kube._activity` is the incident story (exec, secrets, one binding), this
is what the rules of the field read inside request and response bodies — the objects
Elastic's prebuilt Kubernetes rules, SigmaHQ's and Falco's k8saudit rules, and kloghub's
own pack match on. :func:`drive` does, as admin unless said, in one namespace of its own:

- pods created with ``hostNetwork``/``hostPID``/``hostIPC``; with added capabilities, a
  privileged init container and a ServiceAccount; with a ``hostPath`` volume of ``/``;
- an ephemeral container added to a pod (the ``pods/ephemeralcontainers`` subresource);
- a ``NodePort`` Service with an external IP;
- a Role with wildcards, a ClusterRole with ``pods/exec``, ``bind``/``escalate`` and a
  non-resource URL, then patched to wildcards (the response holds the whole new role);
- a RoleBinding of ``cluster-admin`` to a ServiceAccount, a ClusterRoleBinding of
  ``cluster-admin`` to a group (nobody is in it: the shared control plane stays as it was),
  and a RoleBinding of the wildcard Role to ``system:anonymous`` in this namespace only;
- a request as that ServiceAccount with a token bound to a pod (the apiserver records
  ``user.extra`` ``authentication.kubernetes.io/pod-name``);
- a request impersonating ``system:admin`` in ``system:masters``, with the user agent of
  a permission-enumeration tool;
- a ValidatingWebhookConfiguration calling a URL outside the cluster (deleted at the end;
  it only ever applies to ConfigMaps of this namespace, and none are created).

``python -m tests.kube._risky`` starts a control plane with the shipped audit policy,
drives this activity and writes the audit lines it caused, sanitized, to
``tests/fixtures/kube-audit/risky.log`` (see the README next to it).
"""

from __future__ import annotations

import copy
import sys
from typing import Any

from tests.kube import _activity, _objects

FIXTURE = _activity.FIXTURE.parent / "risky.log"
ENUMERATION_AGENT = "access_matrix/v0.5.0 (linux/amd64) kubernetes/$Format"
"""rakkess's user agent, as SigmaHQ's enumeration rule names it."""
WEBHOOK_URL = "https://203.0.113.7/validate"
EXTERNAL_IP = "203.0.113.10"


def _pod(name: str, node: str, spec: dict[str, Any]) -> dict[str, Any]:
    pod = _objects.pod(name, node)
    pod["spec"].update(copy.deepcopy(spec))
    return pod


HOST_NAMESPACES = {"hostNetwork": True, "hostPID": True, "hostIPC": True}
CAPABILITIES = {
    "serviceAccountName": "intruder",
    "securityContext": {"runAsUser": 0},
    "initContainers": [
        {
            "name": "init",
            "image": "registry.example/init:1.0",
            "securityContext": {"privileged": True, "allowPrivilegeEscalation": True},
        }
    ],
    "containers": [
        {
            "name": "app",
            "image": "registry.example/app:1.0",
            "securityContext": {
                "capabilities": {"add": ["SYS_ADMIN", "NET_ADMIN"], "drop": ["MKNOD"]}
            },
        }
    ],
}
HOST_PATH = {
    "volumes": [{"name": "host", "hostPath": {"path": "/", "type": "Directory"}}],
    "containers": [
        {
            "name": "app",
            "image": "registry.example/app:1.0",
            "volumeMounts": [{"name": "host", "mountPath": "/host"}],
        }
    ],
}
WILDCARD = [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]


def _cluster_role(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "rules": [
            {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]},
            {
                "apiGroups": ["rbac.authorization.k8s.io"],
                "resources": ["clusterroles"],
                "resourceNames": ["cluster-admin"],
                "verbs": ["bind", "escalate"],
            },
            {"nonResourceURLs": ["/metrics"], "verbs": ["get"]},
        ],
    }


def _webhook(ns: str) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{ns}-hook"},
        "webhooks": [
            {
                "name": f"hook.{ns}.example",
                "clientConfig": {"url": WEBHOOK_URL},
                "rules": [
                    {
                        "operations": ["CREATE"],
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "resources": ["configmaps"],
                    }
                ],
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
                "failurePolicy": "Ignore",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 1,
            }
        ],
    }


def _bound_token(kube: Any, ns: str, account: str, pod: Any) -> str:
    """A token of ``account`` bound to ``pod``, as the kubelet gets the one it mounts."""
    from kubernetes import client

    from tests import _kube

    answer = kube.core().create_namespaced_service_account_token(
        account,
        ns,
        client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(
                audiences=[_kube.ISSUER],
                expiration_seconds=600,
                bound_object_ref=client.V1BoundObjectReference(
                    kind="Pod", api_version="v1", name=pod.metadata.name, uid=pod.metadata.uid
                ),
            )
        ),
    )
    return str(answer.status.token)


def _impersonating(kube: Any) -> Any:
    """An API client of the admin that impersonates ``system:admin`` (``system:masters``)
    and names itself with :data:`ENUMERATION_AGENT`."""
    from kubernetes import client

    api = client.ApiClient(kube.admin().configuration)
    api.set_default_header("Impersonate-User", "system:admin")
    api.set_default_header("Impersonate-Group", "system:masters")
    api.user_agent = ENUMERATION_AGENT
    return api


def drive(kube: Any, ns: str) -> dict[str, str]:
    """The activity (module docstring) in namespace ``ns``; returns the names used."""
    from kubernetes import client

    kube.ensure_namespace(ns)
    core = kube.core()
    rbac = client.RbacAuthorizationV1Api(kube.admin())
    admission = client.AdmissionregistrationV1Api(kube.admin())
    node = f"{ns}-node"
    core.create_namespaced_service_account(ns, {"metadata": {"name": "intruder"}})

    core.create_namespaced_pod(ns, _pod("host-ns", node, HOST_NAMESPACES))
    caps = core.create_namespaced_pod(ns, _pod("caps", node, CAPABILITIES))
    core.create_namespaced_pod(ns, _pod("hostpath", node, HOST_PATH))
    core.patch_namespaced_pod_ephemeralcontainers(
        "caps",
        ns,
        {
            "spec": {
                "ephemeralContainers": [
                    {
                        "name": "debugger",
                        "image": "registry.example/debug:1.0",
                        "targetContainerName": "app",
                        "stdin": True,
                        "tty": True,
                    }
                ]
            }
        },
    )
    core.create_namespaced_service(
        ns,
        {
            "metadata": {"name": "exposed"},
            "spec": {
                "type": "NodePort",
                "selector": {"app": "web"},
                "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}],
                "externalIPs": [EXTERNAL_IP],
            },
        },
    )

    rbac.create_namespaced_role(ns, {"metadata": {"name": "wildcard"}, "rules": WILDCARD})
    escalate = f"{ns}-escalate"
    rbac.create_cluster_role(_cluster_role(escalate))
    rbac.patch_cluster_role(escalate, {"rules": WILDCARD})
    intruder = _objects.account_subject("intruder", ns)
    rbac.create_namespaced_role_binding(
        ns, _objects.binding("intruder-admin", "ClusterRole", "cluster-admin", [intruder])
    )
    group = f"{ns}-admins"
    rbac.create_cluster_role_binding(
        _objects.binding(
            f"{ns}-admins",
            "ClusterRole",
            "cluster-admin",
            [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}],
        )
    )
    anonymous = {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "User",
        "name": "system:anonymous",
    }
    rbac.create_namespaced_role_binding(
        ns, _objects.binding("anonymous", "Role", "wildcard", [anonymous])
    )

    token = _bound_token(kube, ns, "intruder", caps)
    kube.request("GET", f"/api/v1/namespaces/{ns}/pods", token=token)  # allowed: cluster-admin
    client.CoreV1Api(_impersonating(kube)).list_namespaced_pod(ns)

    admission.create_validating_webhook_configuration(_webhook(ns))
    admission.delete_validating_webhook_configuration(f"{ns}-hook")
    return {"intruder": f"system:serviceaccount:{ns}:intruder", "group": group}


if __name__ == "__main__":
    sys.exit(_activity.record(drive, FIXTURE))
