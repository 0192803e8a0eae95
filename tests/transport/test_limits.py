"""The listener's limits against one greedy peer: connection floods, huge frame claims;
each refused, counted and logged once per peer while other peers keep delivering."""

from __future__ import annotations

import asyncio
import logging
import struct

import msgpack

from kloghub import config
from kloghub.runtime import metrics

from ._wire import RawClient, request_is_acked

MiB = 1024 * 1024


def refused(reason: str) -> float:
    value = metrics.REGISTRY.get_sample_value("kloghub_forward_refused_total", {"reason": reason})
    return value or 0.0


async def connect_from(server, source: str) -> RawClient:
    host, port = server.address
    reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
    return RawClient(reader, writer)


def test_default_limits_fit_what_agents_send() -> None:
    """If this failed, the defaults would again let one peer make the collector hold 64 MiB
    per connection or keep idle sockets for minutes."""
    listener = config.ListenerConfig()
    assert int(listener.max_frame_bytes) <= 8 * MiB
    assert listener.idle_timeout <= 90
    assert listener.handshake_timeout <= 10
    assert listener.max_connections_per_peer < listener.max_connections


async def test_500_idle_connections_from_one_peer_are_capped_while_another_peer_delivers(
    start_server, store, caplog
):
    """If this failed, one host could take every connection slot of the collector."""
    before = refused("max_connections_per_peer")
    server = await start_server(max_connections_per_peer=16)
    with caplog.at_level(logging.DEBUG, logger="kloghub.transport"):
        flood = [await connect_from(server, "127.0.0.1") for _ in range(500)]
        async with asyncio.timeout(30):
            while refused("max_connections_per_peer") < before + 484:
                await asyncio.sleep(0.02)
        good = await connect_from(server, "127.0.0.2")
        assert await request_is_acked(good, "other-peer")
    assert refused("max_connections_per_peer") == before + 484
    assert server.connections == 17
    capped = [r for r in caplog.records if getattr(r, "reason", "") == "max_connections_per_peer"]
    assert [r.levelno for r in capped].count(logging.WARNING) == 1  # logged once per peer
    assert len(capped) == 484
    await good.close()
    for client in flood:
        await client.close()


async def test_a_100_mb_frame_claim_is_refused_at_the_default_limit(start_server, store):
    """If this failed, the default limit would let a client make the collector buffer far
    more than any agent sends."""
    before = refused("frame_too_large")
    server = await start_server()
    good = await RawClient.connect(server)
    huge = await RawClient.connect(server)
    try:
        await huge.send(b"\x93\xa1t\xc6" + struct.pack(">I", 100 * 1000 * 1000))
        for _ in range(160):  # 10 MiB, past the 8 MiB default, far below the claim
            await huge.send(b"\x00" * 65536)
    except (ConnectionError, OSError):
        pass
    assert await huge.closed_by_server()
    assert refused("frame_too_large") == before + 1
    assert await request_is_acked(good, "after-the-flood")
    await good.close()
    await huge.close()


async def test_a_frame_just_under_the_limit_is_stored(start_server, store):
    """If this failed, the smaller limit would refuse what agents legitimately send."""
    server = await start_server()
    client = await RawClient.connect(server)
    entry = msgpack.packb([1, {"log": "x" * (6 * MiB)}], use_bin_type=True)
    request = msgpack.packb(["t", entry, {"chunk": "big", "size": 1}], use_bin_type=True)
    await client.send(request)
    assert await client.answer(timeout=20) == {"ack": "big"}
    await client.close()
