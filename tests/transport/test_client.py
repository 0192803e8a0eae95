"""The agent's forward output: chunks, acks, resends, failover, TLS, back-pressure, drain."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
from collections.abc import Callable

import pytest

from kloghub import config, core, transport
from kloghub.runtime import metrics

protocol = transport.protocol
NS = 1_700_000_000_123_456_789
FAST_RETRY = {"initial_backoff": 0.02, "max_backoff": 0.2}


def k8s_record(i: int, namespace: str = "shop") -> dict[str, object]:
    return {
        "log": f"2024-05-01T10:00:00Z INFO request {i} served in 3ms",
        "stream": "stdout",
        "time": "2024-05-01T10:00:00.123456789Z",
        "kubernetes": {
            "pod_name": "web-6d4cf56db6-x2x7q",
            "namespace_name": namespace,
            "pod_id": "3f1c8a6e-6a43-4a1e-9a51-8f2b9b1b7c11",
            "labels": {"app": "web"},
            "annotations": {},
            "host": "node-1",
            "container_name": "web",
            "docker_id": "a" * 64,
            "container_image": "nginx:1.25",
            "container_hash": "sha256:" + "b" * 64,
        },
        "kloghub": {"file": "/var/log/pods/x/web/0.log", "offset": i * 200, "partial": False},
        "raw": b"\xff\x00",
    }


def output_config(server_or_port: object, **settings: object) -> config.OutputConfig:
    port = server_or_port if isinstance(server_or_port, int) else server_or_port.address[1]  # type: ignore[attr-defined]
    scheme = "forward+tls" if "tls" in settings else "forward"
    settings.setdefault("retry", FAST_RETRY)
    settings.setdefault("flush_interval", 0.05)
    return config.OutputConfig(url=f"{scheme}://127.0.0.1:{port}", **settings)


class Settled:
    """One finalizer per event, so that every event's fate is visible."""

    def __init__(self) -> None:
        self.status: dict[int, core.Delivery] = {}

    def event(self, tag: str, i: int, record: dict[str, object] | None = None) -> core.Event:
        return core.Event(
            tag, NS + i, record or k8s_record(i), core.Finalizer(self._done(i), count=1)
        )

    def _done(self, i: int) -> Callable[[core.Delivery], None]:
        return lambda status: self.status.__setitem__(i, status)

    async def wait(self, count: int, timeout: float = 15.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.status) < count:
                await asyncio.sleep(0.01)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Inspector:
    """A Forward server written for the tests: records requests; acks when ``ack`` says so."""

    def __init__(self, ack: Callable[[protocol.Request, int], bool] = lambda r, n: True) -> None:
        self.ack = ack
        self.requests: list[protocol.Request] = []
        self.copies: collections.Counter[object] = collections.Counter()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> Inspector:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = protocol.StreamDecoder(64 << 20)
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                decoder.feed(data)
                for value, size in decoder.frames():
                    request = protocol.decode_request(value, size, 64 << 20)
                    if request is None:
                        continue
                    self.requests.append(request)
                    self.copies[request.chunk] += 1
                    if self.ack(request, self.copies[request.chunk]):
                        writer.write(protocol.encode_ack(request.chunk))
        writer.close()


def counter(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("compress", ["none", "gzip"])
async def test_events_reach_the_server_with_fields_and_nanoseconds_intact(
    start_server, store, compress
):
    """If this failed, agent → collector would alter records, tags or times on the way."""
    server = await start_server()
    out = transport.ForwardOutput(output_config(server, compress=compress))
    await out.start()
    settled = Settled()
    tags = ["kube.shop.web.web", "node.syslog", "audit"]
    sent = [settled.event(tags[i % 3], i) for i in range(300)]
    for start in range(0, 300, 50):
        await out.send(core.Batch(sent[start : start + 50]))
    await out.stop(10)
    assert set(settled.status.values()) == {core.Delivery.DELIVERED}
    assert len(settled.status) == 300
    received = sorted(store.events, key=lambda e: e.time_ns)
    assert [(e.tag, e.time_ns, e.record) for e in received] == [
        (e.tag, e.time_ns, e.record) for e in sent
    ]


@pytest.mark.parametrize("compress", ["none", "gzip"])
async def test_each_tag_travels_as_its_own_chunk_with_size_and_id(compress):
    """If this failed, Fluentd/Fluent Bit aggregators could not ack or count our chunks."""
    inspector = await Inspector().start()
    out = transport.ForwardOutput(output_config(inspector.port, compress=compress))
    await out.start()
    settled = Settled()
    await out.send(core.Batch(settled.event(f"tag.{i % 2}", i) for i in range(10)))
    await out.stop(10)
    await inspector.stop()
    mode = "compressed_packed_forward" if compress == "gzip" else "packed_forward"
    assert sorted((r.tag, r.mode, r.size_option) for r in inspector.requests) == [
        ("tag.0", mode, 5),
        ("tag.1", mode, 5),
    ]
    ids = [r.chunk for r in inspector.requests]
    assert all(isinstance(i, str) and len(i) == 24 for i in ids) and len(set(ids)) == 2


async def test_batches_are_cut_by_count_and_flushed_by_time():
    """If this failed, chunks would grow without bound or small trickles never be sent."""
    inspector = await Inspector().start()
    out = transport.ForwardOutput(
        output_config(inspector.port, batch_max_records=10, flush_interval=0.2)
    )
    await out.start()
    settled = Settled()
    await out.send(core.Batch(settled.event("t", i) for i in range(25)))
    await settled.wait(20)
    assert [r.size_option for r in inspector.requests] == [10, 10]
    await settled.wait(25, timeout=5)
    assert [r.size_option for r in inspector.requests] == [10, 10, 5]
    await out.stop(5)
    await inspector.stop()


async def test_batches_are_cut_by_bytes():
    """If this failed, large records would make chunks bigger than the collector accepts."""
    inspector = await Inspector().start()
    out = transport.ForwardOutput(output_config(inspector.port, batch_max_bytes=4096))
    await out.start()
    settled = Settled()
    await out.send(core.Batch(settled.event("t", i, {"log": "x" * 1000}) for i in range(10)))
    await out.stop(5)
    await inspector.stop()
    assert sum(r.size_option or 0 for r in inspector.requests) == 10
    assert len(inspector.requests) == 3  # 4 KiB holds three 1 KiB records


# --------------------------------------------------------------------------- at-least-once


async def test_unacknowledged_chunk_is_resent_with_the_same_id_after_ack_timeout():
    """If this failed, a chunk whose ack was lost would never be delivered."""
    inspector = await Inspector(ack=lambda request, copy: copy >= 2).start()
    out = transport.ForwardOutput(output_config(inspector.port, ack_timeout=0.3))
    await out.start()
    settled = Settled()
    retried = counter("kloghub_records_retried_total", output="forward")
    await out.send(core.Batch(settled.event("t", i) for i in range(3)))
    await settled.wait(3)
    await out.stop(5)
    await inspector.stop()
    [(chunk, copies)] = inspector.copies.items()
    assert copies == 2 and chunk is not None
    assert set(settled.status.values()) == {core.Delivery.DELIVERED}
    assert counter("kloghub_records_retried_total", output="forward") == retried + 3


async def test_server_killed_while_sending_then_restarted_loses_nothing(store):
    """If this failed, a collector restart during shipping would lose acknowledged lines."""
    port = free_port()
    listen = f"127.0.0.1:{port}"
    listener = config.ListenerConfig()
    server = transport.ForwardServer(listen, listener, store)
    await server.start()
    out = transport.ForwardOutput(
        output_config(port, batch_max_records=50, ack_timeout=2), max_in_flight_chunks=4
    )
    await out.start()
    settled = Settled()
    total = 3000

    async def produce() -> None:
        for start in range(0, total, 100):
            await out.send(
                core.Batch(settled.event("kube.a.b.c", i) for i in range(start, start + 100))
            )
            await asyncio.sleep(0.005)

    retried = counter("kloghub_records_retried_total", output="forward")
    store.delay = 0.02  # keeps chunks in flight when the server dies
    producing = asyncio.create_task(produce())
    await store.wait_for(500)
    await server.stop(0)  # hard stop: in-flight requests are cut, acks lost
    await asyncio.sleep(0.3)
    server = transport.ForwardServer(listen, listener, store)
    await server.start()
    await producing
    await settled.wait(total, timeout=30)
    await out.stop(5)
    await server.stop(5)
    assert set(settled.status.values()) == {core.Delivery.DELIVERED}
    received = collections.Counter(e.time_ns - NS for e in store.events)
    assert set(received) == set(range(total))
    duplicates = sum(received.values()) - total
    assert duplicates >= 0  # at-least-once: a few duplicates are allowed, no loss
    assert counter("kloghub_records_retried_total", output="forward") > retried


async def test_chunk_is_dropped_and_counted_after_max_attempts():
    """If this failed, retry.max_attempts would be ignored and a poison chunk block forever."""
    inspector = await Inspector(ack=lambda request, copy: False).start()
    retry = {**FAST_RETRY, "max_attempts": 2}
    out = transport.ForwardOutput(output_config(inspector.port, ack_timeout=0.2, retry=retry))
    await out.start()
    settled = Settled()
    dropped = counter("kloghub_records_dropped_total", reason="retries_exhausted")
    await out.send(core.Batch(settled.event("t", i) for i in range(4)))
    await settled.wait(4)
    assert set(settled.status.values()) == {core.Delivery.DROPPED}
    assert counter("kloghub_records_dropped_total", reason="retries_exhausted") == dropped + 4
    await out.stop(5)
    await inspector.stop()


# --------------------------------------------------------------------------- upstreams


async def test_chunks_are_spread_over_upstreams_and_fail_over_when_one_dies(start_server):
    """If this failed, one collector replica would take all the load or its death lose data."""
    first_store, second_store = [], []

    async def first(batch: core.Batch) -> None:
        first_store.extend(batch)

    async def second(batch: core.Batch) -> None:
        second_store.extend(batch)

    server_a = await start_server(deliver=first)
    server_b = await start_server(deliver=second)
    out = transport.ForwardOutput(
        [output_config(server_a), output_config(server_b)], max_in_flight_chunks=4
    )
    await out.start()
    settled = Settled()
    for start in range(0, 400, 10):
        await out.send(core.Batch(settled.event(f"t.{i % 4}", i) for i in range(start, start + 10)))
    await settled.wait(400)
    assert first_store and second_store
    await server_a.stop(0)
    for start in range(400, 600, 10):
        await out.send(core.Batch(settled.event(f"t.{i % 4}", i) for i in range(start, start + 10)))
    await settled.wait(600)
    await out.stop(5)
    assert set(settled.status.values()) == {core.Delivery.DELIVERED}
    assert {e.time_ns - NS for e in first_store + second_store} == set(range(600))


async def test_send_waits_while_the_in_flight_window_is_full(start_server):
    """If this failed, a slow collector would make the agent buffer without bound."""
    gate = asyncio.Event()
    stored: list[core.Event] = []

    async def slow(batch: core.Batch) -> None:
        await gate.wait()
        stored.extend(batch)

    server = await start_server(deliver=slow)
    out = transport.ForwardOutput(
        output_config(server, batch_max_records=10), max_in_flight_chunks=2
    )
    await out.start()
    settled = Settled()
    sending = asyncio.create_task(out.send(core.Batch(settled.event("t", i) for i in range(100))))
    await asyncio.sleep(0.3)
    assert not sending.done()
    assert out.unacknowledged <= 100
    gate.set()
    await asyncio.wait_for(sending, 10)
    await out.stop(10)
    assert len(settled.status) == 100 and len(stored) == 100


# --------------------------------------------------------------------------- auth and TLS


async def test_output_completes_the_shared_key_and_password_handshake(start_server, store):
    """If this failed, agents could not ship to a collector that requires a shared key."""
    server = await start_server(
        shared_key="s3cret", users=[{"username": "node-1", "password": "pw"}]
    )
    out = transport.ForwardOutput(
        output_config(server, shared_key="s3cret", username="node-1", password="pw")
    )
    await out.start()
    settled = Settled()
    await out.send(core.Batch(settled.event("t", i) for i in range(5)))
    await out.stop(10)
    assert list(settled.status.values()) == [core.Delivery.DELIVERED] * 5


async def test_output_with_a_wrong_shared_key_delivers_nothing_and_keeps_trying(
    start_server, store, caplog
):
    """If this failed, a misconfigured agent would report success for data nobody stored."""
    server = await start_server(shared_key="s3cret")
    out = transport.ForwardOutput(output_config(server, shared_key="wrong"))
    await out.start()
    settled = Settled()
    with caplog.at_level(logging.WARNING, logger="kloghub.transport"):
        await out.send(core.Batch([settled.event("t", 0)]))
        await asyncio.sleep(0.5)
        await out.stop(0.2)
    assert settled.status == {} and store.events == []
    assert any("shared_key" in str(getattr(r, "error", "")) for r in caplog.records)


async def test_output_over_mutual_tls(start_server, store, certs):
    """If this failed, forward+tls:// with client certificates would not work."""
    server = await start_server(
        tls={
            "enabled": True,
            "cert_file": certs.server_cert,
            "key_file": certs.server_key,
            "ca_file": certs.ca,
        },
        require_client_cert=True,
    )
    tls = {"ca_file": certs.ca, "cert_file": certs.client_cert, "key_file": certs.client_key}
    out = transport.ForwardOutput(output_config(server, tls=tls, compress="gzip"))
    await out.start()
    settled = Settled()
    await out.send(core.Batch(settled.event("t", i) for i in range(5)))
    await out.stop(10)
    assert list(settled.status.values()) == [core.Delivery.DELIVERED] * 5
    assert [e.time_ns for e in store.events] == [NS + i for i in range(5)]


# --------------------------------------------------------------------------- drain


async def test_stop_sends_what_it_holds_and_waits_for_the_acks(start_server, store):
    """If this failed, SIGTERM on the agent would drop the lines it had batched."""
    server = await start_server()
    out = transport.ForwardOutput(output_config(server, flush_interval=3600))
    await out.start()
    settled = Settled()
    await out.send(core.Batch(settled.event("t", i) for i in range(42)))
    assert settled.status == {}
    await out.stop(10)
    assert list(settled.status.values()) == [core.Delivery.DELIVERED] * 42
    assert len(store.events) == 42


async def test_stop_with_an_unreachable_upstream_leaves_events_unsettled_in_time():
    """If this failed, a dead collector would block agent shutdown or fake acks."""
    out = transport.ForwardOutput(output_config(free_port()))
    await out.start()
    settled = Settled()
    await out.send(core.Batch(settled.event("t", i) for i in range(5)))
    await asyncio.wait_for(out.stop(0.3), 5)
    assert settled.status == {}
    assert out.unacknowledged == 5


async def test_unencodable_record_is_dropped_and_counted_alone(start_server, store):
    """If this failed, one odd record would block or lose the whole batch."""
    server = await start_server()
    out = transport.ForwardOutput(output_config(server))
    await out.start()
    settled = Settled()
    dropped = counter("kloghub_records_dropped_total", reason="unencodable")
    loop: dict[str, object] = {}
    loop["self"] = loop
    events = [settled.event("t", 0), settled.event("t", 1, loop), settled.event("t", 2)]
    await out.send(core.Batch(events))
    await out.stop(10)
    assert settled.status == {
        0: core.Delivery.DELIVERED,
        1: core.Delivery.DROPPED,
        2: core.Delivery.DELIVERED,
    }
    assert counter("kloghub_records_dropped_total", reason="unencodable") == dropped + 1


async def test_output_refuses_non_forward_urls():
    """If this failed, a file: URL handed to the forward output would fail only at runtime."""
    with pytest.raises(core.ConfigError):
        transport.ForwardOutput(config.OutputConfig(url="file:/tmp/x"))


async def test_strings_with_undecodable_bytes_are_sent_not_dropped(start_server, store):
    """If this failed, a log line with invalid UTF-8 (kept as surrogate escapes) would be lost."""
    server = await start_server()
    out = transport.ForwardOutput(output_config(server))
    await out.start()
    settled = Settled()
    raw = b"caf\xe9 latin-1".decode("utf-8", "surrogateescape")
    await out.send(core.Batch([settled.event("t", 0, {"log": raw})]))
    await out.stop(10)
    assert settled.status == {0: core.Delivery.DELIVERED}
    assert store.events[0].record == {"log": "caf\ufffd latin-1"}


async def test_output_without_shared_key_to_a_server_that_requires_one_reports_it(
    start_server, store, caplog
):
    """If this failed, a missing shared_key would look like a network problem, not config."""
    server = await start_server(shared_key="s3cret")
    out = transport.ForwardOutput(output_config(server))
    await out.start()
    settled = Settled()
    with caplog.at_level(logging.WARNING, logger="kloghub.transport"):
        await out.send(core.Batch([settled.event("t", 0)]))
        await asyncio.sleep(0.3)
        await out.stop(0.2)
    assert settled.status == {} and store.events == []
    assert any("set shared_key" in str(getattr(r, "error", "")) for r in caplog.records)


async def test_upstream_that_drops_every_connection_is_retried_with_backoff():
    """If this failed, an overloaded collector refusing connections would be hammered."""
    accepted = 0

    async def drop(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        writer.close()

    server = await asyncio.start_server(drop, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    retry = {"initial_backoff": 0.05, "max_backoff": 0.2}
    out = transport.ForwardOutput(output_config(port, retry=retry))
    await out.start()
    settled = Settled()
    await out.send(core.Batch([settled.event("t", 0)]))
    await asyncio.sleep(1.0)
    await out.stop(0.1)
    server.close()
    await server.wait_closed()
    assert settled.status == {}
    assert 2 <= accepted <= 40  # backoff, not a reconnect storm (thousands per second)
