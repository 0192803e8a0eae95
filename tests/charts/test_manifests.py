"""What the rendered manifests promise: least privilege, host mounts, probes, wiring."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from kloghub import config
from tests.charts import _dockerfile
from tests.charts import _scenarios as sc
from tests.charts.conftest import NAMESPACE

SCENARIOS = list(sc.SCENARIOS)
WITH_COLLECTOR = [name for name in SCENARIOS if sc.level_of(sc.SCENARIOS[name]) != "crawl"]
HARDENED = {
    "privileged": False,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
}


@pytest.fixture
def manifests(request, render):
    return render(sc.SCENARIOS[request.param])


@pytest.fixture
def values(request):
    return sc.SCENARIOS[request.param]


def with_values(names: list[str]) -> pytest.MarkDecorator:
    """Parametrize a test over scenarios, giving it both ``manifests`` and ``values``."""
    return pytest.mark.parametrize(
        ("manifests", "values"), [(n, n) for n in names], indirect=True, ids=names
    )


def settings_of(manifests: list[sc.Manifest], component: str, tmp_path: Path) -> config.Settings:
    """The settings the component's pod would load: its ConfigMap, its environment and
    the Secret files mounted into it."""
    text, env = sc.pod(manifests, component, tmp_path / "root")
    return sc.load(text, tmp_path, env)


# --------------------------------------------------------------------------- security


@pytest.mark.parametrize("manifests", SCENARIOS, indirect=True)
def test_every_container_runs_without_privileges_on_a_read_only_root(manifests):
    """If this failed, a container could escalate, write its image or skip seccomp."""
    containers = sc.all_containers(manifests)
    assert containers
    for workload, container in containers:
        ctx = container["securityContext"]
        pod_ctx = sc.pod_spec(workload).get("securityContext", {})
        for key, expected in HARDENED.items():
            assert ctx.get(key) is expected, (container["name"], key)
        seccomp = ctx.get("seccompProfile") or pod_ctx.get("seccompProfile")
        assert seccomp == {"type": "RuntimeDefault"}, container["name"]
        assert ctx["capabilities"]["drop"] == ["ALL"], container["name"]


@pytest.mark.parametrize("manifests", SCENARIOS, indirect=True)
def test_no_pod_shares_the_hosts_network_pid_or_ipc_namespace(manifests):
    """If this failed, a log pipeline pod could see the node's network or processes."""
    for m in manifests:
        if m["kind"] in ("DaemonSet", "StatefulSet", "Deployment"):
            spec = sc.pod_spec(m)
            for key in ("hostNetwork", "hostPID", "hostIPC"):
                assert spec.get(key, False) is False, (m["kind"], key)


@pytest.mark.parametrize("manifests", SCENARIOS, indirect=True)
def test_agent_adds_a_capability_only_to_read_node_logs(manifests, tmp_path):
    """If this failed, the agent would hold a capability no enabled source needs, or lack
    the one that reads syslog:adm 0640 files once every other capability is dropped."""
    agent = sc.workload(manifests, "agent")
    assert agent is not None
    added = sc.pod_spec(agent)["containers"][0]["securityContext"]["capabilities"].get("add", [])
    node_logs = settings_of(manifests, "agent", tmp_path).agent.sources.node.enabled
    assert added == (["DAC_READ_SEARCH"] if node_logs else [])
    collector = sc.workload(manifests, "collector")
    if collector is not None:
        ctx = sc.pod_spec(collector)["containers"][0]["securityContext"]
        assert "add" not in ctx["capabilities"]


@pytest.mark.parametrize("manifests", WITH_COLLECTOR, indirect=True)
def test_collector_runs_as_the_images_non_root_user(manifests):
    """If this failed, the collector would run as root although it reads nothing of the host."""
    collector = sc.workload(manifests, "collector")
    assert collector is not None
    pod_ctx = sc.pod_spec(collector)["securityContext"]
    assert pod_ctx["runAsNonRoot"] is True
    assert str(pod_ctx["runAsUser"]) == _dockerfile.final_stage_user().split(":")[0]
    assert pod_ctx["fsGroup"] == pod_ctx["runAsGroup"]


# --------------------------------------------------------------------------- RBAC


def _grants(manifests: list[sc.Manifest], component: str) -> set[tuple[str, str, str]]:
    out = set()
    for role in _roles(manifests, component):
        for rule in role["rules"]:
            for group in rule.get("apiGroups", []):
                for resource in rule.get("resources", []):
                    for verb in rule.get("verbs", []):
                        out.add((group, resource, verb))
    return out


def _component(manifest: sc.Manifest) -> str | None:
    return manifest["metadata"].get("labels", {}).get("app.kubernetes.io/component")


def _roles(manifests: list[sc.Manifest], component: str) -> list[sc.Manifest]:
    roles = sc.find(manifests, "ClusterRole") + sc.find(manifests, "Role")
    return [r for r in roles if _component(r) == component]


def _subjects(manifests: list[sc.Manifest], component: str) -> list[dict[str, Any]]:
    bindings = sc.find(manifests, "ClusterRoleBinding") + sc.find(manifests, "RoleBinding")
    return [s for b in bindings if _component(b) == component for s in b["subjects"]]


SIGNER_GRANTS = {
    ("certificates.k8s.io", "podcertificaterequests", "get"),
    ("certificates.k8s.io", "podcertificaterequests", "list"),
    ("certificates.k8s.io", "podcertificaterequests", "watch"),
    ("certificates.k8s.io", "podcertificaterequests/status", "patch"),
    ("certificates.k8s.io", "signers", "sign"),
}


@pytest.mark.parametrize("manifests", SCENARIOS, indirect=True)
def test_rbac_grants_exactly_what_the_enabled_enrichments_read(manifests, tmp_path):
    """If this failed, the agent could read more of the API than its enrichments use (or
    too little, and enrichment would fail with 403 in the cluster)."""
    enrichment = settings_of(manifests, "agent", tmp_path).agent.enrichment
    expected: set[tuple[str, str, str]] = set()
    if enrichment.kubernetes_api:
        resources = ["pods"]
        resources += ["namespaces"] if enrichment.namespace_metadata else []
        resources += ["nodes"] if enrichment.node_labels else []
        expected = {("", r, v) for r in resources for v in ("get", "list", "watch")}
    assert _grants(manifests, "agent") == expected
    assert not _roles(manifests, "agent-audit")

    agent = sc.workload(manifests, "agent")
    assert agent is not None
    spec = sc.pod_spec(agent)
    assert spec["automountServiceAccountToken"] is enrichment.kubernetes_api
    assert _subjects(manifests, "agent") == (
        [{"kind": "ServiceAccount", "name": spec["serviceAccountName"], "namespace": NAMESPACE}]
        if expected
        else []
    )


@pytest.mark.parametrize("manifests", WITH_COLLECTOR, indirect=True)
def test_collector_gets_api_access_only_to_sign_pod_certificates(manifests, tmp_path):
    """If this failed, a compromised collector would hold Kubernetes API credentials it
    does not need (or, signing pod certificates, lack one and leave agents waiting)."""
    collector = sc.workload(manifests, "collector")
    assert collector is not None
    spec = sc.pod_spec(collector)
    signs = settings_of(manifests, "collector", tmp_path).collector.pod_certificates.enabled
    assert spec["automountServiceAccountToken"] is signs
    assert _grants(manifests, "collector") == (SIGNER_GRANTS if signs else set())
    names = {s["name"] for s in _subjects(manifests, "collector")}
    assert names == ({spec["serviceAccountName"]} if signs else set())
    for role in _roles(manifests, "collector"):
        for rule in role["rules"]:
            if "signers" in rule["resources"]:
                assert rule["resourceNames"] == ["kloghub.io/forward-agent"]


# --------------------------------------------------------------------------- host paths


def _volumes(workload: sc.Manifest) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in sc.pod_spec(workload)["volumes"]}


@pytest.mark.parametrize("manifests", SCENARIOS, indirect=True)
def test_host_logs_are_mounted_read_only(manifests):
    """If this failed, the agent could modify or delete the node's logs."""
    agent = sc.workload(manifests, "agent")
    assert agent is not None
    volumes = _volumes(agent)
    mounts = {m["mountPath"]: m for m in sc.pod_spec(agent)["containers"][0]["volumeMounts"]}
    assert volumes[mounts["/var/log"]["name"]]["hostPath"]["path"] == "/var/log"
    for mount in mounts.values():
        host_path = volumes[mount["name"]].get("hostPath")
        if host_path and host_path["path"] != "/var/lib/kloghub":
            assert mount.get("readOnly") is True, mount


@with_values(SCENARIOS)
def test_docker_log_directory_is_mounted_only_when_asked(manifests, values):
    """If this failed, docker-runtime nodes would lose their logs (the /var/log/pods links
    would dangle), or every node would expose /var/lib/docker without need."""
    agent = sc.workload(manifests, "agent")
    assert agent is not None
    paths = {v["hostPath"]["path"] for v in _volumes(agent).values() if "hostPath" in v}
    wanted = bool(values.get("agent", {}).get("dockerLogs"))
    assert ("/var/lib/docker/containers" in paths) is wanted


@pytest.mark.parametrize("manifests", SCENARIOS, indirect=True)
def test_every_file_the_agent_tails_is_inside_a_host_mount(manifests, tmp_path):
    """If this failed, a source of the preset (or of the values) would point at a path
    the pod cannot see, and those logs would silently never be read."""
    agent = sc.workload(manifests, "agent")
    assert agent is not None
    volumes = _volumes(agent)
    host_mounts = [
        m["mountPath"].rstrip("/") + "/"
        for m in sc.pod_spec(agent)["containers"][0]["volumeMounts"]
        if "hostPath" in volumes[m["name"]]
        and volumes[m["name"]]["hostPath"]["path"] == m["mountPath"]
        and m["mountPath"] != "/var/lib/kloghub"
    ]
    sources = settings_of(manifests, "agent", tmp_path).agent.sources
    paths = [*sources.containers.paths, *sources.node.paths, sources.audit.path]
    for path in paths:
        assert any(path.startswith(prefix) for prefix in host_mounts), path


@pytest.mark.parametrize("manifests", SCENARIOS, indirect=True)
def test_agent_state_dir_is_a_host_path_that_outlives_the_pod(manifests, tmp_path):
    """If this failed, checkpoints would die with the pod and a restart would re-ship every
    file (the emptyDir mistake of Beats #5557)."""
    agent = sc.workload(manifests, "agent")
    assert agent is not None
    state_dir = str(settings_of(manifests, "agent", tmp_path).agent.state_dir)
    mounts = {m["mountPath"]: m for m in sc.pod_spec(agent)["containers"][0]["volumeMounts"]}
    mount = mounts[state_dir]
    assert mount.get("readOnly", False) is False
    volume = _volumes(agent)[mount["name"]]
    assert volume["hostPath"] == {"path": "/var/lib/kloghub", "type": "DirectoryOrCreate"}


@pytest.mark.parametrize("manifests", WITH_COLLECTOR, indirect=True)
def test_collector_queues_live_on_a_volume_claim_unless_a_deployment_is_chosen(manifests, tmp_path):
    """If this failed, a restarted collector would lose the events it had acknowledged."""
    collector = sc.workload(manifests, "collector")
    assert collector is not None
    state_dir = str(settings_of(manifests, "collector", tmp_path).collector.state_dir)
    mounts = {m["mountPath"]: m for m in sc.pod_spec(collector)["containers"][0]["volumeMounts"]}
    name = mounts[state_dir]["name"]
    if collector["kind"] == "StatefulSet":
        claims = [t["metadata"]["name"] for t in collector["spec"]["volumeClaimTemplates"]]
        assert name in claims
        assert name not in _volumes(collector)
    else:
        assert collector["kind"] == "Deployment"
        assert "emptyDir" in _volumes(collector)[name]


# --------------------------------------------------------------------------- probes and lifecycle


@pytest.mark.parametrize("manifests", SCENARIOS, indirect=True)
def test_every_container_is_probed_on_its_health_endpoints(manifests, tmp_path):
    """If this failed, Kubernetes would not restart a hung agent or would route to a
    collector that is not ready; or the probes would hit a port nothing listens on."""
    for component in ("agent", "collector"):
        workload = sc.workload(manifests, component)
        if workload is None:
            continue
        container = sc.pod_spec(workload)["containers"][0]
        section = getattr(settings_of(manifests, component, tmp_path), component)
        host, _, port = section.metrics_addr.rpartition(":")
        assert host == "0.0.0.0"  # the kubelet probes the pod IP, not loopback
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["metrics"] == int(port)
        for probe, path in (
            ("livenessProbe", "/healthz"),
            ("readinessProbe", "/readyz"),
            ("startupProbe", "/healthz"),
        ):
            assert container[probe]["httpGet"] == {"path": path, "port": "metrics"}


@pytest.mark.parametrize("manifests", SCENARIOS, indirect=True)
def test_grace_period_outlasts_the_drain_timeout(manifests, tmp_path):
    """If this failed, the kubelet's SIGKILL would cut the drain short and in-flight data
    would be re-sent (or, without checkpoints, lost) on every rollout."""
    for component in ("agent", "collector"):
        workload = sc.workload(manifests, component)
        if workload is None:
            continue
        drain = getattr(settings_of(manifests, component, tmp_path), component).drain_timeout
        grace = sc.pod_spec(workload)["terminationGracePeriodSeconds"]
        assert grace >= drain + 5, (component, grace, drain)


@pytest.mark.parametrize("manifests", SCENARIOS, indirect=True)
def test_agent_runs_on_every_node_including_control_planes(manifests):
    """If this failed, tainted nodes (control planes, where the audit log is) would have no
    agent and their logs would never be shipped."""
    agent = sc.workload(manifests, "agent")
    assert agent is not None
    assert {"operator": "Exists"} in sc.pod_spec(agent)["tolerations"]
    rolling = agent["spec"]["updateStrategy"]
    assert rolling["type"] == "RollingUpdate"
    assert rolling["rollingUpdate"]["maxUnavailable"] == 1


@pytest.mark.parametrize("manifests", SCENARIOS, indirect=True)
def test_agent_knows_its_node_from_the_downward_api(manifests, tmp_path):
    """If this failed, the agent would watch every pod of the cluster instead of its node's."""
    assert settings_of(manifests, "agent", tmp_path).agent.node_name == sc.NODE


@with_values(SCENARIOS)
def test_pods_run_at_the_chosen_level_even_without_the_config_file(manifests, values, tmp_path):
    """If this failed, `kloghub search` run in a pod without --config would read the store
    of another level (at crawl, the collector's path instead of the node's)."""
    for component in ("agent", "collector"):
        workload = sc.workload(manifests, component)
        if workload is None:
            continue
        env = sc.pod_env(sc.pod_spec(workload)["containers"][0])
        assert sc.load("{}", tmp_path, env).level == sc.level_of(values)
        assert settings_of(manifests, component, tmp_path).level == sc.level_of(values)


# Pod Security Standards, "restricted" profile (Kubernetes docs, pod-security-standards).
RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
    "persistentVolumeClaim", "projected", "secret",
}  # fmt: skip


@pytest.mark.parametrize("manifests", WITH_COLLECTOR, indirect=True)
def test_collector_meets_the_restricted_pod_security_standard(manifests):
    """If this failed, the collector could not run in a namespace that enforces the
    restricted profile, which it has no reason to need more than."""
    collector = sc.workload(manifests, "collector")
    assert collector is not None
    spec = sc.pod_spec(collector)
    assert {next(k for k in v if k != "name") for v in spec["volumes"]} <= RESTRICTED_VOLUMES
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    for container in spec["containers"]:
        ctx = container["securityContext"]
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["capabilities"]["drop"] == ["ALL"]
        assert set(ctx["capabilities"].get("add", [])) <= {"NET_BIND_SERVICE"}
        assert all("hostPort" not in p for p in container["ports"])


@pytest.mark.parametrize("manifests", SCENARIOS, indirect=True)
def test_resources_have_requests_and_limits(manifests):
    """If this failed, an agent could starve the node's workloads or be evicted first."""
    for _, container in sc.all_containers(manifests):
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"])
        assert "memory" in resources["limits"]


# --------------------------------------------------------------------------- wiring


@pytest.mark.parametrize("manifests", WITH_COLLECTOR, indirect=True)
def test_agents_send_to_the_collector_service(manifests, tmp_path):
    """If this failed, agents would ship to an address where no collector listens."""
    outputs = settings_of(manifests, "agent", tmp_path).agent.outputs
    (service,) = [
        s
        for s in sc.find(manifests, "Service")
        if s["metadata"]["labels"]["app.kubernetes.io/component"] == "collector"
        and s["spec"].get("clusterIP") != "None"
    ]
    collector = sc.workload(manifests, "collector")
    assert collector is not None
    pod_labels = collector["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    forward = next(p for p in service["spec"]["ports"] if p["name"] == "forward")
    container_ports = {p["name"] for p in sc.pod_spec(collector)["containers"][0]["ports"]}
    assert forward["targetPort"] in container_ports
    listen = settings_of(manifests, "collector", tmp_path).collector.listen
    assert listen == f"0.0.0.0:{forward['port']}"
    (output,) = outputs
    url = urlsplit(output.url)
    assert url.scheme in ("forward", "forward+tls")
    assert url.hostname == f"{service['metadata']['name']}.{NAMESPACE}.svc.cluster.local"
    assert url.port == forward["port"]


@pytest.mark.parametrize("manifests", ["crawl"], indirect=True)
def test_crawl_deploys_agents_only_with_a_store_on_the_node(manifests, tmp_path):
    """If this failed, crawl would deploy a collector nobody sends to, or keep logs off
    the node's persistent state dir."""
    components = {m["metadata"]["labels"]["app.kubernetes.io/component"] for m in manifests}
    assert components == {"agent"}
    agent = settings_of(manifests, "agent", tmp_path).agent
    (output,) = agent.outputs
    assert output.url.startswith(f"store:{agent.state_dir}/")


@pytest.mark.parametrize("manifests", ["walk", "everything"], indirect=True)
def test_pod_disruption_budget_and_autoscaler_target_the_collector(manifests):
    """If this failed, node drains could evict every collector at once, or the autoscaler
    would scale something else."""
    collector = sc.workload(manifests, "collector")
    assert collector is not None
    pod_labels = collector["spec"]["template"]["metadata"]["labels"]
    (pdb,) = sc.find(manifests, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    hpas = sc.find(manifests, "HorizontalPodAutoscaler")
    if hpas:
        target = hpas[0]["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == (
            collector["kind"],
            collector["metadata"]["name"],
        )
        assert "replicas" not in collector["spec"]


@pytest.mark.parametrize("manifests", ["everything"], indirect=True)
def test_service_monitors_scrape_a_port_named_metrics(manifests):
    """If this failed, Prometheus would find the ServiceMonitors but scrape nothing."""
    monitors = sc.find(manifests, "ServiceMonitor")
    assert {m["metadata"]["labels"]["app.kubernetes.io/component"] for m in monitors} == {
        "agent",
        "collector",
    }
    for monitor in monitors:
        selector = monitor["spec"]["selector"]["matchLabels"]
        services = [
            s
            for s in sc.find(manifests, "Service")
            if selector.items() <= s["metadata"]["labels"].items()
            and any(p["name"] == "metrics" for p in s["spec"]["ports"])
        ]
        assert services, monitor["metadata"]["name"]
        assert monitor["spec"]["endpoints"][0]["port"] == "metrics"


def test_config_change_rolls_the_pods(render):
    """If this failed, `helm upgrade` with new settings would leave pods on the old config."""

    def checksums(values: dict[str, Any]) -> dict[str, str]:
        out = {}
        for component in ("agent", "collector"):
            workload = sc.workload(render(values), component)
            assert workload is not None
            annotations = workload["spec"]["template"]["metadata"]["annotations"]
            out[component] = annotations["checksum/config"]
        return out

    before = checksums({})
    after = checksums({"agent": {"config": {"log_level": "debug"}}})
    assert after["agent"] != before["agent"]
    assert after["collector"] == before["collector"]


# --------------------------------------------------------------------------- secrets


@pytest.mark.parametrize("manifests", SCENARIOS, indirect=True)
def test_no_configmap_holds_a_secret(manifests):
    """If this failed, a credential would sit in a ConfigMap, readable by anyone who may
    read ConfigMaps and shown by `kubectl describe`."""
    for cm in sc.find(manifests, "ConfigMap"):
        for text in cm["data"].values():
            assert not _secret_keys(yaml.safe_load(text)), cm["metadata"]["name"]
            for secret in sc.SECRETS.values():
                assert secret not in text


GENERATED_KEYS = {
    "shared-key",
    "ca.crt",
    "ca.key",
    "tls.crt",
    "tls.key",
    "agent",
    "control-plane",
}


@pytest.mark.parametrize("manifests", SCENARIOS, indirect=True)
def test_the_only_secrets_the_chart_creates_hold_material_it_generated(manifests):
    """If this failed, the chart would copy a credential from values (or from a Secret
    it only references) into a Secret of its own."""
    for secret in sc.find(manifests, "Secret"):
        assert secret["metadata"]["name"] in (
            "kl-kloghub-forward",
            "kl-kloghub-forward-tls",
            "kl-kloghub-forward-users",
            "kl-kloghub-agent-ca",  # with pod certificates: the CA the collector signs with
        )
        if "ca.key" in secret["data"]:
            assert secret["metadata"]["name"] == "kl-kloghub-agent-ca"
        assert set(secret["data"]) <= GENERATED_KEYS
        assert "stringData" not in secret
        decoded = [base64.b64decode(v).decode() for v in secret["data"].values()]
        for value in sc.SECRETS.values():
            assert value not in decoded


@pytest.mark.parametrize("manifests", SCENARIOS, indirect=True)
def test_credentials_are_mounted_files_never_environment_variables(manifests):
    """If this failed, a credential would be pasted into an environment variable (and, in
    a JSON list, broken by its quotes and backslashes) or into the pod spec."""
    for _, container in sc.all_containers(manifests):
        for item in container.get("env", []):
            if "value" in item:
                assert not _literal_secrets(item["value"]), item["name"]
            else:
                assert set(item["valueFrom"]) == {"fieldRef"}, item["name"]


WITH_SECRETS = WITH_COLLECTOR  # the Forward shared key, at least
SECRET_FIELDS = {"passwordSecret": "password", "apiKeySecret": "api_key", "tokenSecret": "token"}


def chart_user_passwords(manifests: list[sc.Manifest], values: dict[str, Any]) -> dict[str, str]:
    """The passwords of the chart's own handshake users: a given Secret's, or generated."""
    given = values.get("forward", {}).get("agentUsersSecret", {}).get("name")
    if given:
        return {user: sc.SECRETS[(given, user)] for user in ("agent", "control-plane")}
    (secret,) = [
        s for s in sc.find(manifests, "Secret") if s["metadata"]["name"].endswith("-forward-users")
    ]
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def generated_shared_key(manifests: list[sc.Manifest]) -> str:
    (secret,) = [
        s for s in sc.find(manifests, "Secret") if s["metadata"]["name"].endswith("-forward")
    ]
    return base64.b64decode(secret["data"]["shared-key"]).decode()


@with_values(WITH_SECRETS)
def test_secrets_reach_the_loader_through_mounted_files(manifests, values, tmp_path):
    """If this failed, the pods would start without their SIEM credentials or shared key
    (every request refused) although the Secrets exist."""
    collector = settings_of(manifests, "collector", tmp_path).collector
    agent = settings_of(manifests, "agent", tmp_path).agent
    text = sc.config_text(manifests, "collector")
    assert text is not None
    file_sinks = yaml.safe_load(text)["collector"]["sinks"]
    assert [s.url for s in collector.sinks] == [s["url"] for s in file_sinks]

    backends = values.get("backends", {})
    enabled = [
        n for n in ("elasticsearch", "opensearch", "splunk") if backends.get(n, {}).get("enabled")
    ]
    if enabled:
        assert len(collector.sinks) == len(enabled)
    for name, sink in zip(enabled, collector.sinks, strict=False):
        expected = {
            field: sc.SECRETS[(ref["name"], ref["key"])]
            for key, field in SECRET_FIELDS.items()
            if (ref := backends[name].get(key, {})).get("name")
        }
        got = {
            field: secret.get_secret_value()
            for field in ("password", "api_key", "token")
            if (secret := getattr(sink, field)) is not None
        }
        assert got == expected, sink.url

    forward_ref = values.get("forward", {}).get("sharedKeySecret", {})
    if forward_ref.get("name"):
        forward_key = sc.SECRETS[(forward_ref["name"], forward_ref["key"])]
    else:
        forward_key = generated_shared_key(manifests)
    assert collector.listener.shared_key is not None
    assert collector.listener.shared_key.get_secret_value() == forward_key
    for output in agent.outputs:
        assert output.shared_key is not None
        assert output.shared_key.get_secret_value() == forward_key
    users = values.get("forward", {}).get("users", [])
    chart_users = chart_user_passwords(manifests, values)
    # With pod certificates the agents have no password: their certificate names them.
    pod_certificates = collector.pod_certificates.enabled
    own = [
        ("kloghub-agent", chart_users["agent"]),
        ("kloghub-control-plane", chart_users["control-plane"]),
    ]
    assert [(u.username, u.password.get_secret_value()) for u in collector.listener.users] == (
        [] if pod_certificates else own
    ) + [
        (u["username"], sc.SECRETS[(u["passwordSecret"]["name"], u["passwordSecret"]["key"])])
        for u in users
    ]
    for output in agent.outputs:
        if pod_certificates:
            assert (output.username, output.password) == (None, None)
            assert output.tls.credential_bundle_file is not None
        else:
            assert output.username == "kloghub-agent"
            assert output.password is not None
            assert output.password.get_secret_value() == chart_users["agent"]

    # `kloghub search` in the collector pod reads the first searchable backend with the
    # same credentials as its sink.
    search = settings_of(manifests, "collector", tmp_path).search
    searchable = [n for n in enabled if n != "splunk"]
    if searchable:
        block = backends[searchable[0]]
        assert search.store == f"{searchable[0]}+{block['url']}"
        for key, field in SECRET_FIELDS.items():
            ref = block.get(key, {})
            secret = getattr(search, field, None)
            got = secret.get_secret_value() if secret else None
            assert got == (sc.SECRETS[(ref["name"], ref["key"])] if ref.get("name") else None)


def _secret_keys(data: Any) -> set[str]:
    if isinstance(data, dict):
        found = {k for k in data if k in sc.SECRET_KEYS}
        for value in data.values():
            found |= _secret_keys(value)
        return found
    if isinstance(data, list):
        return set().union(*(_secret_keys(v) for v in data)) if data else set()
    return set()


def _literal_secrets(text: str) -> set[str]:
    """Secret keys of a JSON env value whose value is a literal, not a $(VAR) reference."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return set()

    def walk(node: Any) -> set[str]:
        out: set[str] = set()
        if isinstance(node, dict):
            for k, v in node.items():
                if k in sc.SECRET_KEYS and not (isinstance(v, str) and v.startswith("$(")):
                    out.add(k)
                out |= walk(v)
        elif isinstance(node, list):
            for v in node:
                out |= walk(v)
        return out

    return walk(data)
