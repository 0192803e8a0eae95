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
"""The chart grants the agents cluster-wide read of what they watch, nothing namespaced
(the collector's pod certificate signer has a Role in the release namespace)."""


def _agent_objects(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    component = "app.kubernetes.io/component"
    return [m for m in manifests if m["metadata"].get("labels", {}).get(component) != "collector"]


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
    assert not [m for m in _agent_objects(manifests) if m["kind"] in FORBIDDEN_KINDS]
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
def test_the_collector_token_is_refused_the_api_but_pod_certificate_requests(
    kube, installed, scenario
) -> None:
    """If this failed, the collector would hold rights it does not use (at walk it reads
    nothing from the API; at run only its namespace's PodCertificateRequests)."""
    namespace, manifests = installed(scenario)
    collector = _scenarios.workload(manifests, "collector")
    assert collector is not None
    spec = _scenarios.pod_spec(collector)
    signs = scenario == "run"
    assert spec["automountServiceAccountToken"] is signs
    token = kube.service_account_token(namespace, spec["serviceAccountName"])
    assert _can(kube, token, "GET", "/api/v1/pods", fieldSelector="spec.nodeName=node-a") == 403
    pcrs = "/apis/certificates.k8s.io/v1/namespaces/{}/podcertificaterequests"
    assert _can(kube, token, "GET", pcrs.format(namespace)) == (200 if signs else 403)
    assert _can(kube, token, "GET", pcrs.format("kube-system")) == 403
    assert _can(kube, token, "POST", pcrs.format(namespace)) == 403  # only kubelets create
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


async def test_the_installed_chart_signs_an_agent_pods_certificate_for_its_node(
    kube, installed, tmp_path
) -> None:
    """If this failed, agents installed at run would never get their certificate on a real
    cluster: the chart's podCertificate volume, the collector's RBAC or its signer
    settings would not work together (here the kubelet is played, as in
    tests/kube/test_pod_certificates.py)."""
    import base64
    import uuid

    from kloghub.collector import _signer
    from tests.kube.test_pod_certificates import World

    namespace, manifests = installed("run")
    from kloghub import config

    rendered = yaml.safe_load(_scenarios.config_text(manifests, "collector") or "")
    settings = config.PodCertificatesConfig(**rendered["collector"]["pod_certificates"])
    assert settings.enabled and settings.namespace == namespace
    # The collector's own token and the CA the chart generated, where the pod mounts them.
    collector = _scenarios.pod_spec(_scenarios.workload(manifests, "collector"))
    token = kube.service_account_token(namespace, collector["serviceAccountName"])
    (ca_secret,) = [
        v["secret"]["secretName"] for v in collector["volumes"] if v["name"] == "agent-ca"
    ]
    data = kube.core().read_namespaced_secret(ca_secret, namespace).data
    for key in ("ca.crt", "ca.key"):
        (tmp_path / key).write_bytes(base64.b64decode(data[key]))
    signer = _signer.PodCertificateSigner(
        settings.model_copy(
            update={
                "ca_cert_file": tmp_path / "ca.crt",
                "ca_key_file": tmp_path / "ca.key",
                "kubeconfig": kube.token_kubeconfig(tmp_path / "collector.kubeconfig", token),
            }
        )
    )
    # An agent pod as the DaemonSet makes it, bound to a node.
    node = f"node-{uuid.uuid4().hex[:6]}"
    made = kube.core().create_node({"metadata": {"name": node}})
    template = _scenarios.workload(manifests, "agent")["spec"]["template"]
    pod_body = {
        "metadata": {"name": f"agent-{node}", "labels": template["metadata"]["labels"]},
        "spec": {**template["spec"], "nodeName": node},
    }
    pod = kube.core().create_namespaced_pod(namespace, pod_body)
    world = World.__new__(World)  # only its kubelet part: the namespace is the chart's
    world.kube, world.ns, world.node_uid = kube, namespace, {node: made.metadata.uid}
    kubelet = kube.node_client(node)
    await signer.start()
    try:
        sa = pod.spec.service_account_name
        name, _ = world.request(
            kubelet, {"name": pod.metadata.name, "uid": pod.metadata.uid, "node": node, "sa": sa}
        )
        pcr = await world.answered(name)
    finally:
        await signer.stop(5)
        kubelet.close()
    [cond] = pcr["status"]["conditions"]
    assert cond["type"] == "Issued", cond
    assert signer.issued == 1
