"""Pod certificates on the real API server: the collector's signer issues each agent pod a
client certificate that names its node, and the listener attributes its records to it.

The test plays the kubelet (no kubelet runs here): authenticated as ``system:node:<name>``
it makes a key, a stub PKCS#10 request signed by it, and creates the PodCertificateRequest
for a pod bound to it, as the kubelet does for a ``podCertificate`` projected volume;
NodeRestriction and the Node authorizer judge it as they would the kubelet's. The signer
runs as a ServiceAccount with only the chart's permissions.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kloghub import config, core, normalize, transport
from kloghub.collector import _signer
from tests._kube import Certificates
from tests.kube import _objects

pytestmark = pytest.mark.integration

SIGNER = "kloghub.io/forward-agent"
GROUP = "certificates.k8s.io"
NS = 1_700_000_000_123_456_789

# The collector's permissions, as the chart grants them (templates/collector-rbac.yaml).
SIGNER_RULES = [
    {
        "apiGroups": [GROUP],
        "resources": ["podcertificaterequests"],
        "verbs": ["get", "list", "watch"],
    },
    {"apiGroups": [GROUP], "resources": ["podcertificaterequests/status"], "verbs": ["patch"]},
]
SIGN_RULE = {
    "apiGroups": [GROUP],
    "resources": ["signers"],
    "resourceNames": [SIGNER],
    "verbs": ["sign"],
}


class World:
    """A namespace with the agent's and another ServiceAccount, two nodes and the
    collector's ServiceAccount, credentials and CA."""

    def __init__(self, kube: Any, tmp: Path) -> None:
        from kubernetes import client

        self.kube = kube
        tag = uuid.uuid4().hex[:6]
        self.ns = f"pcr-{tag}"
        self.agent_sa, self.other_sa = f"agent-{tag}", f"other-{tag}"
        self.nodes = [f"node-a-{tag}", f"node-b-{tag}"]
        kube.ensure_namespace(self.ns)
        core_api = kube.core()
        for sa in (self.agent_sa, self.other_sa, "collector"):
            core_api.create_namespaced_service_account(self.ns, {"metadata": {"name": sa}})
        self.node_uid = {}
        for node in self.nodes:
            made = core_api.create_node({"metadata": {"name": node}})
            self.node_uid[node] = made.metadata.uid
        rbac = client.RbacAuthorizationV1Api(kube.admin())
        subject = [_objects.account_subject("collector", self.ns)]
        rbac.create_namespaced_role(
            self.ns, {"metadata": {"name": "signer"}, "rules": SIGNER_RULES}
        )
        rbac.create_namespaced_role_binding(
            self.ns, _objects.binding("signer", "Role", "signer", subject)
        )
        rbac.create_cluster_role({"metadata": {"name": f"sign-{tag}"}, "rules": [SIGN_RULE]})
        rbac.create_cluster_role_binding(
            _objects.binding(f"sign-{tag}", "ClusterRole", f"sign-{tag}", subject)
        )
        token = kube.service_account_token(self.ns, "collector")
        self.collector_kubeconfig = kube.token_kubeconfig(tmp / "collector.kubeconfig", token)
        self.ca = Certificates(tmp / "collector-ca")
        self.server_cert = self.ca.issue(
            "listener", "/CN=kloghub-collector", usage="serverAuth", sans="IP:127.0.0.1"
        )

    def signer_config(self) -> config.PodCertificatesConfig:
        return config.PodCertificatesConfig(
            enabled=True,
            namespace=self.ns,
            service_accounts={self.agent_sa: ["node"]},
            ca_cert_file=self.ca.ca_crt,
            ca_key_file=self.ca.ca_key,
            max_lifetime="12h",
            kubeconfig=self.collector_kubeconfig,
        )

    def pod(self, name: str, node: str, sa: str) -> dict[str, Any]:
        """A pod bound to ``node`` with the agent's podCertificate volume (the chart's)."""
        body = {
            "metadata": {"name": name},
            "spec": {
                "nodeName": node,
                "serviceAccountName": sa,
                "automountServiceAccountToken": False,
                "containers": [
                    {
                        "name": "agent",
                        "image": "kloghub:test",
                        "volumeMounts": [{"name": "identity", "mountPath": "/var/run/kloghub"}],
                    }
                ],
                "volumes": [
                    {
                        "name": "identity",
                        "projected": {
                            "sources": [
                                {
                                    "podCertificate": {
                                        "signerName": SIGNER,
                                        "keyType": "ECDSAP256",
                                        "maxExpirationSeconds": 86400,
                                        "credentialBundlePath": "credential-bundle.pem",
                                    }
                                }
                            ]
                        },
                    }
                ],
            },
        }
        made = self.kube.core().create_namespaced_pod(self.ns, body)
        return {"name": name, "uid": made.metadata.uid, "node": node, "sa": sa}

    def request(
        self, kubelet: Any, pod: dict[str, Any], *, node: str | None = None
    ) -> tuple[str, ec.EllipticCurvePrivateKey]:
        """Create the PodCertificateRequest the kubelet of ``node`` (the pod's) makes for
        ``pod``; (its name, the key). Raises ApiException when the API server refuses."""
        from kubernetes import client

        node = node or pod["node"]
        key = ec.generate_private_key(ec.SECP256R1())
        stub = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .sign(key, hashes.SHA256())
        )
        sa = self.kube.core().read_namespaced_service_account(pod["sa"], self.ns)
        body = {
            "apiVersion": f"{GROUP}/v1",
            "kind": "PodCertificateRequest",
            "metadata": {"generateName": f"{pod['name']}-"},
            "spec": {
                "signerName": SIGNER,
                "podName": pod["name"],
                "podUID": pod["uid"],
                "serviceAccountName": pod["sa"],
                "serviceAccountUID": sa.metadata.uid,
                "nodeName": node,
                "nodeUID": self.node_uid[node],
                "maxExpirationSeconds": 86400,
                "stubPKCS10Request": base64.b64encode(
                    stub.public_bytes(serialization.Encoding.DER)
                ).decode(),
            },
        }
        resp = client.CertificatesV1Api(kubelet).create_namespaced_pod_certificate_request(
            self.ns, body, _preload_content=False
        )
        import json

        return json.loads(resp.data)["metadata"]["name"], key

    async def answered(self, name: str, timeout: float = 20.0) -> dict[str, Any]:
        """The request once it has a terminal condition (read as admin)."""
        from kubernetes import client

        api = client.CertificatesV1Api(self.kube.admin())
        async with asyncio.timeout(timeout):
            while True:
                resp = await asyncio.to_thread(
                    api.read_namespaced_pod_certificate_request,
                    name,
                    self.ns,
                    _preload_content=False,
                )
                import json

                pcr = json.loads(resp.data)
                if _signer.answered(pcr):
                    return pcr
                await asyncio.sleep(0.1)


@pytest.fixture
def world(kube, tmp_path) -> World:
    return World(kube, tmp_path)


@pytest.fixture
def kubelets(kube, world):
    clients = {node: kube.node_client(node) for node in world.nodes}
    yield clients
    for c in clients.values():
        c.close()


@pytest.fixture
async def signer(world):
    service = _signer.PodCertificateSigner(world.signer_config())
    await service.start()
    yield service
    await service.stop(5)


def _condition(pcr: dict[str, Any]) -> dict[str, Any]:
    [cond] = pcr["status"]["conditions"]
    return cond


def _bundle(path: Path, key: ec.EllipticCurvePrivateKey, chain: str) -> Path:
    """The credential bundle as the kubelet writes it: the PKCS#8 key, then the chain."""
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(pem + chain.encode())
    return path


async def test_an_agent_pod_gets_a_certificate_that_names_its_node_and_its_records_carry_it(
    world, kubelets, signer, tmp_path
):
    """If this failed, agents could not authenticate as their nodes with pod certificates:
    the signer would not issue on the real API server (RBAC, status validation), or the
    listener would not read the issued certificate as the node."""
    node = world.nodes[0]
    pod = world.pod("agent-a", node, world.agent_sa)
    name, key = world.request(kubelets[node], pod)
    pcr = await world.answered(name)
    assert _condition(pcr)["type"] == "Issued", _condition(pcr)
    leaf = x509.load_pem_x509_certificates(pcr["status"]["certificateChain"].encode())[0]
    assert (
        leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
        == f"system:node:{node}"
    )
    assert [
        a.value for a in leaf.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)
    ] == ["node"]
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert lifetime.total_seconds() == 12 * 3600  # min(maxExpirationSeconds 24 h, max_lifetime)

    # The agent's output with that bundle, to a listener that requires client certificates.
    bundle = _bundle(tmp_path / "credential-bundle.pem", key, pcr["status"]["certificateChain"])
    docs: list[dict[str, Any]] = []
    normalizer = normalize.Normalizer(config.NormalizerConfig())

    async def deliver(batch: core.Batch) -> None:
        docs.extend(normalizer(event, batch.origin).record for event in batch.events)

    listener = config.ListenerConfig(
        tls={
            "enabled": True,
            "cert_file": world.server_cert[0],
            "key_file": world.server_cert[1],
            "ca_file": world.ca.ca_crt,
        },
        require_client_cert=True,
        unauthenticated="refuse",
    )
    server = transport.ForwardServer("127.0.0.1:0", listener, deliver)
    await server.start()
    try:
        out = transport.ForwardOutput(
            config.OutputConfig(
                url=f"forward+tls://127.0.0.1:{server.address[1]}",
                tls={"ca_file": world.ca.ca_crt, "credential_bundle_file": bundle},
                flush_interval=0.05,
            ),
            hostname="claims-to-be-elsewhere",
        )
        await out.start()
        record = {"log": "hello", "kubernetes": {"host": "claims-to-be-elsewhere"}}
        await out.send(core.Batch([core.Event("kube.var.log.containers.x", NS, record)]))
        await out.stop(10)
    finally:
        await server.stop(5)
    [stored] = docs
    doc = stored["doc"]
    assert (doc["host"]["name"], doc["kubernetes"]["node"]["name"]) == (node, node)
    assert doc["kloghub"]["sender"]["method"] == "certificate"
    assert doc["kloghub"]["claimed_host"] == "claims-to-be-elsewhere"


async def test_a_pod_of_another_service_account_is_denied_with_a_reason(world, kubelets, signer):
    """If this failed, any pod on a node could get a certificate naming that node (and send
    as it) by mounting the signer's volume."""
    node = world.nodes[0]
    pod = world.pod("other-a", node, world.other_sa)
    name, _ = world.request(kubelets[node], pod)
    pcr = await world.answered(name)
    cond = _condition(pcr)
    assert (cond["type"], cond["reason"]) == ("Denied", "ServiceAccountNotAllowed")
    assert world.other_sa in cond["message"]
    assert not pcr["status"].get("certificateChain")


async def test_a_node_cannot_request_a_certificate_for_a_pod_on_another_node(world, kubelets):
    """If this failed, a compromised node could obtain a certificate naming another node:
    the API server (NodeRestriction) would accept its request."""
    from kubernetes.client import exceptions

    pod_b = world.pod("agent-b", world.nodes[1], world.agent_sa)
    # node-a asks in node-b's name, then in its own name for node-b's pod.
    with pytest.raises(exceptions.ApiException) as as_other:
        world.request(kubelets[world.nodes[0]], pod_b)
    assert as_other.value.status == 403
    assert "not the requesting node" in str(as_other.value.body)
    with pytest.raises(exceptions.ApiException) as own_name:
        world.request(kubelets[world.nodes[0]], pod_b, node=world.nodes[0])
    assert own_name.value.status == 403
    assert "is not running on node" in str(own_name.value.body)


async def test_a_second_signer_loses_the_race_quietly(world, kubelets, signer):
    """If this failed, two collector replicas would fight over (or fail on) one request:
    the second update must be a conflict that is ignored, the first answer kept."""
    other = _signer.PodCertificateSigner(world.signer_config())
    await other.start()
    try:
        node = world.nodes[1]
        pod = world.pod("agent-race", node, world.agent_sa)
        name, _ = world.request(kubelets[node], pod)
        pcr = await world.answered(name)
        assert _condition(pcr)["type"] == "Issued"
        await asyncio.sleep(0.5)
    finally:
        await other.stop(5)
    assert signer.issued + other.issued == 1
