"""The Splunk HEC sink against the HEC test server: envelopes, codes, splits, indexer acks."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from kloghub import config, core, runtime, sinks
from kloghub.runtime import metrics
from tests import _hec

from ._support import FAST_RETRY, NS, MemoryDeadLetters, Settled, counter, doc

CONTAINERS = "logs-kubernetes.container_logs-shop"
AUDIT = "logs-kubernetes.audit_logs-default"
NODE = "logs-kubernetes.node_logs-default"


@pytest_asyncio.fixture
async def hec() -> AsyncIterator[_hec.HecServer]:
    server = await _hec.started(
        tokens={"good-token": _hec.Token(), "ack-token": _hec.Token(ack=True)}
    )
    try:
        yield server
    finally:
        await server.stop()


def hec_sink(
    server: _hec.HecServer,
    dead: MemoryDeadLetters | None = None,
    token: str = "good-token",
    **settings: Any,
) -> sinks.SplunkHecSink:
    kw = {k: settings.pop(k) for k in ("ack_interval", "ack_timeout") if k in settings}
    kw.setdefault("ack_interval", 0.02)
    settings.setdefault("retry", FAST_RETRY)
    settings.setdefault("flush_interval", 0.02)
    cfg = config.SinkConfig(
        url=f"splunk-hec+http://127.0.0.1:{server.port}", token=token, **settings
    )
    return sinks.SplunkHecSink(cfg, dead if dead is not None else MemoryDeadLetters(), **kw)


def events(settled: Settled, n: int, tag: str = CONTAINERS, start: int = 0) -> core.Batch:
    return core.Batch(settled.event(tag, f"d{i}", doc(i), NS + i) for i in range(start, start + n))


async def run(sink: sinks.SplunkHecSink, batch: core.Batch, settled: Settled) -> None:
    await sink.start()
    try:
        await sink.send(batch)
        await settled.wait_for(len(batch))
    finally:
        await sink.stop(5)


async def test_envelopes_carry_time_host_source_sourcetype_index_and_fields(hec: _hec.HecServer):
    """If this failed, Splunk searches by sourcetype, pod or time would not find kloghub events."""
    settled = Settled()
    sink = hec_sink(hec, index="k8s")
    batch = core.Batch(
        [
            settled.event(CONTAINERS, "c", doc(1), NS),
            settled.event(AUDIT, "a", {"@timestamp": "x", "kubernetes": {"audit": {}}}, NS),
            settled.event(NODE, "n", {"host": {"name": "node-7"}, "message": "kubelet"}, NS),
            settled.event("logs-kloghub.alerts-default", "x", {"event": {"kind": "alert"}}, NS),
        ]
    )
    await run(sink, batch, settled)
    container, audit, node, alert = hec.events
    assert container["time"] == pytest.approx(1_700_000_000.123457, abs=1e-6)
    assert container["host"] == "node-1"
    assert container["source"] == "/var/log/pods/shop_web-1_uid/web/0.log"
    assert container["sourcetype"] == "kube:container:web"
    assert container["index"] == "k8s"
    assert container["event"] == doc(1)
    assert container["fields"] == {
        "namespace": "shop",
        "pod": "web-1",
        "container": "web",
        "node": "node-1",
    }
    assert audit["sourcetype"] == "kube:apiserver:audit"
    assert node["sourcetype"] == "kube:node"
    assert node["host"] == "node-7"
    assert alert["sourcetype"] == "kloghub:alert"
    assert settled.count(core.Delivery.DELIVERED) == 4


async def test_requests_are_gzipped_and_carry_the_token(hec: _hec.HecServer):
    """If this failed, HEC would refuse the requests or the link would carry 10x the bytes."""
    settled = Settled()
    await run(hec_sink(hec), events(settled, 5), settled)
    [request] = hec.requests
    assert request["authorization"] == "Splunk good-token"
    assert request["content_encoding"] == "gzip"
    assert request["events"] == 5


@pytest.mark.parametrize("code", [8, 9, 18, 19, 20, 23, 26, 27])
async def test_retryable_codes_are_retried_until_delivered(hec: _hec.HecServer, code: int):
    """If this failed, a busy or restarting Splunk would lose or dead-letter events."""
    hec.fail_next(code, count=2)
    settled = Settled()
    before = counter(metrics.RECORDS_RETRIED, "splunk_hec")
    await run(hec_sink(hec), events(settled, 4), settled)
    assert settled.count(core.Delivery.DELIVERED) == 4
    assert [r["code"] for r in hec.requests] == [code, code, 0]
    assert len(hec.events) == 4
    assert counter(metrics.RECORDS_RETRIED, "splunk_hec") - before == 8


async def test_retry_after_from_hec_is_honoured(hec: _hec.HecServer):
    """If this failed, a HEC at capacity (429) would be hammered instead of given its pause."""
    hec.fail_next(26, retry_after="1")
    settled = Settled()
    await run(
        hec_sink(hec, retry={"initial_backoff": 0.001, "max_backoff": 5}),
        events(settled, 1),
        settled,
    )
    first, second = hec.requests
    assert second["time"] - first["time"] >= 0.95


@pytest.mark.parametrize(("code", "token"), [(1, "off"), (2, None), (3, None), (4, "unknown")])
async def test_token_errors_stop_sending_and_fail_readiness(
    hec: _hec.HecServer, code: int, token: str | None
):
    """If this failed, a revoked HEC token would lose data or leave /readyz green."""
    hec.tokens["off"] = _hec.Token(enabled=False)
    if token is None:  # no header, or another scheme: what a broken proxy in between does
        hec.fail_next(code)
    settled = Settled()
    sink = hec_sink(
        hec, token=token or "good-token", retry={"initial_backoff": 0.01, "max_backoff": 0.4}
    )
    readiness = runtime.Readiness()
    readiness.started = True
    readiness.add(sink.name, sink.problem)
    await sink.start()
    try:
        await sink.send(events(settled, 3))
        async with asyncio.timeout(5):
            while sink.problem() is None:
                await asyncio.sleep(0.01)
        assert f"HEC code {code}" in readiness.problems()[sink.name]
        await asyncio.sleep(0.2)
        assert [r["code"] for r in hec.requests] == [code]  # paused, not hammering
        assert not settled.status
        # The operator fixes the token: the next probe delivers and readiness recovers.
        sink._auth = "Splunk good-token"
        await settled.wait_for(3)
        assert readiness.problems() == {}
    finally:
        await sink.stop(5)
    assert settled.count(core.Delivery.DELIVERED) == 3


@pytest.mark.parametrize("code", [6, 12, 13, 15])
@pytest.mark.parametrize("position", ["hinted", "bisected"])
async def test_a_bad_event_is_isolated_by_splitting_and_dead_lettered(
    hec: _hec.HecServer, code: int, position: str
):
    """If this failed, one event HEC refuses would block its batch or duplicate its mates."""
    hec.reject_when(lambda envelope: envelope["event"].get("n") == 5, code)
    if position == "bisected":
        # Without invalid-event-number the sink must bisect on its own.
        original = hec._answer

        def no_hint(code: int, **extra: Any):
            extra.pop("invalid-event-number", None)
            return original(code, **extra)

        hec._answer = no_hint  # type: ignore[method-assign]
    dead = MemoryDeadLetters()
    settled = Settled()
    await run(hec_sink(hec, dead, batch_max_records=16), events(settled, 16), settled)
    assert dead.ids() == ["d5"]
    [(_sink_name, refused)] = dead.entries
    assert refused.error == f"hec_code_{code}"
    assert f"HEC code {code}" in refused.reason
    assert settled.status["d5"] is core.Delivery.REJECTED
    assert settled.count(core.Delivery.DELIVERED) == 15
    stored = sorted(e["event"]["n"] for e in hec.events)
    assert stored == [i for i in range(16) if i != 5]  # each once


async def test_indexer_ack_settles_events_only_when_acknowledged(hec: _hec.HecServer):
    """If this failed, events would leave the queue before Splunk indexed them (lost on a crash)."""
    hec.hold_acks()
    settled = Settled()
    sink = hec_sink(hec, token="ack-token", indexer_ack=True, batch_max_records=2)
    await sink.start()
    try:
        await sink.send(events(settled, 6))
        async with asyncio.timeout(5):
            while len(hec.events) < 6 or len(hec.ack_queries) < 2:
                await asyncio.sleep(0.01)
        assert not settled.status  # accepted (HTTP 200) but not yet acknowledged
        channels = {r["channel"] for r in hec.requests}
        assert len(channels) == 1 and None not in channels
        hec.release_acks()
        await settled.wait_for(6)
        await asyncio.sleep(0.1)  # a few more poll intervals
    finally:
        await sink.stop(5)
    assert settled.count(core.Delivery.DELIVERED) == 6
    assert sorted(hec.acks_reported_true) == [0, 1, 2]
    # An id that came back true is never asked about again.
    for ack_id in hec.acks_reported_true:
        asked = [i for i, ids in enumerate(hec.ack_queries) if ack_id in ids]
        true_at = max(asked)
        assert asked == list(range(asked[0], true_at + 1))


async def test_an_ack_that_never_comes_resends_the_request(hec: _hec.HecServer):
    """If this failed, events whose ack Splunk lost would sit in the queue forever."""
    hec.lose_acks = True
    settled = Settled()
    sink = hec_sink(hec, token="ack-token", indexer_ack=True, ack_timeout=0.2)
    await sink.start()
    try:
        await sink.send(events(settled, 2))
        async with asyncio.timeout(5):
            while len(hec.requests) < 2:
                await asyncio.sleep(0.01)
        hec.lose_acks = False
        await settled.wait_for(2)
    finally:
        await sink.stop(5)
    assert settled.count(core.Delivery.DELIVERED) == 2
    assert len(hec.events) >= 4  # at-least-once: HEC holds the resent copies too


async def test_an_ack_id_handed_out_again_after_a_restart_resends_the_old_request(
    hec: _hec.HecServer,
):
    """If this failed, a Splunk restart would make new acks confirm old, unindexed requests."""
    hec.hold_acks()
    settled = Settled()
    sink = hec_sink(hec, token="ack-token", indexer_ack=True, batch_max_records=1)
    await sink.start()
    try:
        await sink.send(events(settled, 1, start=0))
        async with asyncio.timeout(5):
            while len(hec.events) < 1:
                await asyncio.sleep(0.01)
        hec.restart()  # forgets ack id 0 of the first request
        await sink.send(events(settled, 1, start=1))  # gets ack id 0 again
        async with asyncio.timeout(5):
            while len(hec.events) < 3:  # the first request was sent again
                await asyncio.sleep(0.01)
        hec.release_acks()
        await settled.wait_for(2)
    finally:
        await sink.stop(5)
    assert settled.count(core.Delivery.DELIVERED) == 2


async def test_a_token_requiring_acks_without_indexer_ack_is_a_readiness_problem(
    hec: _hec.HecServer,
):
    """If this failed, a token/config mismatch would retry silently, not say what to fix."""
    settled = Settled()
    sink = hec_sink(
        hec, token="ack-token", indexer_ack=False, retry={"initial_backoff": 0.01, "max_backoff": 5}
    )
    await sink.start()
    try:
        await sink.send(events(settled, 1))
        async with asyncio.timeout(5):
            while sink.problem() is None:
                await asyncio.sleep(0.01)
    finally:
        await sink.stop(0.1)
    problem = sink.problem()
    assert problem is not None and "indexer_ack: true" in problem
    assert not settled.status


async def test_start_checks_health_and_does_not_fail_on_an_unhealthy_hec(
    hec: _hec.HecServer, caplog: pytest.LogCaptureFixture
):
    """If this failed, a collector would not start while Splunk is briefly unhealthy."""
    hec.unhealthy = True
    sink = hec_sink(hec)
    with caplog.at_level(logging.INFO, logger="kloghub.sinks.splunk"):
        await sink.start()
        await asyncio.sleep(0.1)
        await sink.stop(5)
    assert any("reports a problem" in r.message and r.code == 18 for r in caplog.records)


async def test_the_token_never_appears_in_logs(
    hec: _hec.HecServer, caplog: pytest.LogCaptureFixture
):
    """If this failed, anyone with log access could send data to the customer's Splunk."""
    hec.fail_next(9)
    hec.tokens["s3cr3t-t0ken"] = _hec.Token(enabled=False)
    settled = Settled()
    sink = hec_sink(hec, token="s3cr3t-t0ken", retry={"initial_backoff": 0.01, "max_backoff": 0.1})
    with caplog.at_level(logging.DEBUG):
        await sink.start()
        await sink.send(events(settled, 1))
        await asyncio.sleep(0.3)
        await sink.stop(0.1)
    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "HEC code" in text
    assert "s3cr3t-t0ken" not in text


def test_a_hec_sink_without_a_token_is_refused_at_construction():
    """If this failed, a missing token would only show up as 401s after start."""
    cfg = config.SinkConfig(url="splunk-hec+https://hec:8088")
    with pytest.raises(core.ConfigError, match="token"):
        sinks.SplunkHecSink(cfg, MemoryDeadLetters())


@pytest.mark.parametrize("trust", ["ca_file", "verify_off", "untrusted"])
async def test_https_verifies_the_server_with_the_configured_ca(
    self_signed: tuple[Path, Path], trust: str
):
    """If this failed, the sink would talk to an impostor HEC, or refuse the one it should trust."""
    cert, key = self_signed
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = _hec.HecServer()
    await server.start(ssl_context=context)
    tls = {"ca_file": str(cert)} if trust == "ca_file" else {}
    if trust == "verify_off":
        tls["verify"] = False
    settled = Settled()
    cfg = config.SinkConfig(
        url=f"splunk-hec+https://127.0.0.1:{server.port}",
        token="good-token",
        tls=tls,
        flush_interval=0.02,
        retry=FAST_RETRY,
    )
    sink = sinks.SplunkHecSink(cfg, MemoryDeadLetters())
    await sink.start()
    try:
        await sink.send(events(settled, 2))
        if trust == "untrusted":
            await asyncio.sleep(0.3)
            assert not settled.status and not server.events
        else:
            await settled.wait_for(2)
            assert len(server.events) == 2
    finally:
        await sink.stop(0.2)
        await server.stop()
