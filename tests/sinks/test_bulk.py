"""Bulk encoding and classification, and the two official clients against a scripted server.

The real Elasticsearch and OpenSearch cannot be made to answer 429 or 401 on demand; the
scripted ``BulkServer`` can, and both official clients talk to it as to the real thing.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
from pathlib import Path
from typing import Any

import orjson
import pytest

from kloghub import config, core, sinks
from kloghub.sinks import _bulk

from ._fakes import BulkServer, error_response
from ._support import FAST_RETRY, MemoryDeadLetters, Settled, doc

TAG = "logs-kubernetes.container_logs-shop"


def test_an_event_becomes_a_create_with_its_id_into_its_data_stream():
    """If this failed, resent events would be indexed twice (index instead of create, no _id)."""
    event = core.Event(TAG, 1, {"id": "abc", "doc": {"message": "hi", "raw": b"\xff"}})
    action, document, end = _bulk.encode(event).split(b"\n")
    assert orjson.loads(action) == {"create": {"_index": TAG, "_id": "abc"}}
    assert orjson.loads(document) == {"message": "hi", "raw": "\ufffd"}
    assert end == b""


def test_item_statuses_are_classified():
    """If this failed, duplicates (409) would be dead-lettered or conflicts retried forever."""
    body = {
        "errors": True,
        "items": [
            {"create": {"status": 201}},
            {"create": {"status": 409, "error": {"type": "version_conflict_engine_exception"}}},
            {"create": {"status": 429, "error": {"type": "es_rejected_execution_exception"}}},
            {"create": {"status": 503, "error": {"type": "unavailable_shards_exception"}}},
            {
                "create": {
                    "status": 400,
                    "error": {
                        "type": "document_parsing_exception",
                        "reason": "failed to parse field [n]",
                        "caused_by": {"type": "illegal_argument_exception", "reason": "For input"},
                    },
                }
            },
            {"create": {"status": 404, "error": {"type": "index_not_found_exception"}}},
        ],
    }
    outcome = _bulk.outcome(body, 6, retry_after=2.0)
    assert list(outcome.retry) == [2, 3]
    assert set(outcome.refused) == {4, 5}
    refusal = outcome.refused[4]
    assert refusal.error == "document_parsing_exception"
    assert refusal.status == 400
    assert refusal.reason == (
        "document_parsing_exception: failed to parse field [n] "
        "(caused by illegal_argument_exception: For input)"
    )
    assert outcome.retry_after == 2.0


def test_an_answer_that_does_not_list_every_item_is_retried():
    """If this failed, a truncated answer would settle items the server never confirmed."""
    with pytest.raises(core.RetryableError):
        _bulk.outcome({"errors": True, "items": [{"create": {"status": 201}}]}, 2)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (429, core.RetryableError),
        (502, core.RetryableError),
        (408, core.RetryableError),
        (400, sinks.SplitError),
        (413, sinks.SplitError),
        (401, sinks.FatalError),
        (403, sinks.FatalError),
        (404, sinks.FatalError),
    ],
)
def test_whole_request_statuses_are_classified(status: int, kind: type[Exception]):
    """If this failed, bad credentials would dead-letter data or overload would drop it."""
    assert isinstance(_bulk.request_error(status, "x", None), kind)


PRODUCTS = ["elasticsearch", "opensearch"]


def bulk_sink(product: str, server: BulkServer, dead: Any = None, **settings: Any) -> sinks.Sink:
    settings.setdefault("retry", FAST_RETRY)
    settings.setdefault("flush_interval", 0.02)
    cfg = config.SinkConfig(url=f"{product}+http://127.0.0.1:{server.port}", **settings)
    return sinks.build(cfg, dead if dead is not None else MemoryDeadLetters())


async def deliver(sink: sinks.Sink, settled: Settled, n: int) -> None:
    await sink.start()
    try:
        await sink.send(core.Batch(settled.event(TAG, f"d{i}", doc(i)) for i in range(n)))
        await settled.wait_for(n)
    finally:
        await sink.stop(5)


@pytest.mark.parametrize("product", PRODUCTS)
async def test_a_throttled_request_waits_for_retry_after_then_succeeds(
    product: str, server: BulkServer
):
    """If this failed, a 429 from the cluster would lose the batch or be retried at once."""

    def throttle_first(number: int, _ops: Any) -> Any:
        if number == 0:
            return error_response(429, "es_rejected_execution_exception", {"Retry-After": "1"})
        return None

    server.request_script = throttle_first
    settled = Settled()
    sink = bulk_sink(product, server, retry={"initial_backoff": 0.001, "max_backoff": 5})
    await deliver(sink, settled, 3)
    assert settled.count(core.Delivery.DELIVERED) == 3
    first, second = server.requests[:2]
    if product == "elasticsearch":  # the OpenSearch client does not expose answer headers
        assert second["time"] - first["time"] >= 0.95
    assert len(server.docs) == 3


@pytest.mark.parametrize("product", PRODUCTS)
async def test_throttled_items_alone_are_resent(product: str, server: BulkServer):
    """If this failed, one rejected item would make its whole batch go over the wire again."""
    throttled = {"d1", "d4"}

    def throttle(target: dict[str, Any], _doc: Any) -> Any:
        if target["_id"] in throttled:
            throttled.discard(target["_id"])
            return 429, {"type": "es_rejected_execution_exception", "reason": "queue full"}
        return None

    server.item_script = throttle
    settled = Settled()
    await deliver(bulk_sink(product, server, batch_max_records=6), settled, 6)
    assert [r["items"] for r in server.requests] == [6, 2]
    assert settled.count(core.Delivery.DELIVERED) == 6


@pytest.mark.parametrize("product", PRODUCTS)
async def test_refused_credentials_fail_readiness_and_keep_the_data(
    product: str, server: BulkServer
):
    """If this failed, an expired password would dead-letter everything or keep /readyz green."""
    refuse = True

    def auth(_number: int, _ops: Any) -> Any:
        return error_response(401, "security_exception") if refuse else None

    server.request_script = auth
    settled = Settled()
    sink = bulk_sink(product, server, retry={"initial_backoff": 0.01, "max_backoff": 0.3})
    await sink.start()
    try:
        await sink.send(core.Batch([settled.event(TAG, "d0", doc(0))]))
        async with asyncio.timeout(5):
            while sink.problem() is None:
                await asyncio.sleep(0.01)
        assert "401" in (sink.problem() or "")
        assert not settled.status
        refuse = False
        await settled.wait_for(1)
        assert sink.problem() is None
    finally:
        await sink.stop(5)


def test_opensearch_refuses_an_api_key_at_construction():
    """If this failed, an Elasticsearch API key would be sent to OpenSearch and refused later."""
    cfg = config.SinkConfig(url="opensearch+https://os:9200", api_key="abc")
    with pytest.raises(core.ConfigError, match="api_key"):
        sinks.build(cfg, MemoryDeadLetters())


def test_build_refuses_schemes_it_does_not_serve():
    """If this failed, a file: sink could be handed to the SIEM sink factory and fail at start."""
    assert not sinks.handles("file:/tmp/x")
    with pytest.raises(core.ConfigError):
        sinks.build(config.SinkConfig(url="file:/tmp/x"), MemoryDeadLetters())


@pytest.mark.parametrize("product", PRODUCTS)
async def test_credentials_never_appear_in_logs(
    product: str, server: BulkServer, caplog: pytest.LogCaptureFixture
):
    """If this failed, anyone with access to the collector's logs could log into the SIEM."""
    server.request_script = lambda n, _ops: error_response(503, "unavailable") if n == 0 else None
    settled = Settled()
    sink = bulk_sink(product, server, username="kloghub", password="pa55-w0rd-s3cret")
    with caplog.at_level(logging.DEBUG):
        await deliver(sink, settled, 2)
    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "HTTP 503" in text
    assert "pa55-w0rd-s3cret" not in text
    assert base64.b64encode(b"kloghub:pa55-w0rd-s3cret").decode() not in text


@pytest.mark.parametrize("product", PRODUCTS)
async def test_https_with_the_configured_ca_file(product: str, self_signed: tuple[Path, Path]):
    """If this failed, a cluster behind a private CA could not be reached over TLS."""
    cert, key = self_signed
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    tls_server = BulkServer()
    await tls_server.start(ssl_context=context)
    try:
        cfg = config.SinkConfig(
            url=f"{product}+https://127.0.0.1:{tls_server.port}",
            tls={"ca_file": str(cert)},
            flush_interval=0.02,
            retry=FAST_RETRY,
        )
        settled = Settled()
        await deliver(sinks.build(cfg, MemoryDeadLetters()), settled, 3)
    finally:
        await tls_server.stop()
    assert len(tls_server.docs) == 3


@pytest.mark.parametrize("product", PRODUCTS)
async def test_nothing_is_indexed_before_the_templates_are_installed(
    product: str, server: BulkServer
) -> None:
    """If this failed, the first events after a collector start could create a data
    stream before its template exists, with dynamic mappings for good (seen on
    Elasticsearch: keyword fields mapped as text, the alert fields untyped)."""
    server.put_delay = 0.3
    settled = Settled()
    await deliver(bulk_sink(product, server), settled, 5)
    assert server.puts and server.requests
    last_template = max(t for t, path in server.puts if path.startswith("/_index_template"))
    assert server.requests[0]["time"] >= last_template
