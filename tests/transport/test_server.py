"""The collector's Forward listener: interop, acks after storage, auth, TLS and every limit."""

from __future__ import annotations

import asyncio
import gzip
import logging
import os
import ssl
import struct

import msgpack
import pytest
from fluent import sender as fluent_sender

from kloghub import config, core, transport
from kloghub.runtime import metrics

from ._wire import RawClient, chunk_request, request_is_acked

protocol = transport.protocol
NS = 1_700_000_000_123_456_789


def refused(reason: str) -> float:
    value = metrics.REGISTRY.get_sample_value("kloghub_forward_refused_total", {"reason": reason})
    return value or 0.0


def event_time(ns: int) -> msgpack.ExtType:
    return msgpack.ExtType(0, struct.pack(">II", *divmod(ns, 1_000_000_000)))


# --------------------------------------------------------------------------- interop


async def test_fluent_logger_message_mode_arrives_with_nanoseconds(start_server, store):
    """If this failed, applications logging with fluent-logger could not feed the collector."""
    server = await start_server()
    host, port = server.address

    def emit() -> None:
        logger = fluent_sender.FluentSender("app", host=host, port=port, nanosecond_precision=True)
        try:
            for i in range(3):
                ok = logger.emit_with_time(
                    "web",
                    fluent_sender.EventTime.from_unix_nano(NS + i),
                    {"log": f"line {i}", "n": i, "raw": b"\x00\xff"},
                )
                assert ok, logger.last_error
        finally:
            logger.close()

    await asyncio.to_thread(emit)
    events = await store.wait_for(3)
    assert [(e.tag, e.time_ns, e.record) for e in events] == [
        ("app.web", NS + i, {"log": f"line {i}", "n": i, "raw": b"\x00\xff"}) for i in range(3)
    ]


async def test_hand_built_forward_and_packed_forward_streams_are_stored_and_acked(
    start_server, store
):
    """If this failed, Fluentd or Fluent Bit agents would lose events or never get acks."""
    server = await start_server()
    client = await RawClient.connect(server)
    forward = msgpack.packb(
        ["kube.a.b.c", [[event_time(NS), {"log": "f0"}], [NS // 10**9, {"log": "f1"}]],
         {"chunk": "fwd", "size": 2}],
        use_bin_type=True,
    )  # fmt: skip
    entries = b"".join(
        msgpack.packb([event_time(NS + i), {"log": f"p{i}", "kubernetes": {"pod_name": "p"}}])
        for i in range(3)
    )
    packed_bin = msgpack.packb(["node.syslog", entries, {"chunk": "bin"}], use_bin_type=True)
    packed_str = msgpack.packb(["audit", entries, {"chunk": "str"}], use_bin_type=False)
    await client.send(forward + protocol.KEEPALIVE + packed_bin + packed_str)
    acks = [await client.answer() for _ in range(3)]
    assert acks == [{"ack": "fwd"}, {"ack": "bin"}, {"ack": "str"}]
    events = store.events
    assert [(e.tag, e.record["log"]) for e in events] == [
        ("kube.a.b.c", "f0"),
        ("kube.a.b.c", "f1"),
        ("node.syslog", "p0"),
        ("node.syslog", "p1"),
        ("node.syslog", "p2"),
        ("audit", "p0"),
        ("audit", "p1"),
        ("audit", "p2"),
    ]
    assert events[0].time_ns == NS and events[1].time_ns == (NS // 10**9) * 10**9
    assert events[3].time_ns == NS + 1
    assert events[2].record["kubernetes"] == {"pod_name": "p"}
    await client.close()


async def test_compressed_request_with_several_gzip_members_is_stored(start_server, store):
    """If this failed, gzip-compressing agents (Fluent Bit compress gzip) would be refused."""
    server = await start_server()
    client = await RawClient.connect(server)
    members = [
        gzip.compress(msgpack.packb([event_time(NS + i), {"log": f"g{i}"}])) for i in range(3)
    ]
    request = protocol.encode_packed_forward("t", b"".join(members), 3, "gz", compressed=True)
    await client.send(request)
    assert await client.answer() == {"ack": "gz"}
    assert [(e.time_ns, e.record["log"]) for e in store.events] == [
        (NS + i, f"g{i}") for i in range(3)
    ]
    await client.close()


# --------------------------------------------------------------------------- acknowledgement


async def test_ack_is_sent_only_after_deliver_returned(start_server, store):
    """If this failed, an agent could move its checkpoint before the collector had the data."""
    store.delay = 0.3
    server = await start_server()
    client = await RawClient.connect(server)
    await client.send(chunk_request("t", 5, "slow"))
    with pytest.raises(TimeoutError):
        await client.answer(timeout=0.1)
    assert await client.answer() == {"ack": "slow"}
    assert len(store.events) == 5
    await client.close()


async def test_failed_deliver_sends_no_ack_and_closes_the_connection(start_server, store):
    """If this failed, an agent would drop events the collector could not store."""
    store.fail = True
    before = refused("deliver_failed")
    server = await start_server()
    client = await RawClient.connect(server)
    await client.send(chunk_request("t", 2, "lost"))
    with pytest.raises(EOFError):
        await client.answer()
    await client.close()
    assert refused("deliver_failed") == before + 1
    store.fail = False
    client = await RawClient.connect(server)
    assert await request_is_acked(client, "lost", 2)
    assert len(store.events) == 2
    await client.close()


async def test_resent_chunk_is_acked_again_but_stored_once(start_server, store):
    """If this failed, every agent resend after a lost ack would duplicate events."""
    duplicates = metrics.REGISTRY.get_sample_value("kloghub_forward_duplicate_chunks_total")
    server = await start_server()
    for _ in range(2):
        client = await RawClient.connect(server)
        assert await request_is_acked(client, "same-id", 3)
        await client.close()
    assert len(store.events) == 3
    after = metrics.REGISTRY.get_sample_value("kloghub_forward_duplicate_chunks_total")
    assert after == (duplicates or 0) + 1


async def test_resend_during_the_first_copys_storage_waits_and_is_stored_once(start_server, store):
    """If this failed, an agent resending after an ack timeout would store the chunk twice."""
    store.delay = 0.3
    server = await start_server()
    first = await RawClient.connect(server)
    second = await RawClient.connect(server)
    await first.send(chunk_request("t", 2, "racing"))
    await asyncio.sleep(0.05)
    await second.send(chunk_request("t", 2, "racing"))
    assert await second.answer() == {"ack": "racing"}
    assert await first.answer() == {"ack": "racing"}
    assert store.calls == 1 and len(store.events) == 2
    await first.close()
    await second.close()


async def test_stop_finishes_the_request_being_stored_then_closes(start_server, store):
    """If this failed, a collector rollout would cut acks of data it had already stored."""
    store.delay = 0.3
    server = await start_server()
    client = await RawClient.connect(server)
    await client.send(chunk_request("t", 1, "in-hand"))
    await asyncio.sleep(0.05)
    stopping = asyncio.create_task(server.stop(5))
    assert await client.answer() == {"ack": "in-hand"}
    assert await client.closed_by_server()
    await stopping
    await client.close()


# --------------------------------------------------------------------------- handshake


async def test_handshake_with_the_right_shared_key_opens_the_transport_phase(start_server, store):
    """If this failed, agents configured with a shared key could not ship at all."""
    server = await start_server(shared_key="s3cret", self_hostname="collector-0")
    client = await RawClient.connect(server)
    pong = await client.handshake("s3cret")
    assert (pong.ok, pong.hostname) == (True, "collector-0")
    assert await request_is_acked(client, "after-handshake", 2)
    await client.close()


async def test_wrong_shared_key_is_refused_and_nothing_is_stored(start_server, store, caplog):
    """If this failed, anyone reaching the port could inject logs into the SIEM."""
    before = refused("auth")
    server = await start_server(shared_key="s3cret")
    good = await RawClient.connect(server)
    assert (await good.handshake("s3cret")).ok
    bad = await RawClient.connect(server)
    with caplog.at_level(logging.WARNING, logger="kloghub.transport"):
        pong = await bad.handshake("guess")
        await bad.send(chunk_request("t", 1, "intruder"))
        assert await bad.closed_by_server()
    assert (pong.ok, pong.reason) == (False, "shared_key mismatch")
    assert refused("auth") == before + 1
    assert any(getattr(r, "reason", None) == "auth" for r in caplog.records)
    assert await request_is_acked(good, "still-works")
    assert [e.record["log"] for e in store.events] == ["still-works-0"]
    await good.close()
    await bad.close()


async def test_client_skipping_the_handshake_is_refused(start_server, store):
    """If this failed, a shared key would protect nothing against clients that ignore HELO."""
    server = await start_server(shared_key="s3cret")
    client = await RawClient.connect(server)
    await client.send(chunk_request("t", 1, "no-auth"))
    assert await client.closed_by_server()
    assert store.events == []
    await client.close()


async def test_username_and_password_are_checked(start_server, store):
    """If this failed, per-agent credentials would not keep other agents out."""
    users = [{"username": "agent", "password": "pw"}]
    server = await start_server(shared_key="k", users=users)
    good = await RawClient.connect(server)
    assert (await good.handshake("k", username="agent", password="pw")).ok
    assert await request_is_acked(good)
    bad = await RawClient.connect(server)
    pong = await bad.handshake("k", username="agent", password="wrong")
    assert (pong.ok, pong.reason) == (False, "username/password mismatch")
    assert await bad.closed_by_server()
    await good.close()
    await bad.close()


# --------------------------------------------------------------------------- TLS


def _tls_listener(certs, mutual: bool = False) -> dict[str, object]:
    return {
        "tls": {
            "enabled": True,
            "cert_file": certs.server_cert,
            "key_file": certs.server_key,
            "ca_file": certs.ca,
        },
        "require_client_cert": mutual,
    }


def _client_context(certs, cert=None, key=None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs.ca))
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


async def test_tls_listener_serves_tls_clients_and_refuses_plaintext(start_server, store, certs):
    """If this failed, logs would cross the network in clear or TLS agents could not connect."""
    before = refused("tls_handshake")
    server = await start_server(**_tls_listener(certs))
    tls_client = await RawClient.connect(server, _client_context(certs))
    assert await request_is_acked(tls_client, "over-tls")
    plain = await RawClient.connect(server)
    await plain.send(chunk_request("t", 1, "plaintext"))
    assert await plain.closed_by_server()
    assert refused("tls_handshake") == before + 1
    assert await request_is_acked(tls_client, "over-tls-again")
    assert [e.record["log"] for e in store.events] == ["over-tls-0", "over-tls-again-0"]
    await tls_client.close()
    await plain.close()


async def test_mutual_tls_requires_a_client_certificate_from_the_ca(start_server, store, certs):
    """If this failed, mutual TLS would let agents without a valid certificate in."""
    server = await start_server(**_tls_listener(certs, mutual=True))
    good = await RawClient.connect(
        server, _client_context(certs, certs.client_cert, certs.client_key)
    )
    assert await request_is_acked(good, "mtls")
    for cert, key in ((None, None), (certs.other_cert, certs.other_key)):
        try:
            bad = await RawClient.connect(server, _client_context(certs, cert, key))
        except (ssl.SSLError, ConnectionError):
            continue  # refused during the handshake: fine
        await bad.send(chunk_request("t", 1, "intruder"))
        assert await bad.closed_by_server()
        await bad.close()
    assert [e.record["log"] for e in store.events] == ["mtls-0"]
    await good.close()


# --------------------------------------------------------------------------- limits


async def test_a_100_mb_frame_is_refused_while_other_clients_keep_working(
    start_server, store, caplog
):
    """If this failed, one client could exhaust the collector's memory with a huge frame."""
    before = refused("frame_too_large")
    server = await start_server(max_frame_bytes=1024 * 1024)
    good = await RawClient.connect(server)
    assert await request_is_acked(good, "before")
    huge = await RawClient.connect(server)
    header = b"\x93\xa1t\xc6" + struct.pack(">I", 100 * 1024 * 1024)
    with caplog.at_level(logging.WARNING, logger="kloghub.transport"):
        try:
            await huge.send(header)
            for _ in range(200):  # at most 12.5 MiB, far below the declared 100 MB
                await huge.send(b"\x00" * 65536)
        except (ConnectionError, OSError):
            pass
        assert await huge.closed_by_server()
    assert refused("frame_too_large") == before + 1
    assert any("max_frame_bytes" in r.getMessage() for r in caplog.records)
    assert await request_is_acked(good, "after")
    assert [e.record["log"] for e in store.events] == ["before-0", "after-0"]
    await good.close()
    await huge.close()


async def test_truncated_frame_is_dropped_unacked(start_server, store):
    """If this failed, half a request could be stored or crash the listener."""
    before = refused("truncated")
    server = await start_server()
    good = await RawClient.connect(server)
    cut = await RawClient.connect(server)
    request = chunk_request("t", 10, "cut")
    await cut.send(request[: len(request) // 2])
    await cut.close()
    for _ in range(50):
        if refused("truncated") > before:
            break
        await asyncio.sleep(0.02)
    assert refused("truncated") == before + 1
    assert await request_is_acked(good)
    assert [e.record["log"] for e in store.events] == ["good-0"]
    await good.close()


async def test_random_bytes_are_refused_while_other_clients_keep_working(start_server, store):
    """If this failed, a port scanner or a confused client could disturb real agents."""
    server = await start_server(frame_timeout=0.5)
    good = await RawClient.connect(server)
    for seed in range(5):
        noise = await RawClient.connect(server)
        await noise.send(bytes([0xC1]) + os.urandom(4096 + seed))
        assert await noise.closed_by_server()
        await noise.close()
        noise = await RawClient.connect(server)
        await noise.send(os.urandom(2048))
        assert await noise.closed_by_server(timeout=3)
        await noise.close()
    assert await request_is_acked(good)
    assert [e.record["log"] for e in store.events] == ["good-0"]
    await good.close()


async def test_connections_beyond_max_connections_are_refused(start_server, store):
    """If this failed, a connection flood could exhaust the collector's file descriptors."""
    before = refused("max_connections")
    server = await start_server(max_connections=2)
    first = await RawClient.connect(server)
    second = await RawClient.connect(server)
    assert await request_is_acked(first, "one")
    assert await request_is_acked(second, "two")
    third = await RawClient.connect(server)
    assert await third.closed_by_server()
    assert refused("max_connections") == before + 1
    await first.close()
    for _ in range(50):
        if server.connections < 2:
            break
        await asyncio.sleep(0.02)
    fourth = await RawClient.connect(server)
    assert await request_is_acked(fourth, "four")
    for client in (second, third, fourth):
        await client.close()


async def test_client_that_never_finishes_a_frame_is_closed_after_frame_timeout(
    start_server, store
):
    """If this failed, slow-loris clients could hold connections and memory forever."""
    before = refused("frame_timeout")
    server = await start_server(frame_timeout=0.3, idle_timeout=30)
    good = await RawClient.connect(server)
    slow = await RawClient.connect(server)
    request = chunk_request("t", 3, "slow")
    await slow.send(request[:10])
    await asyncio.sleep(0.15)
    await slow.send(request[10:20])  # trickling does not reset the frame's clock
    assert await slow.closed_by_server(timeout=2)
    assert refused("frame_timeout") == before + 1
    assert await request_is_acked(good)
    await good.close()
    await slow.close()


async def test_idle_connection_is_closed_but_keepalives_count_as_traffic(start_server, store):
    """If this failed, dead agents would hold connections, or live idle agents be cut."""
    server = await start_server(idle_timeout=0.4)
    idle = await RawClient.connect(server)
    alive = await RawClient.connect(server)
    for _ in range(4):
        await alive.send(protocol.KEEPALIVE)
        await asyncio.sleep(0.2)
    assert await idle.closed_by_server(timeout=0.1)
    assert await request_is_acked(alive)
    await idle.close()
    await alive.close()


async def test_listener_requires_certificates_when_tls_is_enabled(store):
    """If this failed, a TLS listener without a certificate would start in plaintext."""
    server = transport.ForwardServer(
        "127.0.0.1:0", config.ListenerConfig(tls={"enabled": True}), store
    )
    with pytest.raises(core.ConfigError) as info:
        await server.start()
    assert "cert_file" in str(info.value)


# --------------------------------------------------------------------------- back-pressure


async def test_listener_stops_reading_every_connection_while_its_budget_is_held(store):
    """If this failed, a burst from many agents would pile up in the collector's memory
    instead of waiting in the agents' buffers (no TCP back-pressure)."""
    budget = core.Budget(1)
    release = asyncio.Event()
    stored: list[str] = []

    async def deliver(batch: core.Batch) -> None:
        stored.append(batch.events[0].record["log"])
        if len(stored) == 1:
            await release.wait()

    server = transport.ForwardServer("127.0.0.1:0", config.ListenerConfig(), deliver, budget=budget)
    await server.start()
    try:
        first, second = await RawClient.connect(server), await RawClient.connect(server)
        await first.send(chunk_request("t", 1, "a"))
        while not stored:
            await asyncio.sleep(0.01)
        await second.send(chunk_request("t", 1, "b"))
        with pytest.raises(TimeoutError):
            await second.answer(timeout=0.3)  # not read: the budget is held by "a"
        assert stored == ["a-0"]
        release.set()
        assert await first.answer() == {"ack": "a"}
        assert await second.answer() == {"ack": "b"}
        assert budget.used == 0
        await first.close()
        await second.close()
    finally:
        await server.stop(5)


# --------------------------------------------------------------------------- slices


async def test_large_packed_request_is_delivered_in_slices_and_acked_once(start_server, store):
    """If this failed, one 8 MiB request would exist as objects all at once in the
    collector (several times its size), or its ack would precede the last slice."""
    server = await start_server()
    client = await RawClient.connect(server)
    count = 60_000
    request = chunk_request("t", count, "big")  # ~1.5 MB of entries
    await client.send(request)
    assert await client.answer() == {"ack": "big"}
    assert len(store.batches) >= len(request) // protocol.SLICE_BYTES >= 4
    assert [e.record["log"] for e in store.events] == [f"big-{i}" for i in range(count)]
    assert all(sum(e.size for e in b) <= 2 * protocol.SLICE_BYTES for b in store.batches)
    await client.close()


async def test_entry_that_is_not_a_pair_part_way_refuses_the_request_unacked(start_server, store):
    """If this failed, a request found malformed after its first slices were stored would
    be acknowledged, or take the listener down."""
    before = refused("malformed")
    server = await start_server()
    client = await RawClient.connect(server)
    good = b"".join(
        msgpack.packb([event_time(NS), {"log": "x" * 100, "n": i}]) for i in range(5_000)
    )
    entries = good + msgpack.packb(["not", "a", "pair"]) + good
    await client.send(msgpack.packb(["t", entries, {"chunk": "bad"}], use_bin_type=True))
    assert await client.closed_by_server()
    await client.close()
    assert refused("malformed") == before + 1
    assert 0 < len(store.events) < 5_000  # the slices before it; no ack went back
    other = await RawClient.connect(server)
    assert await request_is_acked(other)
    await other.close()


async def test_broken_msgpack_anywhere_in_entries_stores_nothing(start_server, store):
    """If this failed, a corrupt frame would leave its first slices in the stores."""
    server = await start_server()
    client = await RawClient.connect(server)
    good = b"".join(
        msgpack.packb([event_time(NS), {"log": "x" * 100, "n": i}]) for i in range(5_000)
    )
    entries = good + b"\xc1" + good  # 0xc1 is never valid msgpack
    await client.send(msgpack.packb(["t", entries, {"chunk": "corrupt"}], use_bin_type=True))
    assert await client.closed_by_server()
    await client.close()
    assert store.events == []
