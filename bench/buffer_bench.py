"""Disk queue throughput: push then pop+ack 1M records of ~250 bytes; prints records/s.

Usage: python bench/buffer_bench.py [--records N] [--batch N] [--producers N] [--dir DIR]
                                     [--gc-gen0 N]

Push: ``--producers`` tasks push batches of ``--batch`` records concurrently (group commit:
one fsync per group), cycling through a pool of 64 pre-built batches so that the process's
memory is the queue's, not the test data's. Pop: one consumer pops 2048 records at a time
and settles each batch (acknowledging it, which deletes segments as they complete).
``--gc-gen0`` raises Python's generation-0 GC threshold (the default 700 costs pop ~20%).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource
import tempfile
import time
from pathlib import Path

from kloghub import buffer, config, core


def make_batches(total: int, size: int) -> list[core.Batch]:
    """Container-log-like records of ~230 bytes encoded."""
    kube = {
        "pod_name": "web-7d9f8c6b5-x2x9k",
        "namespace_name": "shop",
        "container_name": "web",
        "host": "node-1",
    }
    return [
        core.Batch(
            core.Event(
                "kube.shop.web-7d9f8c6b5-x2x9k.web",
                1_700_000_000_000_000_000 + n,
                {
                    "log": f"GET /api/v1/items/{n} 200 {n % 997}ms user=alice req={n:012d}",
                    "stream": "stdout",
                    "kubernetes": kube,
                },
            )
            for n in range(start, min(start + size, total))
        )
        for start in range(0, total, size)
    ]


async def run(directory: Path, total: int, batch_size: int, producers: int) -> None:
    cfg = config.QueueConfig(max_bytes=2 << 30, segment_bytes=8 << 20)
    queue = buffer.DiskQueue(directory, cfg, "bench")
    await queue.start()
    pool = make_batches(64 * batch_size, batch_size)
    count = total // batch_size

    async def produce(first: int) -> None:
        for i in range(first, count, producers):
            await queue.push(pool[i % len(pool)])

    t0 = time.perf_counter()
    await asyncio.gather(*(produce(i) for i in range(producers)))
    push_s = time.perf_counter() - t0
    on_disk = queue.disk_bytes
    total = count * batch_size

    t0 = time.perf_counter()
    popped = 0
    while popped < total:
        batch = await queue.pop(2048, 4 << 20, 1.0)
        popped += len(batch)
        batch.settle(core.Delivery.DELIVERED)
    pop_s = time.perf_counter() - t0
    await queue.stop(30)

    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"records          {total}")
    print(f"bytes on disk    {on_disk / 1e6:.1f} MB ({on_disk / total:.0f} B/record with framing)")
    print(f"push             {total / push_s:,.0f} records/s ({push_s:.2f} s)")
    print(f"pop + ack        {total / pop_s:,.0f} records/s ({pop_s:.2f} s)")
    print(f"peak RSS         {rss_mb:.0f} MB (includes the {len(pool) * batch_size} pooled events)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--gc-gen0", type=int, default=None)
    args = parser.parse_args()
    if args.gc_gen0:
        gc.set_threshold(args.gc_gen0, *gc.get_threshold()[1:])
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        asyncio.run(run(Path(tmp) / "queue", args.records, args.batch, args.producers))


if __name__ == "__main__":
    main()
