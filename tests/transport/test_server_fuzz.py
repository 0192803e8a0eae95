"""Fuzzing the running listener: whatever arrives, it never acks what it did not store."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kloghub import config, core, transport

protocol = transport.protocol
NS = 1_700_000_000_000_000_000


class _FailingStore:
    """Stores batches unless one of their records says ``fail``; remembers chunk markers."""

    def __init__(self) -> None:
        self.stored_markers: set[str] = set()
        self.stored_batches = 0
        self.lock = threading.Lock()

    async def __call__(self, batch: core.Batch) -> None:
        if any(event.record.get("fail") for event in batch):
            raise OSError("refused by the test")
        with self.lock:
            self.stored_markers.update(str(event.record.get("c")) for event in batch)
            self.stored_batches += 1


@dataclass
class _Running:
    server: transport.ForwardServer
    store: _FailingStore
    address: tuple[str, int]


@pytest.fixture(scope="module")
def running() -> Iterator[_Running]:
    """A listener on its own event loop in a thread, shared by every example."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    store = _FailingStore()
    server = transport.ForwardServer(
        "127.0.0.1:0",
        config.ListenerConfig(max_frame_bytes=256 * 1024, frame_timeout=2, dedup_window=0),
        store,
    )
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
    try:
        yield _Running(server, store, server.address)
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(5), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@dataclass
class _Req:
    chunk: str
    count: int
    fail: bool
    data: bytes


_values = st.one_of(st.text(max_size=12), st.binary(max_size=12), st.integers(-(2**40), 2**40))


@st.composite
def _requests(draw: st.DrawFn) -> _Req:
    chunk = protocol.new_chunk_id()
    mode = draw(st.sampled_from(["message", "forward", "packed", "packed_str", "compressed"]))
    count = 1 if mode == "message" else draw(st.integers(0, 4))
    fail = draw(st.booleans()) and count > 0
    records = [{"c": chunk, "fail": fail, "v": draw(_values)} for _ in range(count)]
    if mode == "message":
        return _Req(chunk, 1, fail, protocol.encode_message("t", NS, records[0], chunk))
    option = {"chunk": chunk, "size": count}
    entries = [[msgpack.ExtType(0, b"\x65\x00\x00\x00\x00\x00\x00\x01"), r] for r in records]
    if mode == "forward":
        data = msgpack.packb(["t", entries, option], use_bin_type=True)
        return _Req(chunk, count, fail, data)
    body = b"".join(msgpack.packb(e, use_bin_type=True) for e in entries)
    if mode == "compressed":
        body = gzip.compress(body)
        option["compressed"] = "gzip"
    data = msgpack.packb(["t", body, option], use_bin_type=mode != "packed_str")
    return _Req(chunk, count, fail, data)


def _exchange(address: tuple[str, int], payload: bytes) -> list[object]:
    """Send everything, half-close, and collect the answers until the server closes."""
    answers: list[object] = []
    unpacker = msgpack.Unpacker(raw=False, unicode_errors="surrogateescape")
    with socket.create_connection(address, timeout=10) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                break
            if not data:
                break
            unpacker.feed(data)
            answers.extend(unpacker)
    return answers


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    requests=st.lists(_requests(), min_size=1, max_size=4),
    noise=st.lists(st.tuples(st.integers(0, 4), st.binary(min_size=1, max_size=16)), max_size=2),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=2),
)
def test_listener_fuzz_never_acks_a_chunk_it_did_not_store(running, requests, noise, flips):
    """If this failed, a malformed stream could make an agent drop events the collector lost.

    The expected answers come from decoding the same bytes with the protocol module (the
    decoder itself is fuzzed in test_protocol.py); what is checked here is the listener's
    rule: an ack only after a successful store, nothing after an error.
    """
    parts = [r.data for r in requests]
    for position, blob in sorted(noise, reverse=True):
        parts.insert(min(position, len(parts)), blob)
    payload = bytearray(b"".join(parts))
    for position, value in flips:
        if payload:
            payload[position % len(payload)] = value
    expected_acks, expected_stores = _oracle(bytes(payload))
    with running.store.lock:
        stored_before = running.store.stored_batches
    answers = _exchange(running.address, bytes(payload))
    with running.store.lock:
        stored = running.store.stored_batches - stored_before
        markers = set(running.store.stored_markers)
    assert answers == [{"ack": chunk} for chunk in expected_acks]
    assert stored == expected_stores
    by_chunk = {r.chunk: r for r in requests}
    for chunk in expected_acks:
        request = by_chunk.get(chunk)  # None when a flipped byte changed the id
        if request is not None and not flips:
            assert not request.fail, "acked a chunk whose storage failed"
            assert request.count == 0 or request.chunk in markers, "acked, never stored"
    if not noise and not flips and not any(r.fail for r in requests):
        assert expected_acks == [r.chunk for r in requests]


def _oracle(payload: bytes) -> tuple[list[object], int]:
    """What the listener must answer: decode the stream as the protocol says, stopping at
    the first error or failed store; each chunk is acked only once stored (or empty)."""
    limit = 256 * 1024
    decoder = protocol.StreamDecoder(limit)
    acks: list[object] = []
    stores = 0
    try:
        decoder.feed(payload)
        for value, size in decoder.frames():
            request = protocol.decode_request(value, size, limit)
            if request is None:
                continue
            if request.events:
                if any(event.record.get("fail") for event in request.events):
                    break
                stores += 1
            if request.chunk is not None:
                acks.append(request.chunk)
    except protocol.ProtocolError:
        pass
    return acks, stores


def test_listener_still_serves_after_the_fuzzing(running):
    """If this failed, malformed input could have left the listener unable to serve."""
    request = protocol.encode_message("t", NS, {"c": "final", "fail": False}, "final")
    assert _exchange(running.address, request) == [{"ack": "final"}]
