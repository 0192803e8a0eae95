"""The chart is secure by default: TLS and authentication on the Forward link, generated
material kept across upgrades, cert-manager when asked, NetworkPolicies on every port."""

from __future__ import annotations

import base64
import shutil
import ssl
from pathlib import Path
from typing import Any

import pytest
import yaml

from kloghub import config
from tests.charts import _scenarios as sc
from tests.charts.conftest import CHART, KUBE_VERSION, NAMESPACE, run_helm

COLLECTOR_HOST = f"kl-kloghub-collector.{NAMESPACE}.svc.cluster.local"
UNAUTHENTICATED = "accepts Forward peers without authentication"


def settings(manifests: list[sc.Manifest], component: str, tmp_path: Path) -> config.Settings:
    text, env = sc.pod(manifests, component, tmp_path / "root")
    return sc.load(text, tmp_path, env)


def secret_data(manifests: list[sc.Manifest], name: str) -> dict[str, bytes]:
    (secret,) = [s for s in sc.find(manifests, "Secret") if s["metadata"]["name"] == name]
    return {k: base64.b64decode(v) for k, v in secret["data"].items()}


# --------------------------------------------------------------------------- defaults


@pytest.mark.parametrize("level", ["walk", "run"])
def test_forward_link_has_tls_and_authentication_by_default(render, level, tmp_path):
    """If this failed, a default install would let anyone who reaches the collector write
    into (and erase from) the log record, in clear text."""
    manifests = render({"level": level})
    agent = settings(manifests, "agent", tmp_path).agent
    collector = settings(manifests, "collector", tmp_path).collector
    (output,) = agent.outputs
    assert output.url.startswith("forward+tls://")
    assert output.tls.verify is True
    assert output.tls.ca_file is not None
    assert collector.listener.tls.enabled is True
    assert collector.listener.tls.cert_file is not None
    assert collector.listener.shared_key is not None
    assert output.shared_key is not None
    assert output.shared_key.get_secret_value() == collector.listener.shared_key.get_secret_value()
    assert len(collector.listener.shared_key.get_secret_value()) >= 32
    assert config.listener_authenticates(collector.listener)
    text, env = sc.pod(manifests, "collector", tmp_path / "root")
    result = sc.validate(text, level, tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert UNAUTHENTICATED not in result.stderr


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext, host: str) -> None:
    """A TLS handshake between two in-memory ends; raises ssl.SSLError if refused."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    c = client.wrap_bio(c_in, c_out, server_hostname=host)
    s = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"c": False, "s": False}
    for _ in range(20):
        for name, end in (("c", c), ("s", s)):
            if not done[name]:
                try:
                    end.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return
    raise AssertionError("the handshake did not finish")


def test_generated_certificate_is_trusted_by_agents_for_the_collector_service(render, tmp_path):
    """If this failed, agents would refuse the chart's own collector certificate (wrong
    names, or not signed by the CA they are given) and nothing would be shipped."""
    manifests = render({"level": "walk"})
    data = secret_data(manifests, "kl-kloghub-forward-tls")
    for name, content in data.items():
        (tmp_path / name).write_bytes(content)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    client = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
    _handshake(server, client, COLLECTOR_HOST)
    _handshake(server, client, "kl-kloghub-collector")
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(server, client, "evil.example.com")
    stranger = ssl.create_default_context()  # the system store does not know this CA
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(server, stranger, COLLECTOR_HOST)


def test_agents_get_the_ca_but_never_the_collectors_private_key(render):
    """If this failed, every node would hold the key that lets it impersonate the collector."""
    manifests = render({"level": "run"})
    agent = sc.workload(manifests, "agent")
    assert agent is not None
    for volume in sc.pod_spec(agent)["volumes"]:
        if volume.get("secret", {}).get("secretName") == "kl-kloghub-forward-tls":
            assert volume["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
            break
    else:
        raise AssertionError("agents do not mount the collector's CA")


# --------------------------------------------------------------------------- upgrades


def _render_with_existing(
    helm: Path, values: dict[str, Any], existing: dict[str, Any], tmp_path: Path
) -> list[sc.Manifest]:
    """The chart rendered as `helm upgrade` would when ``existing`` Secrets are in the
    cluster: a copy of the chart whose `lookup` calls read them from a value instead (the
    one change; `helm template` has no cluster to look up in). Not covered: lookup itself."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    (chart / "values.schema.json").unlink()
    template = chart / "templates" / "forward-secrets.yaml"
    text = template.read_text(encoding="utf-8")
    call = 'lookup "v1" "Secret" .Release.Namespace $name'
    assert text.count(call) == 4
    template.write_text(
        text.replace(call, "(get .Values.testExisting $name | default dict)"), encoding="utf-8"
    )
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump({**values, "testExisting": existing}), encoding="utf-8")
    result = run_helm(
        helm,
        *("template", "kl", str(chart), "--namespace", NAMESPACE),
        *("--kube-version", KUBE_VERSION, "-f", str(path)),
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def test_generated_key_and_certificates_are_kept_across_upgrades(helm, tmp_path):
    """If this failed, every `helm upgrade` would give the collector a new key and CA while
    running agents still hold the old ones: the link would break until every pod restarts."""
    first = _render_with_existing(helm, {"level": "run"}, {}, tmp_path / "a")
    existing = {s["metadata"]["name"]: {"data": s["data"]} for s in sc.find(first, "Secret")}
    assert set(existing) == {
        "kl-kloghub-forward",
        "kl-kloghub-forward-tls",
        "kl-kloghub-forward-users",
        "kl-kloghub-agent-ca",  # a new CA would orphan every agent's pod certificate
    }
    again = _render_with_existing(helm, {"level": "run"}, existing, tmp_path / "b")
    assert {s["metadata"]["name"]: {"data": s["data"]} for s in sc.find(again, "Secret")} == (
        existing
    )
    fresh = _render_with_existing(helm, {"level": "run"}, {}, tmp_path / "c")
    for name in ("kl-kloghub-forward", "kl-kloghub-forward-users", "kl-kloghub-agent-ca"):
        assert secret_data(fresh, name) != secret_data(first, name)


def test_a_given_secret_replaces_what_the_chart_would_generate(render):
    """If this failed, the chart would overwrite (or shadow) the operator's own key or
    certificate with generated ones."""
    manifests = render(sc.SCENARIOS["everything"])
    # The agents' pod certificate CA is always the chart's (no value names one of yours).
    assert [s["metadata"]["name"] for s in sc.find(manifests, "Secret")] == ["kl-kloghub-agent-ca"]
    names = {
        v.get("secret", {}).get("secretName")
        for m in (sc.workload(manifests, "agent"), sc.workload(manifests, "collector"))
        if m is not None
        for v in sc.pod_spec(m)["volumes"]
    }
    names |= {
        source["secret"]["name"]
        for m in (sc.workload(manifests, "agent"), sc.workload(manifests, "collector"))
        if m is not None
        for v in sc.pod_spec(m)["volumes"]
        for source in v.get("projected", {}).get("sources", [])
        if "secret" in source
    }
    assert {"kloghub-forward", "kloghub-forward-tls", "agent-users"} <= names


# --------------------------------------------------------------------------- cert-manager


def test_cert_manager_issues_the_collector_certificate_from_its_own_ca(render):
    """If this failed, `certManager.enabled` would leave the collector without the
    certificate its pods mount (they would never start) or with one agents cannot check."""
    manifests = render(sc.SCENARIOS["run-cert-manager"])
    assert not [s for s in sc.find(manifests, "Secret") if s["type"] == "kubernetes.io/tls"]
    certs = {c["metadata"]["name"]: c["spec"] for c in sc.find(manifests, "Certificate")}
    issuers = {i["metadata"]["name"]: i["spec"] for i in sc.find(manifests, "Issuer")}
    leaf = certs["kl-kloghub-forward-tls"]
    assert leaf["secretName"] == "kl-kloghub-forward-tls"
    assert COLLECTOR_HOST in leaf["dnsNames"]
    assert leaf["issuerRef"] == {"name": "kl-kloghub-forward-ca", "kind": "Issuer",
                                 "group": "cert-manager.io"}  # fmt: skip
    assert issuers["kl-kloghub-forward-ca"] == {"ca": {"secretName": "kl-kloghub-forward-ca"}}
    root = certs["kl-kloghub-forward-ca"]
    assert root["isCA"] is True
    assert root["issuerRef"]["name"] == "kl-kloghub-selfsigned"
    assert issuers["kl-kloghub-selfsigned"] == {"selfSigned": {}}
    collector = sc.workload(manifests, "collector")
    assert collector is not None
    mounted = {v.get("secret", {}).get("secretName") for v in sc.pod_spec(collector)["volumes"]}
    assert leaf["secretName"] in mounted


def test_cert_manager_uses_the_issuer_it_is_given(render):
    """If this failed, an operator's ClusterIssuer (the organisation's CA) would be
    ignored for a self-signed one."""
    ref = {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
    manifests = render({"level": "walk", "certManager": {"enabled": True, "issuerRef": ref}})
    (cert,) = sc.find(manifests, "Certificate")
    assert cert["spec"]["issuerRef"] == ref
    assert not sc.find(manifests, "Issuer")


# --------------------------------------------------------------------------- network policies


def _policy(manifests: list[sc.Manifest], component: str) -> dict[str, Any]:
    (policy,) = [
        p
        for p in sc.find(manifests, "NetworkPolicy")
        if p["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    return dict(policy["spec"])


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels, matchExpressions with In) selects ``labels``."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def _pod_labels(manifests: list[sc.Manifest], component: str) -> dict[str, str]:
    workload = sc.workload(manifests, component)
    assert workload is not None
    return dict(workload["spec"]["template"]["metadata"]["labels"])


@pytest.mark.parametrize("level", ["walk", "run"])
def test_only_agents_reach_the_forward_port_and_only_prometheus_the_metrics(render, level):
    """If this failed, any pod of the cluster could connect to the collector's Forward port
    (or scrape metrics) by default."""
    manifests = render({"level": level})
    spec = _policy(manifests, "collector")
    assert spec["podSelector"]["matchLabels"].items() <= _pod_labels(manifests, "collector").items()
    assert spec["policyTypes"] == ["Ingress"]
    by_port = {rule["ports"][0]["port"]: rule["from"] for rule in spec["ingress"]}
    assert set(by_port) == {"forward", "metrics"}
    (agents,) = by_port["forward"]
    assert set(agents) == {"podSelector"}  # this namespace only
    selector = agents["podSelector"]
    wanted = ["agent", "agent-audit"] if level == "run" else ["agent"]
    for component in wanted:
        assert _selects(selector, _pod_labels(manifests, component)), component
    assert not _selects(selector, _pod_labels(manifests, "collector"))
    prometheus = [{"namespaceSelector": {}, "podSelector": {"matchLabels": {
        "app.kubernetes.io/name": "prometheus"}}}]  # fmt: skip
    assert by_port["metrics"] == prometheus
    agent = _policy(manifests, "agent")
    for component in wanted:
        assert _selects(agent["podSelector"], _pod_labels(manifests, component)), component
    assert agent["ingress"] == [
        {"from": prometheus, "ports": [{"port": "metrics", "protocol": "TCP"}]}
    ]
    ports = {
        p["name"]
        for c in sc.pod_spec(sc.workload(manifests, "collector") or {})["containers"]
        for p in c["ports"]
    }
    assert ports == {"forward", "metrics"}  # no port left outside the policy


def test_network_policy_peers_are_configurable(render):
    """If this failed, a Prometheus with other labels could not scrape, and Fluent Bit
    senders in another namespace could not be admitted without disabling the policy."""
    scraper = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mon"}}}
    fluent = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "fb"}}}
    manifests = render(
        {"networkPolicy": {"enabled": True, "metricsFrom": [scraper], "forwardFrom": [fluent]}}
    )
    by_port = {r["ports"][0]["port"]: r["from"] for r in _policy(manifests, "collector")["ingress"]}
    assert by_port["metrics"] == [scraper]
    assert by_port["forward"][1:] == [fluent]
    no_scrapers = render({"networkPolicy": {"enabled": True, "metricsFrom": []}})
    assert _policy(no_scrapers, "agent")["ingress"] == []


def test_network_policies_can_be_turned_off(render):
    """If this failed, clusters without a NetworkPolicy-capable CNI (or with their own
    policies) could not opt out."""
    assert not sc.find(render(sc.SCENARIOS["walk-open"]), "NetworkPolicy")


def test_crawl_has_only_the_agent_policy(render):
    """If this failed, crawl (no collector) would render a policy for pods that do not exist."""
    policies = sc.find(render({"level": "crawl"}), "NetworkPolicy")
    assert [p["metadata"]["name"] for p in policies] == ["kl-kloghub-agent"]


# --------------------------------------------------------------------------- identities


def test_at_run_only_the_control_plane_audit_agents_may_send_audit_events(render, tmp_path):
    """If this failed, either the chart's audit log would be refused as a policy violation,
    or every node's agent (and so a compromised worker) could forge audit events."""
    from kloghub.transport import _auth

    manifests = render({"level": "run", "forward": {"agentIdentity": "sharedUser"}})
    audit_ds = sc.workload(manifests, "agent-audit")
    assert audit_ds is not None
    spec = sc.pod_spec(audit_ds)
    assert spec["nodeSelector"]["node-role.kubernetes.io/control-plane"] == ""
    assert spec["automountServiceAccountToken"] is False
    collector = settings(manifests, "collector", tmp_path / "c").collector
    node_agent = settings(manifests, "agent", tmp_path / "a").agent
    audit_agent = settings(manifests, "agent-audit", tmp_path / "b").agent
    assert node_agent.sources.audit.enabled is False
    assert audit_agent.sources.audit.enabled is True
    assert not audit_agent.sources.containers.enabled and not audit_agent.enrichment.kubernetes_api
    assert audit_agent.state_dir != node_agent.state_dir  # two checkpoint sets on one node
    auth = _auth.Authenticator(collector.listener)
    passwords = {u.username: u.password.get_secret_value() for u in collector.listener.users}
    for agent, may_send_audit in ((node_agent, False), (audit_agent, True)):
        (output,) = agent.outputs
        assert output.username is not None and output.password is not None
        assert passwords[output.username] == output.password.get_secret_value()
        origin = auth.origin("10.0.0.1", username=output.username, shared_key=True)
        assert (origin.method, origin.node) == ("password", None)  # shared: a membership
        assert origin.may_send_audit is may_send_audit
    assert passwords["kloghub-agent"] != passwords["kloghub-control-plane"]
    # A node agent's pod never holds the control-plane password.
    (volume,) = [v for v in sc.pod_spec(sc.workload(manifests, "agent"))["volumes"]
                 if v["name"] == "forward-key"]  # fmt: skip
    items = [i for src in volume["projected"]["sources"] for i in src["secret"].get("items", [])]
    assert {i["key"] for i in items} == {"shared-key", "agent"}


def test_at_run_agents_are_their_nodes_by_pod_certificates_and_only_audit_agents_are_control_plane(
    render, tmp_path
):
    """If this failed, the default install at run would not tell nodes apart (a shared
    password), or a node agent's certificate could carry the control-plane role and a
    compromised worker forge audit events."""
    from kloghub.transport import _auth

    manifests = render({"level": "run"})
    collector = settings(manifests, "collector", tmp_path / "c").collector
    signer = collector.pod_certificates
    assert signer.enabled and signer.namespace == NAMESPACE
    assert collector.listener.require_client_cert is True
    assert collector.listener.tls.ca_file == signer.ca_cert_file
    assert not collector.listener.users
    accounts = {}
    for component in ("agent", "agent-audit"):
        workload = sc.workload(manifests, component)
        assert workload is not None
        spec = sc.pod_spec(workload)
        accounts[component] = spec["serviceAccountName"]
        (identity,) = [v for v in spec["volumes"] if v["name"] == "identity"]
        (source,) = identity["projected"]["sources"]
        assert source["podCertificate"]["signerName"] == "kloghub.io/forward-agent"
        agent = settings(manifests, component, tmp_path / component).agent
        (output,) = agent.outputs
        assert output.password is None
        assert str(output.tls.credential_bundle_file).endswith(
            source["podCertificate"]["credentialBundlePath"]
        )
    assert signer.service_accounts == {
        accounts["agent"]: ["node"],
        accounts["agent-audit"]: ["node", "control-plane"],
    }
    auth = _auth.Authenticator(collector.listener)
    for component, may_send_audit in (("agent", False), ("agent-audit", True)):
        roles = signer.service_accounts[accounts[component]]
        subject = (
            (("commonName", "system:node:n1"),),
            *((("organizationName", r),) for r in roles),
        )
        origin = auth.origin("10.0.0.1", certificate={"subject": subject}, shared_key=True)
        assert (origin.method, origin.node, origin.may_send_audit) == (
            "certificate",
            "n1",
            may_send_audit,
        )


@pytest.mark.parametrize("level", ["walk", "run"])
def test_the_collector_refuses_unauthenticated_peers_at_run_and_warns_at_walk(
    render, level, tmp_path
):
    """If this failed, a default install would accept peers that prove nothing at run."""
    manifests = render({"level": level})
    collector = settings(manifests, "collector", tmp_path).collector
    expected = "refuse" if level == "run" else "warn"
    assert collector.listener.unauthenticated == expected
    assert sc.workload(manifests, "agent-audit") is None or level == "run"


def test_the_audit_daemonset_can_be_turned_off(render, tmp_path):
    """If this failed, managed clusters (no control-plane nodes) would carry an empty
    DaemonSet, or the node agents would ship audit lines their user may not send (stored
    as policy violations)."""
    manifests = render({"level": "run", "audit": {"enabled": False}})
    assert sc.workload(manifests, "agent-audit") is None
    assert settings(manifests, "agent", tmp_path).agent.sources.audit.enabled is False
