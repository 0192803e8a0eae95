"""Pytest plugin: a real Kubernetes control plane, etcd and kube-apiserver, for the session.

Loaded by the root conftest. The binaries are the ones ``scripts/get_kube.py`` builds from
the Go module proxy and caches (``make test`` runs it and exports ``KLOGHUB_KUBE_BIN``);
without them a test that asks for the ``kube`` fixture is skipped with instructions on a
developer machine and fails under ``CI=true``: CI never passes by skipping its servers.

One control plane per session, started on first use, always stopped (also when tests
fail, and, through ``PR_SET_PDEATHSIG``, when pytest itself is killed):

- **certificates** made with the ``openssl`` CLI in the session's temporary directory: a
  CA, the apiserver's serving certificate (``127.0.0.1``, ``localhost``), a ServiceAccount
  signing key, and an admin client certificate (group ``system:masters``);
- **etcd** on loopback, plain HTTP (it is reachable from this machine only, and the
  apiserver is its only client), ``--unsafe-no-fsync`` (the data dies with the session);
- **kube-apiserver** on ``https://127.0.0.1:<port>``: ``--authorization-mode=Node,RBAC``
  and the NodeRestriction admission plugin, ``--allow-privileged`` (as kubeadm sets both),
  anonymous requests allowed (as the binary's default: they reach RBAC, which refuses
  them), ServiceAccount tokens from the TokenRequest API, the audit policy the project
  ships (``forwarders/audit-policy.yaml``) and ``--audit-log-path`` to a file in JSON
  lines. No controller-manager, scheduler or kubelet: objects are stored and validated
  but nothing acts on them (no ReplicaSet makes pods, a namespace is never finalized,
  ``spec.nodeName`` is set by the tests, pods are deleted with a grace period of 0).

``python -m tests._kube`` starts it, prints the start times and a kubeconfig, and stops it
on Enter.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests._procs import free_port, terminate

REPO = Path(__file__).resolve().parents[1]
AUDIT_POLICY = REPO / "forwarders" / "audit-policy.yaml"
KUBE_BIN_VAR = "KLOGHUB_KUBE_BIN"
HOW_TO_GET = (
    "run `python3 scripts/get_kube.py` (builds kube-apiserver, etcd and kubectl once from the "
    "Go module proxy and caches them), or set KLOGHUB_KUBE_BIN to a directory holding them; "
    "`make test` does this"
)
ISSUER = "https://kubernetes.default.svc.cluster.local"
START_TIMEOUT_S = 120.0
_PR_SET_PDEATHSIG = 1


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def _get_kube() -> ModuleType:
    """scripts/get_kube.py as a module: the one place that names versions and paths."""
    spec = importlib.util.spec_from_file_location("_get_kube", REPO / "scripts" / "get_kube.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def find_binaries() -> tuple[Path | None, str]:
    """(the directory of kube-apiserver, etcd and kubectl, "") or (None, why not)."""
    get_kube = _get_kube()
    given = os.environ.get(KUBE_BIN_VAR, "").strip()
    directory = Path(given) if given else get_kube.bin_dir()
    wrong = get_kube.problems(directory)
    if wrong:
        where = f"{KUBE_BIN_VAR}={given}" if given else str(directory)
        return None, f"{where}: {'; '.join(wrong)}"
    return directory, ""


_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here: the child only makes the syscall


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    with contextlib.suppress(OSError, AttributeError):
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _openssl(*args: str | Path) -> None:
    result = subprocess.run(
        ["openssl", *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(map(str, args))} failed: {result.stderr}")


class Certificates:
    """A CA and what it signs, made with the openssl CLI (EC P-256 keys: quick to make)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.ca_crt = directory / "ca.crt"
        self.ca_key = directory / "ca.key"
        _openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", self.ca_key, "-out", self.ca_crt, "-days", "3",
            "-subj", "/CN=kloghub-test-ca",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip

    def issue(
        self, name: str, subject: str, *, usage: str, sans: str | None = None
    ) -> tuple[Path, Path]:
        """(certificate, key) for ``subject`` (``/CN=.../O=...``), signed by the CA."""
        crt, key = self.dir / f"{name}.crt", self.dir / f"{name}.key"
        args: list[str | Path] = [
            "req", "-x509", "-CA", self.ca_crt, "-CAkey", self.ca_key,
            "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", key, "-out", crt, "-days", "3", "-subj", subject,
            "-addext", "basicConstraints=critical,CA:FALSE",
            "-addext", "keyUsage=critical,digitalSignature,keyEncipherment",
            "-addext", f"extendedKeyUsage={usage}",
        ]  # fmt: skip
        if sans:
            args += ["-addext", f"subjectAltName={sans}"]
        _openssl(*args)
        return crt, key

    def signing_key(self, name: str) -> tuple[Path, Path]:
        """(private key, public key) for ServiceAccount tokens."""
        key, pub = self.dir / f"{name}.key", self.dir / f"{name}.pub"
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
        _openssl("pkey", "-in", key, "-pubout", "-out", pub)
        return key, pub


class _Process:
    """One server process, its output in a log file."""

    def __init__(self, name: str, argv: list[str], log: Path) -> None:
        self.name = name
        self.argv = argv
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - one syscall, no lock taken
            )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, size: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-size:]
        return ""

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None:
            return
        terminate(self.proc, timeout)
        self.proc = None


class ControlPlane:
    """etcd and kube-apiserver on loopback ports, with what a test needs to talk to them."""

    def __init__(self, bindir: Path, workdir: Path) -> None:
        self.bindir = bindir
        self.dir = workdir
        self.etcd_port = free_port()
        self.etcd_peer_port = free_port()
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.etcd_url = f"http://127.0.0.1:{self.etcd_port}"
        self.audit_log = workdir / "audit" / "audit.log"
        self.admin_kubeconfig = workdir / "admin.kubeconfig"
        self.webhook_port = free_port()
        """Where the apiserver posts audit batches (kept: a collector started there gets them)."""
        self.webhook_kubeconfig = workdir / "audit-webhook.kubeconfig"
        self.timings: dict[str, float] = {}
        self._etcd: _Process | None = None
        self._apiserver: _Process | None = None
        self._admin: Any = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> ControlPlane:
        started = time.monotonic()
        self.certs = Certificates(self.dir / "pki")
        self.serving = self.certs.issue(
            "apiserver",
            "/CN=kube-apiserver",
            usage="serverAuth",
            sans="IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc",
        )
        self.admin_cert = self.certs.issue(
            "admin", "/CN=kloghub-admin/O=system:masters", usage="clientAuth"
        )
        self.sa_key = self.certs.signing_key("sa")
        # The audit webhook: the apiserver's client certificate (role control-plane) and
        # the serving certificate a collector on webhook_port presents.
        self.webhook_client = self.certs.issue(
            "webhook-client", "/CN=kube-apiserver/O=control-plane", usage="clientAuth"
        )
        self.webhook_serving = self.certs.issue(
            "webhook", "/CN=kloghub-collector", usage="serverAuth", sans="IP:127.0.0.1"
        )
        self.timings["certificates_s"] = time.monotonic() - started
        self.audit_log.parent.mkdir(parents=True, exist_ok=True)
        self._write_kubeconfig(
            self.webhook_kubeconfig,
            {
                "client-certificate": str(self.webhook_client[0]),
                "client-key": str(self.webhook_client[1]),
            },
            server=f"https://127.0.0.1:{self.webhook_port}/audit",
        )
        self._write_kubeconfig(
            self.admin_kubeconfig,
            {
                "client-certificate": str(self.admin_cert[0]),
                "client-key": str(self.admin_cert[1]),
            },
        )
        self._start_etcd()
        self._start_apiserver()
        self.timings["total_s"] = time.monotonic() - started
        return self

    def stop(self) -> None:
        if self._admin is not None:
            with contextlib.suppress(Exception):
                self._admin.close()
            self._admin = None
        for proc in (self._apiserver, self._etcd):
            if proc is not None:
                proc.stop()

    def restart_apiserver(self) -> None:
        """Stop and start kube-apiserver alone (etcd keeps its data): its watch cache starts
        again from etcd's current revision."""
        assert self._apiserver is not None
        self._apiserver.stop()
        if self._admin is not None:
            with contextlib.suppress(Exception):
                self._admin.close()
            self._admin = None
        self._start_apiserver()

    def _start_etcd(self) -> None:
        started = time.monotonic()
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        self._etcd = _Process(
            "etcd",
            [
                str(self.bindir / "etcd"),
                "--name=kloghub-test",
                f"--data-dir={self.dir / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=kloghub-test={peer}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
            self.dir / "etcd.log",
        )
        self._etcd.start()
        self._wait(self._etcd, lambda: self._get(self.etcd_url + "/health", tls=False))
        self.timings["etcd_s"] = time.monotonic() - started

    def _start_apiserver(self) -> None:
        started = time.monotonic()
        ca = self.certs.ca_crt
        self._apiserver = _Process(
            "kube-apiserver",
            [
                str(self.bindir / "kube-apiserver"),
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.port}",
                f"--cert-dir={self.dir / 'apiserver-certs'}",
                f"--tls-cert-file={self.serving[0]}",
                f"--tls-private-key-file={self.serving[1]}",
                f"--client-ca-file={ca}",
                f"--service-account-issuer={ISSUER}",
                f"--service-account-key-file={self.sa_key[1]}",
                f"--service-account-signing-key-file={self.sa_key[0]}",
                "--service-cluster-ip-range=10.96.0.0/16",
                # The kubernetes Service may not point at a loopback address: no reconciler.
                "--endpoint-reconciler-type=none",
                "--authorization-mode=Node,RBAC",
                # As kubeadm runs it: a node (system:node:<name>) may only create
                # PodCertificateRequests (and mirror pods, ...) for its own pods.
                "--enable-admission-plugins=NodeRestriction",
                # As kubeadm and the managed services run it: privileged pods are accepted
                # (and audited), so the tests see what a real cluster records for them.
                "--allow-privileged=true",
                f"--audit-policy-file={AUDIT_POLICY}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json",
                # And the webhook backend, to webhook_port (nobody listens there until a
                # test starts a collector: batches fail fast, retry briefly, are dropped).
                f"--audit-webhook-config-file={self.webhook_kubeconfig}",
                "--audit-webhook-mode=batch",
                "--audit-webhook-batch-max-wait=500ms",
                "--audit-webhook-initial-backoff=200ms",
                # Priority and fairness would create its flow schemas at every start: work
                # the tests do not look at, on machines with two cores.
                "--enable-priority-and-fairness=false",
                "--profiling=false",
                "--v=0",
            ],
            self.dir / "kube-apiserver.log",
        )
        self._apiserver.start()
        self._wait(self._apiserver, lambda: self._get(self.url + "/readyz"))
        self.timings["apiserver_s"] = time.monotonic() - started
        self.ensure_namespace("default")

    def _wait(self, proc: _Process, ready: Any) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        last = ""
        while time.monotonic() < deadline:
            if not proc.running():
                raise RuntimeError(f"{proc.name} exited at start:\n{proc.tail()}")
            try:
                status = ready()
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            else:
                if status == 200:
                    return
                last = f"HTTP {status}"
            time.sleep(0.2)
        raise RuntimeError(
            f"{proc.name} not ready in {START_TIMEOUT_S:.0f} s ({last}):\n{proc.tail()}"
        )

    # ------------------------------------------------------------------ HTTP

    def ssl_context(self, client_cert: bool = True) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.certs.ca_crt))
        if client_cert:
            ctx.load_cert_chain(str(self.admin_cert[0]), str(self.admin_cert[1]))
        return ctx

    def _get(self, url: str, *, tls: bool = True) -> int:
        context = self.ssl_context() if tls else None
        try:
            with urllib.request.urlopen(url, timeout=5, context=context) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        anonymous: bool = False,
        body: Any = None,
    ) -> tuple[int, Any]:
        """(status, decoded JSON body) of one request as admin, as a bearer ``token``, or
        anonymously (no credentials at all)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        context = self.ssl_context(client_cert=token is None and not anonymous)
        try:
            with urllib.request.urlopen(req, timeout=30, context=context) as resp:
                status, raw = int(resp.status), resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = int(exc.code), exc.read()
        try:
            return status, json.loads(raw) if raw else None
        except json.JSONDecodeError:
            return status, raw.decode(errors="replace")

    # ------------------------------------------------------------------ clients

    def _write_kubeconfig(
        self, path: Path, user: dict[str, str], server: str | None = None
    ) -> Path:
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "kloghub-test",
                    "cluster": {
                        "server": server or self.url,
                        "certificate-authority": str(self.certs.ca_crt),
                    },
                }
            ],
            "users": [{"name": "user", "user": user}],
            "contexts": [{"name": "test", "context": {"cluster": "kloghub-test", "user": "user"}}],
            "current-context": "test",
        }
        path.write_text(yaml.safe_dump(doc))
        path.chmod(0o600)
        return path

    def token_kubeconfig(self, path: Path, token: str, server: str | None = None) -> Path:
        """A kubeconfig that authenticates with a bearer token (a ServiceAccount's), to the
        apiserver or to ``server`` (a proxy in front of it: the serving certificate is
        for 127.0.0.1)."""
        return self._write_kubeconfig(path, {"token": token}, server)

    def cert_kubeconfig(self, path: Path, cert: Path, key: Path) -> Path:
        """A kubeconfig that authenticates with a client certificate of :attr:`certs`."""
        return self._write_kubeconfig(
            path, {"client-certificate": str(cert), "client-key": str(key)}
        )

    def node_client(self, node: str) -> Any:
        """A ``kubernetes.client.ApiClient`` authenticated as the kubelet of ``node``
        (``system:node:<node>``, group ``system:nodes``: the Node authorizer and
        NodeRestriction apply); the caller closes it."""
        from kubernetes import client, config

        cert, key = self.certs.issue(
            f"node-{node}", f"/O=system:nodes/CN=system:node:{node}", usage="clientAuth"
        )
        path = self.cert_kubeconfig(self.dir / f"node-{node}.kubeconfig", cert, key)
        conf = client.Configuration()
        config.load_kube_config(config_file=str(path), client_configuration=conf)
        return client.ApiClient(conf)

    def admin(self) -> Any:
        """A ``kubernetes.client.ApiClient`` authenticated as a cluster admin."""
        if self._admin is None:
            from kubernetes import client, config

            conf = client.Configuration()
            config.load_kube_config(
                config_file=str(self.admin_kubeconfig), client_configuration=conf
            )
            self._admin = client.ApiClient(conf)
        return self._admin

    def core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self.admin())

    def ensure_namespace(
        self,
        name: str,
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
    ) -> None:
        """The namespace, with the ``default`` ServiceAccount that pods need (there is no
        controller-manager to create it)."""
        from kubernetes import client

        core = self.core()
        with contextlib.suppress(client.ApiException):
            core.create_namespace(
                client.V1Namespace(
                    metadata=client.V1ObjectMeta(name=name, labels=labels, annotations=annotations)
                )
            )
        with contextlib.suppress(client.ApiException):
            core.create_namespaced_service_account(
                name, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="default"))
            )

    def service_account_token(self, namespace: str, name: str, seconds: int = 3600) -> str:
        """A token of the ServiceAccount from the TokenRequest API (as the kubelet gets the
        one it mounts into a pod)."""
        from kubernetes import client

        answer = self.core().create_namespaced_service_account_token(
            name,
            namespace,
            client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(audiences=[ISSUER], expiration_seconds=seconds)
            ),
        )
        return str(answer.status.token)

    def kubectl(self, *args: str, kubeconfig: Path | None = None, stdin: str | None = None) -> str:
        result = subprocess.run(
            [
                str(self.bindir / "kubectl"),
                f"--kubeconfig={kubeconfig or self.admin_kubeconfig}",
                *args,
            ],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result.stdout

    # ------------------------------------------------------------------ etcd

    def etcd(self, call: str, body: dict[str, Any]) -> dict[str, Any]:
        """One call of etcd's v3 JSON gateway (``kv/range``, ``kv/compaction``, ...)."""
        req = urllib.request.Request(
            f"{self.etcd_url}/v3/{call}", data=json.dumps(body).encode(), method="POST"
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            answer: dict[str, Any] = json.loads(resp.read())
        return answer

    def etcd_revision(self) -> int:
        return int(self.etcd("kv/range", {"key": "AA=="})["header"]["revision"])

    def compact_etcd(self) -> int:
        """Compact etcd's history up to now (as the apiserver does every 5 minutes): a
        resourceVersion older than the returned revision is gone."""
        revision = self.etcd_revision()
        self.etcd("kv/compaction", {"revision": str(revision), "physical": True})
        return revision

    # ------------------------------------------------------------------ audit

    def audit_events(self) -> list[dict[str, Any]]:
        """Every complete line of the audit log so far, decoded."""
        text = self.audit_log.read_text() if self.audit_log.exists() else ""
        complete = text.split("\n")[:-1]  # the last piece is "" or a line still being written
        return [json.loads(line) for line in complete if line.strip()]


def _unavailable(reason: str) -> None:
    message = f"the Kubernetes control plane is not available: {reason}. {HOW_TO_GET}."
    if _in_ci():
        pytest.fail(
            f"{message} (CI=true: a missing server is a failure, not a skip)", pytrace=False
        )
    pytest.skip(message)


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """etcd + kube-apiserver for the session (see the module docstring), stopped at its end."""
    bindir, why = find_binaries()
    if bindir is None:
        _unavailable(why)
    assert bindir is not None
    plane = ControlPlane(bindir, tmp_path_factory.mktemp("kube"))
    try:
        plane.start()
    except Exception as exc:
        plane.stop()
        pytest.fail(f"the Kubernetes control plane did not start: {exc}", pytrace=False)
    try:
        yield plane
    finally:
        plane.stop()


def _main() -> int:
    import tempfile

    bindir, why = find_binaries()
    if bindir is None:
        print(why, file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="kloghub-kube-") as tmp:
        plane = ControlPlane(bindir, Path(tmp))
        try:
            plane.start()
            print(json.dumps({k: round(v, 2) for k, v in plane.timings.items()}))
            print(f"KUBECONFIG={plane.admin_kubeconfig}  (Enter stops it)")
            with contextlib.suppress(EOFError, KeyboardInterrupt):
                input()
        finally:
            plane.stop()
    return 0


if __name__ == "__main__":
    sys.exit(_main())
