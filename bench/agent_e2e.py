"""The shipped agent end to end: tail → parse → metadata → disk buffer → Forward with ack.

Usage:
    python bench/agent_e2e.py                       # one 200 MiB CRI file
    python bench/agent_e2e.py --files 50 --size 4MiB  # many pods
    python bench/agent_e2e.py --redact              # redaction on
    python bench/agent_e2e.py --mode discard        # tail → parse → discard (no buffer, no wire)

``--mode forward`` (the default) starts the real ``kloghub agent`` process (``--level
walk``, pod metadata from the file path only: no API server) against a minimal Forward
receiver in another process (Python msgpack; it acks every chunk as soon as it has read
it, and counts records from each request's ``size`` option), and waits until every
record of the generated files was acknowledged. ``--mode discard`` runs the agent's
source (``kloghub.sources.LogSource``) in a child process with a sink that settles what
it gets at once: the tail → parse → encode cost with nothing behind it.

Reported for the agent process only: CPU seconds (utime + stime from ``/proc/PID/stat``,
all threads, start-up included), lines per CPU second (physical lines of the files),
wall time from process start to the last ack, peak RSS (``VmHWM`` from
``/proc/PID/status``). Input files are generated once with ``bench/gen_cri.py`` into
``--data`` and reused. The kloghub package is byte-compiled first (as ``pip install``
and the image do), so that a checkout run with ``PYTHONDONTWRITEBYTECODE`` does not count
compiling kloghub's sources (~0.2 CPU-s) as the agent's start-up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))

import _daemon  # noqa: E402 - next to this file
import gen_cri  # noqa: E402 - the generator next to this file
from _procstat import cpu_seconds, peak_rss_mib  # noqa: E402 - shared /proc readings, next to this file

# ------------------------------------------------------------------ input


def make_input(data: Path, files: int, size: int) -> tuple[Path, int, int, int]:
    """The pods tree (generated once): its path, bytes, physical lines and records."""
    root = data / f"{files}x{size}"
    pods = root / "pods"
    stamp = root / "done"
    if not stamp.exists():
        shutil.rmtree(root, ignore_errors=True)
        for i in range(files):
            uid = f"0b3c5a4e-1111-2222-3333-{i:012d}"
            out = pods / f"bench_pod-{i}_{uid}" / "app" / "0.log"
            gen_cri.generate(out, size, 42 + i, 1024, "cri")
        stamp.write_text("ok\n")
    total = lines = records = 0
    for path in sorted(pods.glob("*/*/*.log")):
        blob = path.read_bytes()
        total += len(blob)
        lines += blob.count(b"\n")
        records += blob.count(b" stdout F ") + blob.count(b" stderr F ")
    return pods, total, lines, records


# ------------------------------------------------------------------ receiver


def _receiver(port: int, counter: multiprocessing.sharedctypes.Synchronized[int]) -> None:  # type: ignore[name-defined]
    import msgpack

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        unpacker = msgpack.Unpacker(raw=False, max_buffer_size=64 * 2**20)
        packer = msgpack.Packer(use_bin_type=True)
        try:
            while data := await reader.read(1 << 20):
                unpacker.feed(data)
                for message in unpacker:
                    if not isinstance(message, list) or len(message) < 2:
                        continue  # keepalive or anything else
                    option = message[2] if len(message) > 2 else {}
                    entries = message[1]
                    count = option.get("size")
                    if count is None:
                        if isinstance(entries, bytes):
                            if option.get("compressed") == "gzip":
                                entries = zlib.decompress(entries, wbits=31)
                            inner = msgpack.Unpacker(raw=False)
                            inner.feed(entries)
                            count = sum(1 for _ in inner)
                        else:
                            count = len(entries) if isinstance(entries, list) else 1
                    with counter.get_lock():
                        counter.value += int(count)
                    if "chunk" in option:
                        writer.write(packer.pack({"ack": option["chunk"]}))
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# ------------------------------------------------------------------ measuring


def agent_config(pods: Path, state: Path, port: int, redact: bool, compress: str) -> str:
    return f"""
agent:
  state_dir: {state}
  metrics_addr: 127.0.0.1:{_daemon.free_port()}
  log_level: warning
  enrichment:
    kubernetes_api: false
  sources:
    containers:
      paths: ["{pods}/*/*/*.log"]
    node:
      enabled: false
  filters:
    redact:
      enabled: {"true" if redact else "false"}
  outputs:
    - url: forward://127.0.0.1:{port}
      compress: {compress}
"""


def byte_compile() -> None:
    """Compile the kloghub package that the agent will import (what an install does)."""
    import kloghub

    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    package = str(Path(kloghub.__file__).parent)
    subprocess.run([sys.executable, "-m", "compileall", "-q", package], env=env, check=True)


def run_forward(args: argparse.Namespace, pods: Path, records: int) -> tuple[float, float, float]:
    port = _daemon.free_port()
    counter = multiprocessing.Value("q", 0)
    receiver = multiprocessing.Process(target=_receiver, args=(port, counter), daemon=True)
    receiver.start()
    state = Path(tempfile.mkdtemp(prefix="kloghub-e2e-"))
    cfg = state / "agent.yaml"
    cfg.write_text(agent_config(pods, state / "state", port, args.redact, args.compress))
    started = time.perf_counter()
    proc = _daemon.start("agent", "walk", cfg, state / "agent.log")
    try:
        while counter.value < records:
            if proc.poll() is not None:
                raise SystemExit(f"agent exited ({proc.returncode}); see {state / 'agent.log'}")
            if time.perf_counter() - started > args.timeout:
                raise SystemExit(f"timeout: {counter.value} of {records} records acked")
            time.sleep(0.02)
        wall = time.perf_counter() - started
        cpu = cpu_seconds(proc.pid)
        rss = peak_rss_mib(proc.pid)
        if counter.value != records:
            print(f"warning: {counter.value} records acked, {records} expected")
    finally:
        _daemon.stop(proc)
        receiver.kill()
        if not args.keep:
            shutil.rmtree(state, ignore_errors=True)
    return wall, cpu, rss


# ------------------------------------------------------------------ discard mode


def _discard_child(pods: Path, redact: bool) -> None:
    """In a child process: the agent's source with a sink that settles at once."""
    from kloghub import config, core, filters, runtime, sources

    total = sum(p.stat().st_size for p in pods.glob("*/*/*.log"))

    async def sink(item: object) -> None:
        settle = getattr(item, "settle", None)
        if settle is not None:
            settle(core.Delivery.DELIVERED)

    async def run(state: Path) -> None:
        src = config.SourcesConfig(
            containers=config.ContainerSource(paths=[str(pods / "*/*/*.log")]),
            poll_interval=0.01,
        )
        fcfg = config.FiltersConfig(redact=config.RedactionConfig(enabled=redact))
        chain = filters.Filters(fcfg) if redact else None
        source = sources.LogSource(src, config.ParsersConfig(), state, sink, filters=chain)
        await source.start()
        while sum(tf.committed for tf in source.tailer.files.values()) < total:
            await asyncio.sleep(0.01)
        await source.stop(5)

    runtime.tune_gc()
    state = Path(tempfile.mkdtemp(prefix="kloghub-discard-"))
    try:
        asyncio.run(run(state))
    finally:
        shutil.rmtree(state, ignore_errors=True)


def run_discard(args: argparse.Namespace, pods: Path) -> tuple[float, float, float]:
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--discard-child", str(pods)]
        + (["--redact"] if args.redact else [])
    )
    cpu = rss = 0.0
    while proc.poll() is None:
        # the last sample before exit: the child sleeps 10 ms between checks
        with contextlib.suppress(OSError, IndexError):
            cpu = max(cpu, cpu_seconds(proc.pid))
            rss = max(rss, peak_rss_mib(proc.pid))  # a zombie has no VmHWM any more
        time.sleep(0.01)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"discard child failed ({proc.returncode})")
    return wall, cpu, rss


# ------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["forward", "discard"], default="forward")
    parser.add_argument("--files", type=int, default=1)
    parser.add_argument("--size", type=gen_cri.parse_size, default=None, help="per file")
    parser.add_argument("--redact", action="store_true")
    parser.add_argument("--compress", choices=["none", "gzip"], default="none")
    parser.add_argument("--data", type=Path, default=Path("/tmp/kloghub-bench-e2e"))
    parser.add_argument("--timeout", type=float, default=1200.0)
    parser.add_argument("--keep", action="store_true", help="keep the state dir and agent log")
    parser.add_argument("--discard-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.discard_child is not None:
        _discard_child(args.discard_child, args.redact)
        return
    size = args.size if args.size is not None else (200 * 2**20) // args.files
    pods, total, lines, records = make_input(args.data, args.files, size)
    byte_compile()
    if args.mode == "forward":
        wall, cpu, rss = run_forward(args, pods, records)
    else:
        wall, cpu, rss = run_discard(args, pods)
    print(
        f"mode={args.mode} files={args.files} input={total / 2**20:.1f}MiB lines={lines} "
        f"records={records} redact={args.redact} compress={args.compress}"
    )
    print(
        f"agent cpu={cpu:.2f}s lines/cpu-s={lines / cpu:,.0f} wall={wall:.2f}s "
        f"lines/s={lines / wall:,.0f} peak_rss={rss:.0f}MiB"
    )


if __name__ == "__main__":
    main()
