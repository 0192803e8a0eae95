"""The shipped collector end to end: Forward in → ECS → bulk bodies to a sink, fed flat out.

Usage:
    python bench/collector_e2e.py                       # ECS → bulk lines → null: sink
    python bench/collector_e2e.py --mode store          # ECS → the embedded store
    python bench/collector_e2e.py --mode decode         # Forward decode alone
    python bench/collector_e2e.py --sink file:/dev/shm/out.ndjson   # any sink URL

``--mode ecs`` (the default) and ``--mode store`` start the real ``kloghub collector``
process (``--level run``: ECS normalization), with one sink (``null:`` — documents
encoded as ``_bulk`` lines, batched, then discarded — or ``store:`` in the state dir, or
``--sink``). A sender in another process replays pre-encoded ``PackedForward`` requests
(``--records`` in chunks of ``--chunk`` entries, the agent's entry layout: ``log``,
``stream``, the pod's ``kubernetes`` map, ``kloghub`` provenance; messages ~200 B median,
35 % JSON, gen_cri.py's vocabulary) over ``--connections`` connections, keeping
``--in-flight`` chunks unacknowledged per connection: as fast as the collector lets it.
The run ends when the sink has acknowledged every record (``kloghub_records_acked_total``
on the collector's ``/metrics``).

``--mode decode`` runs the collector's listener (``transport.ForwardServer``) alone in a
child process with a ``deliver`` that only counts: Forward decode into events, acks.

Reported for the collector process: CPU seconds (utime + stime from ``/proc/PID/stat``,
all threads, start-up included), events per CPU second, wall time from the first byte
sent to the last record acknowledged by the sink, peak RSS (``VmHWM`` from
``/proc/PID/status``), and RSS after the run (``VmRSS``, after ``--settle`` seconds idle).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing
import random
import re
import shutil
import struct
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgpack
import orjson

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))

import _daemon  # noqa: E402 - next to this file
import gen_cri  # noqa: E402 - the generator next to this file
from _procstat import cpu_seconds, status_mib  # noqa: E402 - shared /proc readings, next to this file

from kloghub.transport import protocol  # noqa: E402

_PODS = 16


# ------------------------------------------------------------------ input


def _message(rng: random.Random) -> str:
    size = max(16, min(8000, int(rng.lognormvariate(math.log(200), 0.6))))
    words: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(gen_cri.WORDS)
        words.append(word)
        length += len(word) + 1
    text = " ".join(words)[:size]
    if rng.random() < 0.35:
        return orjson.dumps(
            {"level": rng.choice(gen_cri.LEVELS), "msg": text, "user": "u-42", "latency_ms": 12}
        ).decode()
    return text


def _kubernetes(pod: int) -> dict[str, object]:
    return {
        "pod_name": f"web-6d4cf56db6-{pod:05d}",
        "namespace_name": "shop",
        "pod_id": f"3f1c8a6e-6a43-4a1e-9a51-{pod:012d}",
        "labels": {"app": "web", "pod-template-hash": "6d4cf56db6"},
        "annotations": {"kubectl.kubernetes.io/default-container": "web"},
        "host": "node-1",
        "container_name": "web",
        "docker_id": f"{pod:04d}" * 16,
        "container_image": "registry.example/shop/web:1.4.2",
        "container_hash": "sha256:" + "9c2b" * 16,
    }


def make_chunks(total: int, per_chunk: int, seed: int = 42) -> list[tuple[str, bytes, int]]:
    """``(tag, entries, count)`` per chunk: every record distinct (file, offset)."""
    rng = random.Random(seed)
    packer = msgpack.Packer(use_bin_type=True)
    chunks = []
    base = time.time_ns()
    made = 0
    while made < total:
        pod = (made // per_chunk) % _PODS
        k8s = _kubernetes(pod)
        tag = f"kube.shop.web-6d4cf56db6-{pod:05d}.web"
        path = f"/var/log/pods/shop_web-6d4cf56db6-{pod:05d}_{k8s['pod_id']}/web/0.log"
        count = min(per_chunk, total - made)
        parts = []
        for i in range(count):
            ns = base + (made + i) * 1000
            when = msgpack.ExtType(0, struct.pack(">II", ns // 10**9, ns % 10**9))
            record = {
                "log": _message(rng),
                "stream": "stdout" if rng.random() < 0.8 else "stderr",
                "kubernetes": k8s,
                "kloghub": {"file": path, "file_id": f"{pod}:1", "offset": (made + i) * 256},
            }
            parts.append(packer.pack([when, record]))
        chunks.append((tag, b"".join(parts), count))
        made += count
    return chunks


def _frame(tag: str, entries: bytes, count: int, chunk: str) -> bytes:
    return msgpack.packb([tag, entries, {"chunk": chunk, "size": count}], use_bin_type=True)


# ------------------------------------------------------------------ sender


Auth = tuple[str, str, str]
"""``(username, password, shared key)`` the sender proves itself with (HELO/PING/PONG)."""


async def _handshake(
    writer: asyncio.StreamWriter, answer: Callable[[], Awaitable[Any]], auth: Auth
) -> None:
    user, password, key = auth
    helo = protocol.parse_helo(await answer())
    salt = "0123456789abcdef"
    digest = protocol.shared_key_digest(salt, user, helo.nonce, key)
    proof = protocol.password_digest(helo.auth_salt, user, password)
    writer.write(protocol.encode_ping(user, salt, digest, user, proof))
    if not protocol.parse_pong(await answer()).ok:
        raise SystemExit("handshake refused")


async def _send_connection(
    port: int, frames: list[bytes], ids: list[str], in_flight: int, auth: Auth | None = None
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    unpacker = msgpack.Unpacker(raw=False)
    unacked = set(ids)

    async def answer() -> Any:
        while True:
            for value in unpacker:
                return value
            data = await reader.read(65536)
            if not data:
                raise ConnectionError(f"collector closed with {len(unacked)} chunks unacked")
            unpacker.feed(data)

    if auth is not None:
        await _handshake(writer, answer, auth)
    slots = asyncio.Semaphore(in_flight)

    async def read_acks() -> None:
        while unacked:
            unacked.discard((await answer())["ack"])
            slots.release()

    acks = asyncio.create_task(read_acks())
    for frame in frames:
        await slots.acquire()
        writer.write(frame)
        await writer.drain()
    await acks
    writer.close()


def _sender(
    port: int,
    chunks_path: str,
    connections: int,
    in_flight: int,
    go: object,
    auth: Auth | None = None,
) -> None:
    chunks = msgpack.unpackb(Path(chunks_path).read_bytes(), raw=False)
    per: list[tuple[list[bytes], list[str]]] = [([], []) for _ in range(connections)]
    for n, (tag, entries, count) in enumerate(chunks):
        chunk_id = f"c{n:08d}"
        frames, ids = per[n % connections]
        frames.append(_frame(tag, entries, count, chunk_id))
        ids.append(chunk_id)
    go.wait()  # type: ignore[attr-defined]

    async def main() -> None:
        await asyncio.gather(*(_send_connection(port, f, i, in_flight, auth) for f, i in per))

    asyncio.run(main())


# ------------------------------------------------------------------ measuring


def acked(metrics_port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return -1
    total = 0.0
    for match in re.finditer(r"^kloghub_records_acked_total\{[^}]*\} (\S+)$", text, re.M):
        total += float(match.group(1))
    return int(total)


def collector_config(args: argparse.Namespace, state: Path, port: int, mport: int) -> str:
    sink = args.sink or ("null:" if args.mode == "ecs" else f"store:{state / 'store.db'}")
    lines = [
        "collector:",
        f"  listen: 127.0.0.1:{port}",
        f"  state_dir: {state / 'state'}",
        f"  metrics_addr: 127.0.0.1:{mport}",
        "  log_level: warning",
        # Level run refuses peers that prove nothing; the bench's sender is one such peer.
        "  listener:",
        "    unauthenticated: allow",
        f"    max_connections_per_peer: {max(16, args.connections)}",
    ]
    if args.in_flight_bytes:
        lines.append(f"  max_in_flight_bytes: {args.in_flight_bytes}")
    lines += ["  sinks:", f"    - url: '{sink}'"]
    return "\n".join(lines) + "\n"


def run_collector(args: argparse.Namespace, chunks_path: Path, records: int) -> None:
    port, mport = _daemon.free_port(), _daemon.free_port()
    state = Path(tempfile.mkdtemp(prefix="kloghub-ce2e-", dir=args.tmp))
    cfg = state / "collector.yaml"
    cfg.write_text(collector_config(args, state, port, mport))
    log = state / "collector.log"
    proc = _daemon.start("collector", "run", cfg, log, args.profile)
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    sender = ctx.Process(
        target=_sender, args=(port, str(chunks_path), args.connections, args.in_flight, go)
    )
    try:
        _daemon.wait_port(port, proc, log)
        sender.start()
        time.sleep(2)  # the sender builds its frames
        cpu0 = cpu_seconds(proc.pid)
        started = time.perf_counter()
        go.set()
        peak_seen = 0.0
        while (n := acked(mport)) < records:
            if proc.poll() is not None:
                raise SystemExit(f"collector exited ({proc.returncode}); see {log}")
            if time.perf_counter() - started > args.timeout:
                raise SystemExit(f"timeout: {n} of {records} records acked by the sink")
            peak_seen = max(peak_seen, status_mib(proc.pid, "VmRSS"))
            # Each look is a /metrics scrape the collector pays for (~2 % of its CPU at
            # 20 a second): a few a second still end the run within a fraction of it.
            time.sleep(args.poll)
        wall = time.perf_counter() - started
        cpu = cpu_seconds(proc.pid) - cpu0
        hwm = status_mib(proc.pid, "VmHWM")
        sender.join(30)
        time.sleep(args.settle)
        after = status_mib(proc.pid, "VmRSS")
    finally:
        _daemon.stop(proc)
        if sender.is_alive():
            sender.kill()
        if not args.keep:
            shutil.rmtree(state, ignore_errors=True)
    print(
        f"mode={args.mode} records={records:,} chunk={args.chunk} "
        f"connections={args.connections} in_flight={args.in_flight}"
    )
    print(
        f"collector cpu={cpu:.2f}s events/cpu-s={records / cpu:,.0f} wall={wall:.2f}s "
        f"events/s={records / wall:,.0f} peak_rss={hwm:.0f}MiB "
        f"rss_after={after:.0f}MiB (idle {args.settle:.0f}s)"
    )


# ------------------------------------------------------------------ decode mode


def _decode_child(port: int, expected: int, ready: object, result: object) -> None:
    from kloghub import config, core, runtime, transport

    runtime.tune_gc()

    async def main() -> None:
        received = 0
        done = asyncio.Event()

        async def deliver(batch: core.Batch) -> None:
            nonlocal received
            received += len(batch)
            if received >= expected:
                done.set()

        server = transport.ForwardServer(f"127.0.0.1:{port}", config.ListenerConfig(), deliver)
        await server.start()
        ready.set()  # type: ignore[attr-defined]
        await done.wait()
        await server.stop(5)

    asyncio.run(main())


def run_decode(args: argparse.Namespace, chunks_path: Path, records: int) -> None:
    port = _daemon.free_port()
    ctx = multiprocessing.get_context("spawn")
    ready, go = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_decode_child, args=(port, records, ready, None))
    child.start()
    ready.wait(60)
    sender = ctx.Process(
        target=_sender, args=(port, str(chunks_path), args.connections, args.in_flight, go)
    )
    sender.start()
    time.sleep(2)
    cpu0 = cpu_seconds(child.pid)  # type: ignore[arg-type]
    started = time.perf_counter()
    go.set()
    cpu = hwm = 0.0
    while child.is_alive():
        with contextlib.suppress(OSError, IndexError):
            cpu = cpu_seconds(child.pid) - cpu0  # type: ignore[arg-type]
            hwm = max(hwm, status_mib(child.pid, "VmHWM"))  # type: ignore[arg-type]
        time.sleep(0.01)
    wall = time.perf_counter() - started
    sender.join(30)
    print(f"mode=decode records={records:,} chunk={args.chunk} connections={args.connections}")
    print(
        f"listener cpu={cpu:.2f}s records/cpu-s={records / cpu:,.0f} wall={wall:.2f}s "
        f"peak_rss={hwm:.0f}MiB"
    )


# ------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["ecs", "store", "decode"], default="ecs")
    parser.add_argument("--sink", help="sink URL instead of null: / store:")
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=1000, help="entries per request")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--in-flight", type=int, default=8, help="unacked chunks per connection")
    parser.add_argument("--in-flight-bytes", help="collector.max_in_flight_bytes")
    parser.add_argument("--settle", type=float, default=10.0, help="idle seconds before VmRSS")
    parser.add_argument("--timeout", type=float, default=1200.0)
    parser.add_argument("--poll", type=float, default=0.25, help="seconds between /metrics looks")
    parser.add_argument("--tmp", default=None, help="where the state dir goes")
    parser.add_argument("--data", type=Path, default=Path("/tmp/kloghub-bench-collector"))
    parser.add_argument("--profile", type=Path, help="cProfile the collector into this file")
    parser.add_argument("--keep", action="store_true", help="keep the state dir and log")
    args = parser.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)
    chunks_path = args.data / f"chunks-{args.records}-{args.chunk}.msgpack"
    if not chunks_path.exists():
        chunks_path.write_bytes(
            msgpack.packb(make_chunks(args.records, args.chunk), use_bin_type=True)
        )
    if args.mode == "decode":
        run_decode(args, chunks_path, args.records)
    else:
        run_collector(args, chunks_path, args.records)


if __name__ == "__main__":
    main()
