"""The forward output sends encoded chunks as they are: bytes undecoded, acks per chunk."""

from __future__ import annotations

import asyncio
import contextlib
import zlib

import msgpack
import pytest

from kloghub import core, kernels, parse, transport
from tests.transport.test_client import Inspector, output_config


class RawReceiver:
    """A Forward acker written for the tests: keeps each request's tag, entries bytes
    (gunzipped) and options as they came over the wire. No handshake, no TLS."""

    def __init__(self, ack: bool = True) -> None:
        self.ack = ack
        self.requests: list[tuple[str, bytes, dict[str, object]]] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> RawReceiver:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        unpacker = msgpack.Unpacker(raw=False)
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                unpacker.feed(data)
                for message in unpacker:
                    if not isinstance(message, list) or len(message) != 3:
                        continue
                    tag, entries, option = message
                    if option.get("compressed") == "gzip":
                        entries = zlib.decompress(entries, wbits=31)
                    self.requests.append((tag, entries, option))
                    if self.ack:
                        writer.write(msgpack.packb({"ack": option["chunk"]}))
        writer.close()


def encoded_chunk(tag: str, start: int, count: int, settled: list[core.Delivery]) -> core.Chunk:
    ctx = kernels.EntryContext("/var/log/pods/x/c/0.log", "f1", {"pod_name": "p"}, None, None)
    records = [
        parse.Record(1_700_000_000_000_000_000 + n, "stdout", f"line {n}", None, 0, n * 10)
        for n in range(start, start + count)
    ]
    entries = kernels.encode_records(records, ctx)
    return core.Chunk(tag, entries, count, finalizer=core.Finalizer(settled.append, 1))


@pytest.mark.parametrize("compress", ["none", "gzip"])
async def test_chunks_go_on_the_wire_byte_for_byte_joined_per_tag(compress):
    """If this failed, the agent would decode and re-encode what the buffer stored."""
    receiver = await RawReceiver().start()
    out = transport.ForwardOutput(output_config(receiver.port, compress=compress))
    await out.start()
    settled: list[core.Delivery] = []
    chunks = [
        encoded_chunk("kube.a", 0, 3, settled),
        encoded_chunk("kube.b", 3, 2, settled),
        encoded_chunk("kube.a", 5, 4, settled),
    ]
    await out.send_chunks(chunks)
    await out.stop(10)
    await receiver.stop()
    got = {tag: (entries, option) for tag, entries, option in receiver.requests}
    assert len(receiver.requests) == 2
    assert got["kube.a"][0] == chunks[0].entries + chunks[2].entries
    assert got["kube.b"][0] == chunks[1].entries
    assert got["kube.a"][1]["size"] == 7
    assert ("compressed" in got["kube.a"][1]) == (compress == "gzip")
    assert settled == [core.Delivery.DELIVERED] * 3


async def test_a_request_stays_under_batch_max_bytes_and_a_chunk_is_never_split():
    """If this failed, one request could exceed the collector's limits or cut an entry."""
    receiver = await RawReceiver().start()
    settled: list[core.Delivery] = []
    chunks = [encoded_chunk("kube.a", n * 10, 10, settled) for n in range(6)]
    limit = 2 * max(len(c.entries) for c in chunks) + 1
    out = transport.ForwardOutput(output_config(receiver.port, batch_max_bytes=limit))
    await out.start()
    await out.send_chunks(chunks)
    await out.stop(10)
    await receiver.stop()
    assert [option["size"] for _, _, option in receiver.requests] == [20, 20, 20]
    assert b"".join(e for _, e, _ in receiver.requests) == b"".join(c.entries for c in chunks)
    assert len(settled) == 6


async def test_chunk_requests_decode_to_the_records_the_source_encoded():
    """If this failed, a Forward server (the collector, Fluent Bit) could not read our chunks."""
    inspector = await Inspector().start()
    out = transport.ForwardOutput(output_config(inspector.port, compress="gzip"))
    await out.start()
    settled: list[core.Delivery] = []
    await out.send_chunks([encoded_chunk("kube.a", 0, 3, settled)])
    await out.stop(10)
    await inspector.stop()
    (request,) = inspector.requests
    assert request.mode == "compressed_packed_forward"
    assert [e.record["log"] for e in request.events] == ["line 0", "line 1", "line 2"]
    assert request.events[0].time_ns == 1_700_000_000_000_000_000
    assert request.events[2].record["kloghub"]["offset"] == 20


async def test_an_unacknowledged_chunk_stays_unsettled_and_is_resent():
    """If this failed, the checkpoint of a chunk the collector never acked could move."""
    receiver = await RawReceiver(ack=False).start()
    out = transport.ForwardOutput(output_config(receiver.port, ack_timeout=0.2))
    await out.start()
    settled: list[core.Delivery] = []
    await out.send_chunks([encoded_chunk("kube.a", 0, 2, settled)])
    for _ in range(300):
        if len(receiver.requests) >= 2:
            break
        await asyncio.sleep(0.01)
    await out.stop(0.1)
    await receiver.stop()
    assert len(receiver.requests) >= 2
    assert receiver.requests[0][2]["chunk"] == receiver.requests[1][2]["chunk"]
    assert settled == []
