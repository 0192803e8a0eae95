"""The collector's signer of pod certificates: each agent pod's client certificate names
its node (``collector.pod_certificates``, see :class:`config.PodCertificatesConfig`).

The flow (``certificates.k8s.io/v1``, Kubernetes 1.37):

1. The kubelet makes a key for a pod with a ``podCertificate`` projected volume and creates
   a PodCertificateRequest: ``spec.signerName``, the pod, its ServiceAccount and node
   (names and UIDs), ``maxExpirationSeconds`` and ``stubPKCS10Request``, a CSR signed by
   the new key (the proof of possession; the API server checks its signature). The
   NodeRestriction admission plugin lets a node create requests only for pods bound to
   it, of the ServiceAccount they run as: ``spec.nodeName`` is the node that asked.
2. This signer lists and watches the requests of its namespace and signer name, and
   answers each one that has no terminal condition yet by updating its ``status``:
   ``Issued`` with the certificate chain and its times, or ``Denied`` with a reason.
3. The kubelet writes the key and the chain into the pod's volume, and asks again from
   ``beginRefreshAt`` on.

The certificate: subject ``CN=system:node:<spec.nodeName>``, ``O=<role>`` for each role of
the ServiceAccount, extended key usage clientAuth, the CSR's public key (its subject and
extensions are ignored), valid from a minute ago for min(``maxExpirationSeconds``,
``max_lifetime``). The listener reads the CN as the node and the O names as roles.

Several collectors may sign at once, without a leader: each update carries the
``resourceVersion`` it read, so the first one wins and the others get ``409 Conflict``
(ignored: the request is answered). A request whose update failed otherwise is tried
again after a backoff, a few times, and at every relist. The update is a merge patch of
``status`` (RBAC verb ``patch`` on ``podcertificaterequests/status``).
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import importlib
import logging
import os
from pathlib import Path
from typing import Any

import orjson
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kloghub import config, core, enrich

__all__ = ["Issuer", "PodCertificateSigner"]

_log = logging.getLogger("kloghub.collector")

_GROUP_PATH = "/apis/certificates.k8s.io/v1"
_TERMINAL = frozenset({"Issued", "Denied", "Failed"})
_BACKDATE = datetime.timedelta(seconds=60)
"""Clock skew between the collector and the listeners that verify the certificate (the
API server accepts a ``notBefore`` within 5 minutes of its time)."""
_REFRESH_AT = 0.8
_UPDATE_ATTEMPTS = 5
_IN_CLUSTER_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"  # noqa: S105 - a path
_WATCH_BACKOFF = config.RetryConfig(initial_backoff=1.0, max_backoff=30.0)

_Answer = tuple[str, dict[str, Any]]
"""("Issued" or "Denied", the new status)."""


class _DeniedError(Exception):
    """A request that is answered Denied: ``reason`` (CamelCase) and a sentence."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(
    kind: str, reason: str, message: str, now: datetime.datetime, generation: Any
) -> dict[str, Any]:
    cond: dict[str, Any] = {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastTransitionTime": _time(now),
    }
    if isinstance(generation, int):
        cond["observedGeneration"] = generation
    return cond


def answered(pcr: dict[str, Any]) -> bool:
    """True when the request already has Issued, Denied or Failed."""
    conditions = (pcr.get("status") or {}).get("conditions") or ()
    return any(c.get("type") in _TERMINAL for c in conditions if isinstance(c, dict))


class Issuer:
    """The decision and the certificate for one request; pure (the CA is read at build)."""

    def __init__(self, cfg: config.PodCertificatesConfig) -> None:
        assert cfg.ca_cert_file is not None and cfg.ca_key_file is not None
        try:
            self.ca_pem = cfg.ca_cert_file.read_bytes()
            self._ca = x509.load_pem_x509_certificate(self.ca_pem)
            key = serialization.load_pem_private_key(cfg.ca_key_file.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise core.ConfigError(
                [f"collector.pod_certificates: cannot load the CA: {type(exc).__name__}: {exc}"]
            ) from None
        if not isinstance(
            key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
        ):
            raise core.ConfigError(
                ["collector.pod_certificates: the CA key is not RSA, EC or Ed25519"]
            )
        if key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ) != self._ca.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ):
            raise core.ConfigError(
                ["collector.pod_certificates: ca_key_file is not the key of ca_cert_file"]
            )
        self._key = key
        self._roles = {sa: list(roles) for sa, roles in cfg.service_accounts.items()}
        self._max_lifetime = int(cfg.max_lifetime)
        self.signer_name = cfg.signer_name

    def answer(self, pcr: dict[str, Any], now: datetime.datetime) -> _Answer:
        """The status that answers ``pcr`` (a PodCertificateRequest as JSON) at ``now``."""
        spec = pcr.get("spec") or {}
        generation = (pcr.get("metadata") or {}).get("generation")
        account = str(spec.get("serviceAccountName") or "")
        node = str(spec.get("nodeName") or "")

        try:
            roles, public = self._check(spec, account, node)
        except _DeniedError as denied:
            cond = _condition("Denied", denied.reason, denied.message, now, generation)
            return "Denied", {"conditions": [cond]}
        asked = spec.get("maxExpirationSeconds")
        lifetime = (
            min(int(asked), self._max_lifetime) if isinstance(asked, int) else self._max_lifetime
        )
        not_before = now.replace(microsecond=0) - _BACKDATE
        not_after = not_before + datetime.timedelta(seconds=lifetime)
        refresh = not_before + datetime.timedelta(seconds=int(lifetime * _REFRESH_AT))
        chain = self._certificate(public, node, roles, not_before, not_after) + self.ca_pem
        status = {
            "conditions": [
                _condition(
                    "Issued",
                    "Issued",
                    f"a client certificate for node {node} with roles {', '.join(roles) or '-'}",
                    now,
                    generation,
                )
            ],
            "certificateChain": chain.decode(),
            "notBefore": _time(not_before),
            "beginRefreshAt": _time(refresh),
            "notAfter": _time(not_after),
        }
        return "Issued", status

    def _check(self, spec: dict[str, Any], account: str, node: str) -> tuple[list[str], Any]:
        """(roles, public key) of a request to issue; raises _DeniedError."""
        roles = self._roles.get(account)
        if roles is None:
            raise _DeniedError(
                "ServiceAccountNotAllowed",
                f"the ServiceAccount {account!r} is not one whose pods get {self.signer_name} "
                "certificates (collector.pod_certificates.service_accounts)",
            )
        if not node:
            raise _DeniedError("NoNode", "the request names no node")
        if spec.get("unverifiedUserAnnotations"):
            raise _DeniedError(
                "UnknownUserAnnotations", "this signer reads no userAnnotations; remove them"
            )
        try:
            csr = x509.load_der_x509_csr(base64.b64decode(spec.get("stubPKCS10Request") or ""))
            valid = csr.is_signature_valid
            public = csr.public_key()
        except (ValueError, TypeError):
            raise _DeniedError(
                "UnsupportedRequest", "spec.stubPKCS10Request is not a PKCS#10 request"
            ) from None
        if not valid:
            raise _DeniedError("InvalidProofOfPossession", "the request's CSR signature is invalid")
        if isinstance(public, ed448.Ed448PublicKey) or not isinstance(
            public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
        ):
            raise _DeniedError("UnsupportedKey", "the key is not RSA, ECDSA or Ed25519")
        return roles, public

    def _certificate(
        self,
        public: Any,
        node: str,
        roles: list[str],
        not_before: datetime.datetime,
        not_after: datetime.datetime,
    ) -> bytes:
        subject = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, role) for role in roles]
        subject.append(x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node}"))
        usage_encipher = isinstance(public, rsa.RSAPublicKey)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(subject))
            .issuer_name(self._ca.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=usage_encipher,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._ca.public_key()),  # type: ignore[arg-type]
                critical=False,
            )
        )
        algorithm = None if isinstance(self._key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
        cert = builder.sign(self._key, algorithm)
        return cert.public_bytes(serialization.Encoding.PEM)


def _api_client(kubeconfig: Path | None) -> Any:
    from kubernetes import client

    kconfig: Any = importlib.import_module("kubernetes.config")
    conf = client.Configuration()
    if kubeconfig is not None:
        kconfig.load_kube_config(
            config_file=str(kubeconfig), client_configuration=conf, persist_config=False
        )
    elif os.environ.get("KUBERNETES_SERVICE_HOST") and Path(_IN_CLUSTER_TOKEN).exists():
        kconfig.load_incluster_config(client_configuration=conf)
    else:
        kconfig.load_kube_config(client_configuration=conf, persist_config=False)
    conf.retries = False
    return client.ApiClient(conf)


class PodCertificateSigner(core.Service):
    """Answers the PodCertificateRequests of one namespace and signer name."""

    name = "pod-certificate-signer"

    def __init__(self, cfg: config.PodCertificatesConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.issuer = Issuer(cfg)  # the CA is checked at build: a ConfigError, not a crash
        self._path = f"{_GROUP_PATH}/namespaces/{cfg.namespace}/podcertificaterequests"
        self._api: Any = None
        self._certificates: Any = None
        self._watch: enrich.ListWatch | None = None
        self._busy: set[str] = set()
        self.issued = 0
        self.denied = 0
        self.conflicts = 0

    # ------------------------------------------------------------------ lifecycle

    async def _on_start(self) -> None:
        from kubernetes import client

        self._api = await asyncio.to_thread(_api_client, self.cfg.kubeconfig)
        self._certificates = client.CertificatesV1Api(self._api)
        self._watch = enrich.ListWatch(
            "podcertificaterequests",
            self._list_call,
            asyncio.get_running_loop(),
            on_list=self._listed,
            on_event=self._event,
            retry=_WATCH_BACKOFF,
            field_selector=f"spec.signerName={self.cfg.signer_name}",
            permission_hint=(
                "list and watch on podcertificaterequests in namespace " + self.cfg.namespace
            ),
        )
        self._watch.start()

    async def _on_close(self) -> None:
        if self._watch is not None:
            self._watch.stop()
            deadline = asyncio.get_running_loop().time() + 2.0
            while self._watch.alive and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        if self._api is not None:
            self._api.close()
            self._api = None

    # ------------------------------------------------------------------ API calls (threads)

    def _list_call(self, **kwargs: Any) -> Any:
        return self._certificates.list_namespaced_pod_certificate_request(
            self.cfg.namespace, **kwargs
        )

    def _patch_status(self, name: str, version: str, status: dict[str, Any]) -> None:
        """A merge patch of the status that carries the resourceVersion read: the API
        server applies it only to that version (else 409 Conflict)."""
        resp = self._certificates.patch_namespaced_pod_certificate_request_status(
            name,
            self.cfg.namespace,
            {"metadata": {"resourceVersion": version}, "status": status},
            _content_type="application/merge-patch+json",
            _preload_content=False,
            _request_timeout=(10.0, 30.0),
        )
        resp.release_conn()

    # ------------------------------------------------------------------ on the loop

    def _listed(self, items: list[Any]) -> None:
        for pcr in items:
            self._consider(pcr)

    def _event(self, kind: str, pcr: Any) -> None:
        if kind in ("ADDED", "MODIFIED"):
            self._consider(pcr)

    def _consider(self, pcr: Any) -> None:
        if not isinstance(pcr, dict) or answered(pcr):
            return
        name = (pcr.get("metadata") or {}).get("name")
        if not name or name in self._busy:
            return
        if (pcr.get("spec") or {}).get("signerName") != self.cfg.signer_name:
            return
        self._busy.add(name)
        self.spawn(f"answer/{name}", self._answer(pcr))

    async def _answer(self, pcr: dict[str, Any]) -> None:
        from kubernetes.client import exceptions

        name = pcr["metadata"]["name"]
        spec = pcr.get("spec") or {}
        fields = {
            "request": name,
            "namespace": self.cfg.namespace,
            "node": spec.get("nodeName"),
            "service_account": spec.get("serviceAccountName"),
        }
        try:
            for attempt in range(1, _UPDATE_ATTEMPTS + 1):
                outcome, status = self.issuer.answer(pcr, datetime.datetime.now(datetime.UTC))
                version = str(pcr["metadata"].get("resourceVersion") or "")
                try:
                    await asyncio.to_thread(self._patch_status, name, version, status)
                except exceptions.ApiException as exc:
                    if exc.status == 409:
                        self.conflicts += 1  # another collector answered first, or it changed
                        _log.debug("pod certificate request answered elsewhere", extra=fields)
                        return
                    if exc.status == 404:
                        return  # deleted meanwhile
                    problem = _message(exc)
                    if exc.status in (400, 403, 422):
                        _log.error(
                            "the API server refused the answer to a pod certificate request "
                            "(a 403 names the missing sign permission)",
                            extra={**fields, "error": problem},
                        )
                        return
                except Exception as exc:  # noqa: BLE001 - connection errors: retried
                    problem = f"{type(exc).__name__}: {exc}"
                else:
                    if outcome == "Issued":
                        self.issued += 1
                        _log.info("pod certificate issued", extra=fields)
                    else:
                        self.denied += 1
                        _log.warning(
                            "pod certificate request denied",
                            extra={**fields, "reason": status["conditions"][0]["message"]},
                        )
                    return
                wait = min(_WATCH_BACKOFF.max_backoff, _WATCH_BACKOFF.initial_backoff * 2**attempt)
                _log.warning(
                    "could not answer a pod certificate request; retrying",
                    extra={**fields, "error": problem, "attempt": attempt, "retry_in_s": wait},
                )
                await asyncio.sleep(wait)
        finally:
            self._busy.discard(name)


def _message(exc: Any) -> str:
    try:
        doc = orjson.loads(exc.body or b"")
        detail = doc.get("message", "") if isinstance(doc, dict) else ""
    except (orjson.JSONDecodeError, TypeError):
        detail = ""
    return f"{exc.status} {exc.reason}" + (f": {detail}" if detail else "")
