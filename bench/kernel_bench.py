"""The file encoder alone: compiled kernel vs Python reference, lines per CPU-second.

Usage:
    python bench/kernel_bench.py [FILE] [--size 200MiB] [--format cri|docker] [--passes N]
                                 [--chunk 1MiB] [--impl both|native|reference]

FILE defaults to /tmp/kloghub-bench/cri.log (docker.log with ``--format docker``), written
by ``bench/gen_cri.py`` when missing (median message ~200 B, 35 % JSON, 2.5 % of the lines
in P groups). The file is read into memory once; each pass feeds it in ``--chunk`` pieces
(as the tailer reads) to a new ``FileEncoder`` with a pod context and force-flushes at the
end, so a pass measures read-buffer split + parse + partial joining + entry encoding, not
the disk. Per implementation it prints the best and median pass (CPU time of this process)
and checks that both implementations produced the same entries (SHA-256).
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gen_cri

from kloghub import config, kernels

_CTX = kernels.EntryContext(
    "/var/log/pods/shop_orders-5f6d7c8b9-qw12e_0d1e/orders/0.log",
    "8a1f-0d1e",
    {
        "pod_name": "orders-5f6d7c8b9-qw12e",
        "namespace_name": "shop",
        "pod_id": "0d1e",
        "container_name": "orders",
        "labels": {"app": "orders", "pod-template-hash": "5f6d7c8b9"},
        "host": "node-1",
    },
    {"kind": "Deployment", "name": "orders"},
    None,
)


def one_pass(
    make: type[kernels.CompiledFileEncoder] | type[kernels.ReferenceFileEncoder],
    fmt: str,
    data: bytes,
    chunk: int,
    digest: hashlib._Hash | None = None,
) -> tuple[float, int, int, int]:
    """``(cpu_seconds, lines, entries, entry_bytes)`` of one pass (hashing the entries
    into ``digest`` when given: the check pass, not timed)."""
    lines = count = size = 0
    now = time.time_ns()
    cpu0 = time.process_time()
    enc = make(fmt, config.ParsersConfig(), None, _CTX, 0)
    for start in range(0, len(data), chunk):
        out = enc.feed(data[start : start + chunk], now)
        lines += out.lines
        count += out.count
        size += len(out.entries)
        if digest is not None:
            digest.update(out.entries)
    out = enc.flush(now, force=True)
    count += out.count
    size += len(out.entries)
    if digest is not None:
        digest.update(out.entries)
    cpu = time.process_time() - cpu0
    return cpu, lines, count, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", type=Path)
    parser.add_argument("--size", type=gen_cri.parse_size, default=200 * 2**20)
    parser.add_argument("--format", choices=["cri", "docker"], default="cri")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--chunk", type=gen_cri.parse_size, default=2**20)
    parser.add_argument("--impl", choices=["both", "native", "reference"], default="both")
    args = parser.parse_args()
    path = args.file or Path(f"/tmp/kloghub-bench/{args.format}.log")
    if not path.exists():
        print(f"generating {path} ({args.size / 2**20:.0f} MiB, {args.format}) ...", flush=True)
        gen_cri.generate(path, args.size, 42, 1024, args.format)
    data = path.read_bytes()
    print(f"{path}: {len(data) / 2**20:.1f} MiB, chunks of {args.chunk} bytes")
    impls: list[tuple[str, type[kernels.CompiledFileEncoder] | type[kernels.ReferenceFileEncoder]]]
    impls = []
    if args.impl in {"both", "native"}:
        if not kernels.native_available():
            sys.exit("the compiled kernels are not built (make venv) or KLOGHUB_KERNELS=python")
        impls.append(("native", kernels.CompiledFileEncoder))
    if args.impl in {"both", "reference"}:
        impls.append(("reference", kernels.ReferenceFileEncoder))
    digests = {}
    rates = {}
    for name, make in impls:
        digest = hashlib.sha256()
        one_pass(make, args.format, data, args.chunk, digest)
        digests[name] = digest.hexdigest()
        cpus = []
        for _ in range(args.passes):
            cpu, lines, count, size = one_pass(make, args.format, data, args.chunk)
            cpus.append(cpu)
        best, median = min(cpus), statistics.median(cpus)
        rates[name] = lines / best
        print(
            f"{name:>9}: {lines} lines -> {count} entries ({size / 2**20:.1f} MiB); "
            f"best {best:.2f} s = {lines / best:,.0f} lines/CPU-s "
            f"({len(data) / 2**20 / best:.0f} MiB/s, {best / lines * 1e9:.0f} ns/line); "
            f"median {median:.2f} s = {lines / median:,.0f} lines/CPU-s"
        )
    if len(digests) == 2:
        same = len(set(digests.values())) == 1
        print(
            f"same entries: {same}; native/reference: {rates['native'] / rates['reference']:.1f}x"
        )
        if not same:
            sys.exit("the implementations disagree")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
