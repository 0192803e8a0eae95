"""The agent's identity on the real apiserver, for the enrichment tests."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.kube import _objects

AGENT_NAMESPACE = "kloghub"
AGENT_SA = "kloghub-agent"
AGENT_USER = f"system:serviceaccount:{AGENT_NAMESPACE}:{AGENT_SA}"
AGENT_ROLE = "enrich-agent"
"""What the chart grants the agent with namespace_metadata and node_labels on: get, list
and watch on pods, namespaces and nodes."""


def bind_agent_role(kube, name: str) -> None:
    """Bind :data:`AGENT_ROLE` to the ServiceAccount ``name`` of :data:`AGENT_NAMESPACE`."""
    from kubernetes import client

    client.RbacAuthorizationV1Api(kube.admin()).create_cluster_role_binding(
        _objects.binding(
            f"{AGENT_ROLE}-{name}",
            "ClusterRole",
            AGENT_ROLE,
            [_objects.account_subject(name, AGENT_NAMESPACE)],
        )
    )


def service_account(kube, name: str, *, bound: bool) -> str:
    """A new ServiceAccount of :data:`AGENT_NAMESPACE` (with the agent's role when
    ``bound``), and a TokenRequest token of it."""
    kube.ensure_namespace(AGENT_NAMESPACE)
    kube.core().create_namespaced_service_account(
        AGENT_NAMESPACE, {"metadata": {"name": name}, "automountServiceAccountToken": False}
    )
    if bound:
        bind_agent_role(kube, name)
    return str(kube.service_account_token(AGENT_NAMESPACE, name))


@pytest.fixture(scope="session")
def agent_token(kube) -> str:
    """A token of the agent's ServiceAccount, granted :data:`AGENT_ROLE`."""
    from kubernetes import client

    client.RbacAuthorizationV1Api(kube.admin()).create_cluster_role(
        {
            "metadata": {"name": AGENT_ROLE},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["pods", "namespaces", "nodes"],
                    "verbs": ["get", "list", "watch"],
                }
            ],
        }
    )
    return service_account(kube, AGENT_SA, bound=True)


@pytest.fixture
def agent_kubeconfig(kube, agent_token, tmp_path) -> Path:
    return kube.token_kubeconfig(tmp_path / "agent.kubeconfig", agent_token)


@pytest.fixture
def node() -> str:
    """A node name of this test alone: the control plane is shared by the session."""
    return f"node-{uuid.uuid4().hex[:8]}"
