"""Agent → collector over loopback: ForwardOutput → ForwardServer, records/s and CPU per GiB.

Usage:
    python bench/forward_bench.py [--records 1000000] [--compress none|gzip|both]

The collector side runs in its own process (its ``deliver`` only counts), so CPU time is
attributed per side (``time.process_time`` of each process, from the first record to the
last ack). Records follow Fluent Bit's kubernetes layout with log messages of ~200 bytes
(log-normal sizes, median 200), spread over 8 container tags, sent in batches of 1000
events sharing one finalizer as the tailer does. "GiB" is GiB of msgpack entries (the
uncompressed PackedForward payload).

For comparison: Fluent Bit 5.1 does tail → forward → in_forward at ~390k records/s on
this machine (2 shared cores).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing as mp
import random
import time
from multiprocessing.connection import Connection

from kloghub import config, core, transport

WORDS = [
    "request",
    "handled",
    "user",
    "session",
    "cache",
    "miss",
    "hit",
    "upstream",
    "timeout",
    "retry",
    "connection",
    "pool",
    "database",
    "query",
    "slow",
    "commit",
    "rollback",
    "token",
    "refresh",
    "order",
    "payment",
    "shipped",
    "queue",
    "worker",
    "GET",
    "POST",
    "/api/v1/orders",
    "/healthz",
    "status=200",
    "status=500",
    "latency_ms=12",
    "tenant=acme",
]
BATCH = 1000
TAGS = [f"kube.shop.web-6d4cf56db6-{i:05d}.web" for i in range(8)]


def make_records(count: int, seed: int = 42) -> list[dict[str, object]]:
    rng = random.Random(seed)
    records = []
    for i in range(count):
        size = max(20, min(4000, int(rng.lognormvariate(math.log(200), 0.5))))
        words = []
        length = 0
        while length < size:
            word = rng.choice(WORDS)
            words.append(word)
            length += len(word) + 1
        records.append(
            {
                "log": "2026-11-27T06:20:43.123456789Z INFO " + " ".join(words)[:size],
                "stream": "stdout" if i % 5 else "stderr",
                "time": "2026-11-27T06:20:43.123456789Z",
                "kubernetes": {
                    "pod_name": "web-6d4cf56db6-x2x7q",
                    "namespace_name": "shop",
                    "pod_id": "3f1c8a6e-6a43-4a1e-9a51-8f2b9b1b7c11",
                    "labels": {"app": "web", "pod-template-hash": "6d4cf56db6"},
                    "annotations": {},
                    "host": "node-1",
                    "container_name": "web",
                    "docker_id": "4e1a" * 16,
                    "container_image": "registry.example/shop/web:1.4.2",
                    "container_hash": "sha256:" + "9c2b" * 16,
                },
                "kloghub": {
                    "file": "/var/log/pods/shop_web_3f1c/web/0.log",
                    "offset": i * 260,
                },
            }
        )
    return records


# --------------------------------------------------------------------------- collector


def serve(expected: int, pipe: Connection) -> None:
    asyncio.run(_serve(expected, pipe))


async def _serve(expected: int, pipe: Connection) -> None:
    received = 0
    started: list[float] = []
    done = asyncio.Event()

    async def deliver(batch: core.Batch) -> None:
        nonlocal received
        if not started:
            started.extend((time.perf_counter(), time.process_time()))
        received += len(batch)
        if received >= expected:
            done.set()

    server = transport.ForwardServer(
        "127.0.0.1:0", config.ListenerConfig(max_frame_bytes=64 << 20), deliver
    )
    await server.start()
    pipe.send(server.address[1])
    await done.wait()
    wall = time.perf_counter() - started[0]
    cpu = time.process_time() - started[1]
    await server.stop(5)
    pipe.send((received, wall, cpu))


# --------------------------------------------------------------------------- agent


async def send_all(port: int, total: int, compress: str) -> tuple[float, float, int]:
    records = make_records(10_000)
    out = transport.ForwardOutput(
        config.OutputConfig(url=f"forward://127.0.0.1:{port}", compress=compress),
        max_in_flight_chunks=16,
    )
    await out.start()
    acked = asyncio.Event()
    pending = [math.ceil(total / BATCH)]

    def on_settled(_status: core.Delivery) -> None:
        pending[0] -= 1
        if pending[0] == 0:
            acked.set()

    packer = transport.protocol.new_packer()
    payload = (
        sum(len(transport.protocol.pack_entry(packer, 0, r)) for r in records[:1000]) / 1000 * total
    )
    wall0, cpu0 = time.perf_counter(), time.process_time()
    sent = 0
    base_ns = time.time_ns()
    while sent < total:
        count = min(BATCH, total - sent)
        fin = core.Finalizer(on_settled, count=count)
        tag = TAGS[(sent // BATCH) % len(TAGS)]
        await out.send(
            core.Batch(
                [
                    core.Event(tag, base_ns + i, records[i % 10_000], fin)
                    for i in range(sent, sent + count)
                ]
            )
        )
        sent += count
    await out.stop(600)
    await acked.wait()
    return time.perf_counter() - wall0, time.process_time() - cpu0, int(payload)


def run(total: int, compress: str) -> None:
    parent, child = mp.Pipe()
    process = mp.get_context("spawn").Process(target=serve, args=(total, child), daemon=True)
    process.start()
    port = parent.recv()
    wall, cpu, payload = asyncio.run(send_all(port, total, compress))
    received, server_wall, server_cpu = parent.recv()
    process.join(10)
    gib = payload / 2**30
    print(
        f"compress={compress:<4} records={received:>9,}  payload={payload / 2**20:,.0f} MiB  "
        f"rate={total / wall:>9,.0f} rec/s  "
        f"agent cpu={cpu:6.2f}s ({cpu / gib:6.1f} s/GiB)  "
        f"collector cpu={server_cpu:6.2f}s ({server_cpu / gib:6.1f} s/GiB, "
        f"{received / server_wall:,.0f} rec/s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--compress", choices=["none", "gzip", "both"], default="both")
    args = parser.parse_args()
    for compress in ("none", "gzip") if args.compress == "both" else (args.compress,):
        run(args.records, compress)


if __name__ == "__main__":
    main()
