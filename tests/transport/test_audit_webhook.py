"""The audit webhook input: mutual TLS with a role, EventList bodies only, and an answer
only once the batch is stored (the API server's side is in tests/kube/test_audit_webhook.py)."""

from __future__ import annotations

import asyncio
import ssl

import aiohttp
import orjson
import pytest

from kloghub import config, core, transport
from kloghub.runtime import metrics
from tests._kube import Certificates
from tests._procs import free_port

EVENT = {  # as an EventList's item: no kind and apiVersion of its own
    "auditID": "w-1",
    "stage": "ResponseComplete",
    "verb": "get",
    "requestURI": "/api/v1/namespaces/shop/secrets/db",
    "user": {"username": "system:serviceaccount:shop:reader"},
    "stageTimestamp": "2026-12-03T09:00:00.000001Z",
}


def event_list(*items) -> bytes:
    return orjson.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items})


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> dict:
    ca = Certificates(tmp_path_factory.mktemp("pki"))
    return {
        "ca": ca.ca_crt,
        "server": ca.issue("server", "/CN=collector", usage="serverAuth", sans="IP:127.0.0.1"),
        "apiserver": ca.issue("cp", "/CN=kube-apiserver/O=control-plane", usage="clientAuth"),
        "node": ca.issue("node", "/CN=node-1/O=node", usage="clientAuth"),
    }


class Store:
    """A deliver that records batches, and can hold them or fail."""

    def __init__(self) -> None:
        self.batches: list[core.Batch] = []
        self.hold = asyncio.Event()
        self.hold.set()
        self.fail = False

    async def __call__(self, batch: core.Batch) -> None:
        await self.hold.wait()
        if self.fail:
            raise OSError("disk full")
        self.batches.append(batch)


@pytest.fixture
async def webhook(certs):
    store = Store()
    port = free_port()
    cfg = config.AuditWebhookConfig(
        enabled=True,
        listen=f"127.0.0.1:{port}",
        cert_file=certs["server"][0],
        key_file=certs["server"][1],
        client_ca_file=certs["ca"],
        max_body_bytes=64 * 1024,
    )
    hook = transport.AuditWebhook(cfg, store)
    await hook.start()
    try:
        yield hook, store, f"https://127.0.0.1:{port}/audit"
    finally:
        await hook.stop(5)


def client_ssl(certs, who: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(certs["ca"]))
    if who is not None:
        ctx.load_cert_chain(str(certs[who][0]), str(certs[who][1]))
    return ctx


async def post(url: str, ctx: ssl.SSLContext, body: bytes) -> tuple[int, dict]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, ssl=ctx, headers={"Content-Type": "application/json"}) as r,
    ):
        return r.status, await r.json(content_type=None)


def refused(reason: str) -> float:
    return metrics.AUDIT_WEBHOOK_REFUSED.labels(reason=reason)._value.get()


async def test_an_event_list_from_the_control_plane_is_stored_as_audit_records(webhook, certs):
    """If this failed, the API server's webhook batches would not reach the normalizer as the
    records of tailed audit lines, with the certificate's identity as their origin."""
    _, store, url = webhook
    status, _ = await post(url, client_ssl(certs, "apiserver"), event_list(EVENT, EVENT))
    assert status == 200
    (batch,) = store.batches
    assert [e.tag for e in batch.events] == ["audit", "audit"]
    assert orjson.loads(batch.events[0].record["log"]) == {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        **EVENT,
    }
    assert batch.origin.identity == "kube-apiserver"
    assert batch.origin.may_send_audit
    assert batch.events[0].time_ns == 1_796_288_400_000_001_000  # the stage's time


async def test_the_answer_waits_until_the_batch_is_stored(webhook, certs):
    """If this failed, the API server would drop batches the collector had not yet stored."""
    _, store, url = webhook
    store.hold.clear()
    sent = asyncio.create_task(post(url, client_ssl(certs, "apiserver"), event_list(EVENT)))
    await asyncio.sleep(0.3)
    assert not sent.done()  # no answer while the store is holding the batch
    store.hold.set()
    assert (await sent)[0] == 200
    store.fail = True
    before = refused("store_failed")
    assert (await post(url, client_ssl(certs, "apiserver"), event_list(EVENT)))[0] == 503
    assert refused("store_failed") == before + 1


async def test_a_certificate_without_the_role_is_refused_before_the_body(webhook, certs):
    """If this failed, any node's certificate could inject audit events (forged evidence)."""
    _, store, url = webhook
    before = refused("role")
    status, answer = await post(url, client_ssl(certs, "node"), event_list(EVENT))
    assert status == 403
    assert "roles" in answer["error"]
    assert refused("role") == before + 1
    assert not store.batches


async def test_a_client_without_a_certificate_does_not_get_past_tls(webhook, certs):
    """If this failed, anyone reaching the port could post audit events."""
    _, store, url = webhook
    with pytest.raises(aiohttp.ClientError):
        await post(url, client_ssl(certs, None), event_list(EVENT))
    assert not store.batches


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b'{"kind": "Event"}', 400, "not_an_event_list"),
        (b"not json", 400, "not_an_event_list"),
        (event_list(*[EVENT] * 400), 413, "too_large"),
    ],
)
async def test_bodies_that_are_not_event_lists_are_refused_and_counted(
    webhook, certs, body, status, reason
):
    """If this failed, a malformed or oversized batch would crash the input or be stored."""
    _, store, url = webhook
    before = refused(reason)
    assert (await post(url, client_ssl(certs, "apiserver"), body))[0] == status
    assert refused(reason) == before + 1
    assert not store.batches


def test_the_webhook_needs_its_certificates_at_load():
    """If this failed, an audit webhook without mutual TLS could be configured."""
    with pytest.raises(ValueError, match="client_ca_file"):
        config.AuditWebhookConfig(enabled=True)
