"""The collector's Forward listener under attack: its memory and a good client's deliveries.

Usage:
    python bench/listener_attack_bench.py [--idle 500] [--huge 16] [--stalled 200]

The listener (``ForwardServer`` with the default limits, a shared key and one user; its
``deliver`` only counts) runs in a child process. The parent plays, one after the other:

1. ``--idle`` connections from 127.0.0.1 that never send anything (per-peer cap);
2. ``--huge`` connections from 127.0.0.3.. that complete the handshake and then claim a
   100 MB frame and stream 10 MiB of it (frame limit);
3. ``--stalled`` connections spread over 127.0.1.x (4 per address, under the per-peer cap)
   that read the HELO and never answer (handshake timeout, set to 2 s here);

while a good client on 127.0.0.2 sends a 1000-record request and waits for its ack, over
and over. Printed: the child's RSS (``VmRSS``) before, its peak (``VmHWM``) after, the
refusals by reason, and the good client's acknowledged requests per phase.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import multiprocessing as mp
import os
import struct
import time
from multiprocessing.connection import Connection

from kloghub import config, core, transport
from kloghub.runtime import metrics

KEY, USER, PASSWORD = "bench-key", "good", "good-pw"
protocol = transport.protocol


def _status(field: str) -> int:
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _refused() -> dict[str, float]:
    out: dict[str, float] = {}
    for family in metrics.REGISTRY.collect():
        if family.name == "kloghub_forward_refused":
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.value:
                    out[sample.labels["reason"]] = sample.value
    return out


def _server_main(conn: Connection) -> None:
    logging.disable(logging.WARNING)  # one refusal line per connection would flood stdout

    async def main() -> None:
        received = 0

        async def deliver(batch: core.Batch) -> None:
            nonlocal received
            received += len(batch)

        listener = config.ListenerConfig(
            shared_key=KEY,
            users=[{"username": USER, "password": PASSWORD}],
            handshake_timeout=2.0,
        )
        server = transport.ForwardServer("127.0.0.1:0", listener, deliver)
        await server.start()
        conn.send(server.address[1])
        loop = asyncio.get_running_loop()
        while True:
            command = await loop.run_in_executor(None, conn.recv)
            if command == "stop":
                break
            conn.send(
                {
                    "rss": _status("VmRSS"),
                    "hwm": _status("VmHWM"),
                    "refused": _refused(),
                    "received": received,
                    "connections": server.connections,
                }
            )
        await server.stop(5)

    asyncio.run(main())


async def _open(port: int, source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def _login(
    port: int, source: str, hostname: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    import msgpack

    reader, writer = await _open(port, source)
    unpacker = msgpack.Unpacker(raw=False)
    while True:
        unpacker.feed(await reader.read(65536))
        helo = next(iter(unpacker), None)
        if helo is not None:
            break
    parsed = protocol.parse_helo(helo)
    salt = "0123456789abcdef"
    digest = protocol.shared_key_digest(salt, hostname, parsed.nonce, KEY)
    password = protocol.password_digest(parsed.auth_salt, USER, PASSWORD)
    writer.write(protocol.encode_ping(hostname, salt, digest, USER, password))
    while True:
        pong = next(iter(unpacker), None)
        if pong is not None:
            break
        unpacker.feed(await reader.read(65536))
    assert protocol.parse_pong(pong).ok
    return reader, writer


async def _good_client(port: int, counter: list[int], stop: asyncio.Event) -> None:
    import msgpack

    reader, writer = await _login(port, "127.0.0.2", "good-node")
    packer = protocol.new_packer()
    entries = b"".join(
        protocol.pack_entry(packer, time.time_ns(), {"log": "x" * 200, "n": i}) for i in range(1000)
    )
    unpacker = msgpack.Unpacker(raw=False)
    n = 0
    while not stop.is_set():
        chunk = f"c{n}"
        writer.write(protocol.encode_packed_forward("kube.a.b.c", entries, 1000, chunk))
        while True:
            ack = next(iter(unpacker), None)
            if ack is not None:
                break
            unpacker.feed(await reader.read(65536))
        assert ack == {"ack": chunk}
        counter[0] += 1
        n += 1
    writer.close()


async def _run(args: argparse.Namespace, conn: Connection, port: int) -> None:
    def ask() -> dict:
        conn.send("stats")
        return conn.recv()

    before = ask()
    print(f"listener RSS at start: {before['rss'] / 2**20:.1f} MiB")
    counter, stop = [0], asyncio.Event()
    good = asyncio.create_task(_good_client(port, counter, stop))
    held: list[asyncio.StreamWriter] = []

    async def phase(name: str, attack) -> None:
        start = counter[0]
        t0 = time.monotonic()
        await attack()
        await asyncio.sleep(3)
        stats = ask()
        print(
            f"{name}: good requests acked {counter[0] - start} in {time.monotonic() - t0:.1f} s; "
            f"listener RSS {stats['rss'] / 2**20:.1f} MiB, peak {stats['hwm'] / 2**20:.1f} MiB, "
            f"connections {stats['connections']}, refused {stats['refused']}"
        )

    async def idle() -> None:
        held.extend([(await _open(port, "127.0.0.1"))[1] for _ in range(args.idle)])

    async def huge() -> None:
        async def one(i: int) -> None:
            _, writer = await _login(port, f"127.0.0.{3 + i}", f"huge-{i}")
            with contextlib.suppress(ConnectionError, OSError):
                writer.write(b"\x93\xa1t\xc6" + struct.pack(">I", 100_000_000))
                for _ in range(160):
                    writer.write(b"\x00" * 65536)
                    await writer.drain()
            held.append(writer)

        await asyncio.gather(*(one(i) for i in range(args.huge)))

    async def stalled() -> None:
        for i in range(args.stalled):
            reader, writer = await _open(port, f"127.0.1.{1 + i // 4}")
            await reader.read(65536)  # the HELO; no PING
            held.append(writer)

    await phase(f"{args.idle} idle connections from one address", idle)
    await phase(f"{args.huge} clients claiming 100 MB frames", huge)
    await phase(f"{args.stalled} handshakes never finished", stalled)
    stop.set()
    await good
    for writer in held:
        writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=int, default=500)
    parser.add_argument("--huge", type=int, default=16)
    parser.add_argument("--stalled", type=int, default=200)
    args = parser.parse_args()
    parent, child = mp.Pipe()
    process = mp.get_context("spawn").Process(target=_server_main, args=(child,))
    process.start()
    port = parent.recv()
    try:
        asyncio.run(_run(args, parent, port))
    finally:
        parent.send("stop")
        process.join(10)


if __name__ == "__main__":
    main()
