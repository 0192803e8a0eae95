"""The agent's identity on the real apiserver, for the enrichment tests."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

AGENT_NAMESPACE = "kloghub"
AGENT_SA = "kloghub-agent"
AGENT_USER = f"system:serviceaccount:{AGENT_NAMESPACE}:{AGENT_SA}"


@pytest.fixture(scope="session")
def agent_token(kube) -> str:
    """A TokenRequest token of a ServiceAccount granted what the chart grants the agent with
    namespace_metadata and node_labels on: get/list/watch on pods, namespaces and nodes."""
    from kubernetes import client

    kube.ensure_namespace(AGENT_NAMESPACE)
    core, rbac = kube.core(), client.RbacAuthorizationV1Api(kube.admin())
    core.create_namespaced_service_account(
        AGENT_NAMESPACE, {"metadata": {"name": AGENT_SA}, "automountServiceAccountToken": False}
    )
    rbac.create_cluster_role(
        {
            "metadata": {"name": "enrich-agent"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["pods", "namespaces", "nodes"],
                    "verbs": ["get", "list", "watch"],
                }
            ],
        }
    )
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": "enrich-agent"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "enrich-agent",
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": AGENT_SA, "namespace": AGENT_NAMESPACE}
            ],
        }
    )
    return str(kube.service_account_token(AGENT_NAMESPACE, AGENT_SA))


@pytest.fixture
def agent_kubeconfig(kube, agent_token, tmp_path) -> Path:
    return kube.token_kubeconfig(tmp_path / "agent.kubeconfig", agent_token)


@pytest.fixture
def node() -> str:
    """A node name of this test alone: the control plane is shared by the session."""
    return f"node-{uuid.uuid4().hex[:8]}"
