"""The pod certificate signer's settings and decisions that need no API server (the flow
itself is proved on the real one: tests/kube/test_pod_certificates.py)."""

from __future__ import annotations

import base64
import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError

from kloghub import config, core
from kloghub.collector import _signer
from tests._kube import Certificates

NOW = datetime.datetime(2026, 12, 3, 12, 0, 0, 500000, tzinfo=datetime.UTC)


@pytest.fixture(scope="module")
def ca(tmp_path_factory) -> Certificates:
    return Certificates(tmp_path_factory.mktemp("signer-ca"))


def settings(ca: Certificates, **overrides) -> config.PodCertificatesConfig:
    base = {
        "enabled": True,
        "namespace": "kloghub",
        "service_accounts": {"kloghub-agent": ["node"], "kloghub-cp": ["node", "control-plane"]},
        "ca_cert_file": ca.ca_crt,
        "ca_key_file": ca.ca_key,
    }
    return config.PodCertificatesConfig(**{**base, **overrides})


def request(sa: str = "kloghub-agent", max_seconds: int = 86400, **spec) -> dict:
    key = ec.generate_private_key(ec.SECP256R1())
    stub = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    der = stub.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    return {
        "metadata": {"name": "r", "generation": 1, "resourceVersion": "7"},
        "spec": {
            "signerName": "kloghub.io/forward-agent",
            "serviceAccountName": sa,
            "nodeName": "worker-1",
            "maxExpirationSeconds": max_seconds,
            "stubPKCS10Request": base64.b64encode(der).decode(),
            **spec,
        },
    }


def test_enabled_without_a_ca_or_service_accounts_is_refused_at_load():
    """If this failed, a signer could be switched on that can issue nothing, found only
    when the first agent waits for its certificate."""
    with pytest.raises(ValidationError, match="ca_cert_file, ca_key_file"):
        config.PodCertificatesConfig(enabled=True, namespace="n", service_accounts={"a": []})
    with pytest.raises(ValidationError, match="service_accounts"):
        config.PodCertificatesConfig(enabled=True, namespace="n", ca_cert_file="c", ca_key_file="k")


def test_a_ca_key_that_is_not_the_certificates_is_a_config_error(ca, tmp_path):
    """If this failed, the signer would issue certificates no listener trusts."""
    other = Certificates(tmp_path / "other")
    with pytest.raises(core.ConfigError, match="not the key of ca_cert_file"):
        _signer.Issuer(settings(ca, ca_key_file=other.ca_key))


def test_the_control_plane_agent_gets_both_roles_and_the_shorter_lifetime_wins(ca):
    """If this failed, the control-plane agent could not send audit records (its roles
    are the O names), or a request asking for less than max_lifetime would get more."""
    issuer = _signer.Issuer(settings(ca))
    outcome, status = issuer.answer(request("kloghub-cp", max_seconds=7200), NOW)
    assert outcome == "Issued"
    leaf, ca_cert = x509.load_pem_x509_certificates(status["certificateChain"].encode())
    orgs = leaf.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)
    assert [a.value for a in orgs] == ["node", "control-plane"]
    assert leaf.issuer == ca_cert.subject
    assert (leaf.not_valid_after_utc - leaf.not_valid_before_utc).total_seconds() == 7200
    # The times the API server checks: whole seconds, as in the certificate.
    assert status["notBefore"] == "2026-12-03T11:59:00Z"
    assert status["notAfter"] == "2026-12-03T13:59:00Z"
    assert status["beginRefreshAt"] == "2026-12-03T13:35:00Z"
    usage = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]


def test_user_annotations_and_broken_requests_are_denied(ca):
    """If this failed, the signer would issue for requests it does not understand."""
    issuer = _signer.Issuer(settings(ca))
    outcome, status = issuer.answer(request(unverifiedUserAnnotations={"x.io/a": "b"}), NOW)
    assert (outcome, status["conditions"][0]["reason"]) == ("Denied", "UnknownUserAnnotations")
    outcome, status = issuer.answer(request(stubPKCS10Request="AAAA"), NOW)
    assert (outcome, status["conditions"][0]["reason"]) == ("Denied", "UnsupportedRequest")
    assert set(status) == {"conditions"}  # a denial carries nothing else
