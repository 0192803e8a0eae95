"""The chart against the real apiserver: every scenario's objects are accepted, and the
agent's ServiceAccount can do exactly what it needs (watch its node's pods) and nothing
else — 403 from RBAC for secrets, configmaps, exec, and what the chart did not grant.

The ServiceMonitor and cert-manager kinds some scenarios render are custom resources: their
CustomResourceDefinitions are registered here with an open schema (the objects' own fields
are not checked against Prometheus Operator's or cert-manager's schemas).
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.charts import _scenarios
from tests.charts.conftest import CHART, _find_helm

pytestmark = pytest.mark.integration

_CRDS = {
    ("monitoring.coreos.com", "ServiceMonitor"): "servicemonitors",
    ("cert-manager.io", "Certificate"): "certificates",
    ("cert-manager.io", "Issuer"): "issuers",
}
FORBIDDEN_KINDS = {"Role", "RoleBinding"}
"""The chart grants cluster-wide read of what it watches, nothing namespaced."""


@pytest.fixture(scope="module")
def helm() -> Path:
    path = _find_helm()
    if path is None or not path.exists():
        message = "helm is missing: run `python3 scripts/get_helm.py` or set KLOGHUB_HELM"
        if os.environ.get("CI", "").lower() in {"true", "1", "yes"}:
            pytest.fail(f"{message} (CI=true)", pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def helm_env(kube, tmp_path_factory) -> dict[str, str]:
    """Helm and client-go state in a directory of this module, the harness as the cluster."""
    home = tmp_path_factory.mktemp("helm")
    for (group, kind), plural in _CRDS.items():
        _open_crd(kube, group, kind, plural)
    return {
        **os.environ,
        "KUBECONFIG": str(kube.admin_kubeconfig),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
        "KUBECACHEDIR": str(home / "kube-cache"),
    }


def _open_crd(kube, group: str, kind: str, plural: str) -> None:
    from kubernetes import client

    api = client.ApiextensionsV1Api(kube.admin())
    api.create_custom_resource_definition(
        {
            "metadata": {"name": f"{plural}.{group}"},
            "spec": {
                "group": group,
                "scope": "Namespaced",
                "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            }
                        },
                    }
                ],
            },
        }
    )
    # Established before helm asks discovery for the kind.
    for _ in range(100):
        crd = api.read_custom_resource_definition(f"{plural}.{group}")
        conditions = {c.type: c.status for c in (crd.status.conditions or [])}
        if conditions.get("Established") == "True":
            return
        time.sleep(0.1)
    raise AssertionError(f"the CRD {plural}.{group} was not established")


def _helm(helm: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm), *args], capture_output=True, text=True, timeout=180, check=False, env=env
    )


def _release(scenario: str) -> tuple[str, str]:
    """(release, namespace) of a scenario: each its own, on the shared apiserver."""
    name = f"t-{scenario}"[:40].rstrip("-")
    return name, name


def _values_file(tmp_path: Path, values: dict[str, Any]) -> Path:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.mark.parametrize("scenario", sorted(_scenarios.SCENARIOS))
def test_helm_install_dry_run_server_accepts_every_scenario(
    helm, helm_env, tmp_path, scenario
) -> None:
    """If this failed, `helm install` of that configuration would be refused by a real
    cluster (an unknown field, a wrong type, a kind the server does not serve)."""
    release, namespace = _release(scenario)
    values = _values_file(tmp_path, _scenarios.SCENARIOS[scenario])
    done = _helm(
        helm, helm_env, "install", release, str(CHART), "--namespace", namespace,
        "--create-namespace", "--dry-run=server", "--values", str(values),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def installed(helm, helm_env, tmp_path_factory):
    """``installed(scenario)``: a real `helm install` of the scenario (every object through
    validation and admission), once per module, and the manifests it applied."""
    done: dict[str, tuple[str, list[dict[str, Any]]]] = {}

    def install(scenario: str) -> tuple[str, list[dict[str, Any]]]:
        if scenario not in done:
            release, namespace = _release(scenario)
            values = _values_file(tmp_path_factory.mktemp(scenario), _scenarios.SCENARIOS[scenario])
            result = _helm(
                helm, helm_env, "install", release, str(CHART), "--namespace", namespace,
                "--create-namespace", "--values", str(values),
            )  # fmt: skip
            assert result.returncode == 0, result.stderr
            manifest = _helm(helm, helm_env, "get", "manifest", release, "--namespace", namespace)
            assert manifest.returncode == 0, manifest.stderr
            done[scenario] = (namespace, [m for m in yaml.safe_load_all(manifest.stdout) if m])
        return done[scenario]

    return install


def _agent_sa(manifests: list[dict[str, Any]]) -> str:
    daemonset = _scenarios.workload(manifests, "agent")
    assert daemonset is not None
    return str(_scenarios.pod_spec(daemonset)["serviceAccountName"])


def _can(kube, token: str, method: str, path: str, **query: str) -> int:
    url = path + ("?" + urllib.parse.urlencode(query) if query else "")
    status, _ = kube.request(method, url, token=token)
    return status


def _refused(kube, token: str, namespace: str) -> dict[str, int]:
    """What the agent must never do, each with the status the apiserver gave."""
    other = "kube-system"
    return {
        "list secrets": _can(kube, token, "GET", "/api/v1/secrets"),
        "get a secret of its namespace": _can(
            kube, token, "GET", f"/api/v1/namespaces/{namespace}/secrets/anything"
        ),
        "list configmaps": _can(kube, token, "GET", f"/api/v1/namespaces/{namespace}/configmaps"),
        "exec into a pod": _can(
            kube, token, "POST", f"/api/v1/namespaces/{other}/pods/any/exec",
            command="sh", stdout="true",
        ),
        "create a pod": _can(kube, token, "POST", f"/api/v1/namespaces/{other}/pods"),
        "delete a pod": _can(kube, token, "DELETE", f"/api/v1/namespaces/{other}/pods/any"),
        "list deployments elsewhere": _can(
            kube, token, "GET", f"/apis/apps/v1/namespaces/{other}/deployments"
        ),
        "list serviceaccounts elsewhere": _can(
            kube, token, "GET", f"/api/v1/namespaces/{other}/serviceaccounts"
        ),
        "request a token": _can(
            kube, token, "POST", f"/api/v1/namespaces/{other}/serviceaccounts/default/token"
        ),
        "bind a role": _can(
            kube, token, "POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"
        ),
    }  # fmt: skip


@pytest.mark.parametrize("scenario", ["walk", "run", "everything"])
def test_the_agent_token_watches_its_nodes_pods_and_is_refused_everything_else(
    kube, installed, scenario
) -> None:
    """If this failed, the chart's agent could not enrich on a real cluster, or a stolen
    agent token would read secrets, exec into pods or escalate."""
    namespace, manifests = installed(scenario)
    assert not [m for m in manifests if m["kind"] in FORBIDDEN_KINDS]
    daemonset = _scenarios.workload(manifests, "agent")
    assert _scenarios.pod_spec(daemonset)["automountServiceAccountToken"] is True
    token = kube.service_account_token(namespace, _agent_sa(manifests))
    node = "spec.nodeName=node-a"
    assert _can(kube, token, "GET", "/api/v1/pods", fieldSelector=node, limit="500") == 200
    assert (
        _can(kube, token, "GET", "/api/v1/pods", fieldSelector=node, watch="true",
             allowWatchBookmarks="true", timeoutSeconds="1")
        == 200
    )  # fmt: skip
    enrich = _scenarios.SCENARIOS[scenario].get("agent", {}).get("config", {}).get("enrichment", {})
    extra = {
        "/api/v1/namespaces": enrich.get("namespace_metadata", False),
        "/api/v1/nodes": enrich.get("node_labels", False),
    }
    for path, granted in extra.items():
        assert _can(kube, token, "GET", path) == (200 if granted else 403), path
    refused = _refused(kube, token, namespace)
    assert refused == dict.fromkeys(refused, 403)


@pytest.mark.parametrize("scenario", ["walk", "run"])
def test_the_collector_token_is_refused_the_api(kube, installed, scenario) -> None:
    """If this failed, the collector (which reads nothing from the API) would hold rights."""
    namespace, manifests = installed(scenario)
    collector = _scenarios.workload(manifests, "collector")
    assert collector is not None
    spec = _scenarios.pod_spec(collector)
    assert spec["automountServiceAccountToken"] is False
    token = kube.service_account_token(namespace, spec["serviceAccountName"])
    assert _can(kube, token, "GET", "/api/v1/pods", fieldSelector="spec.nodeName=node-a") == 403
    refused = _refused(kube, token, namespace)
    assert refused == dict.fromkeys(refused, 403)


def test_at_crawl_the_agent_has_no_token_and_its_account_no_rights(kube, installed) -> None:
    """If this failed, the crawl agent (which never reads the API) would carry a credential."""
    namespace, manifests = installed("crawl")
    assert not [m for m in manifests if m["kind"] in {"ClusterRole", "ClusterRoleBinding"}]
    daemonset = _scenarios.workload(manifests, "agent")
    spec = _scenarios.pod_spec(daemonset)
    assert spec["automountServiceAccountToken"] is False
    assert not [v for v in spec.get("volumes", []) if "projected" in v]
    # Even a token minted by hand for its account opens nothing.
    token = kube.service_account_token(namespace, _agent_sa(manifests))
    assert _can(kube, token, "GET", "/api/v1/pods", fieldSelector="spec.nodeName=node-a") == 403
