"""Tail → parse → null output: lines/s, CPU seconds per GiB, peak RSS.

Usage:
    python bench/gen_cri.py --out \
        /tmp/bench/pods/ns_pod_0b3c5a4e-1111-2222-3333-444455556666/app/0.log
    python bench/tail_bench.py /tmp/bench/pods

The agent's real source (`kloghub.sources.LogSource`: discovery, chunked reads, CRI
parsing with P/F joining, entry encoding into chunks, finalizers, checkpoint commits) runs against
a null sink that acknowledges every chunk at once. Fluent Bit 5.1 does ~390k lines/s
with its `cri` multiline parser on one core of this machine on the same file shape.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import tempfile
import time
from pathlib import Path

from kloghub import config, core, runtime, sources


async def run(pods: Path, state: Path) -> tuple[int, float]:
    total = sum(p.stat().st_size for p in pods.glob("*/*/*.log"))
    count = 0
    done = asyncio.Event()
    read_bytes = 0

    async def sink(chunk: core.Chunk) -> None:
        nonlocal count
        count += chunk.count
        chunk.settle(core.Delivery.DELIVERED)

    src = config.SourcesConfig(
        containers=config.ContainerSource(paths=[str(pods / "*/*/*.log")]),
        poll_interval=0.01,
    )
    source = sources.LogSource(src, config.ParsersConfig(), state, sink)
    started = time.perf_counter()
    await source.start()
    while not done.is_set():
        read_bytes = sum(tf.committed for tf in source.tailer.files.values())
        if read_bytes >= total:
            break
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - started
    await source.stop(5)
    return count, elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("pods", type=Path, help="a /var/log/pods-like tree")
    args = parser.parse_args()
    total = sum(p.stat().st_size for p in args.pods.glob("*/*/*.log"))
    state = Path(tempfile.mkdtemp(prefix="kloghub-bench-"))
    runtime.tune_gc()  # as the daemon does after start
    cpu0 = time.process_time()
    try:
        count, elapsed = asyncio.run(run(args.pods, state))
    finally:
        shutil.rmtree(state, ignore_errors=True)
    cpu = time.process_time() - cpu0
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gib = total / 2**30
    print(f"input: {total / 2**20:.1f} MiB, records: {count}")
    print(f"wall: {elapsed:.2f} s  records/s: {count / elapsed:,.0f}")
    print(f"cpu: {cpu:.2f} s  cpu s/GiB: {cpu / gib:.1f}  peak RSS: {rss_mib:.0f} MiB")


if __name__ == "__main__":
    main()
