"""What compressing Forward chunks costs per line: gzip (zlib level 1 and 6), libdeflate,
zstd — the choice behind ``CompressedPackedForward`` (issue 12, item 6).

Usage:
    python bench/compress_bench.py [--mib 64] [--chunk-kib 1024]
    (needs the bench-only packages: pip install zstandard deflate)

Builds PackedForward entries as the agent sends them (EventTime + Fluent Bit's kubernetes
layout + the kloghub block, messages from ``gen_cri.py``'s generator), cuts them into
chunks of ``--chunk-kib``, and compresses every chunk with each codec in this process,
reporting CPU ns per line (``time.process_time``), MB/s and the size ratio. It also checks
each output decompresses to the input. gzip stays the wire default because Fluent Bit and
Fluentd read it (``compressed: gzip``); zstd is not part of the Forward protocol spec.
"""

from __future__ import annotations

import argparse
import gzip
import math
import random
import struct
import sys
import time
import zlib
from pathlib import Path

import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gen_cri


def entries(total_bytes: int) -> tuple[list[bytes], int]:
    rng = random.Random(42)
    k8s = {
        "pod_name": "web-7d4b9c-x2kq9",
        "namespace_name": "payments",
        "pod_id": "5b0e7a1c-0000-4000-8000-1234567890ab",
        "container_name": "api",
        "docker_id": "3f1c" * 16,
        "labels": {"app": "web", "pod-template-hash": "7d4b9c"},
    }
    pack = msgpack.Packer(use_bin_type=True).pack
    out: list[bytes] = []
    size = 0
    offset = 0
    now = 1_764_000_000
    mu = math.log(200)
    while size < total_bytes:
        msg_size = max(10, min(8000, int(rng.lognormvariate(mu, 0.6))))
        if rng.random() < 0.35:
            msg = gen_cri.json_message(rng, msg_size, "2026-12-02T10:00:00.123456789Z")
        else:
            msg = gen_cri.text_message(rng, msg_size)
        offset += len(msg) + 40
        record = {
            "log": msg,
            "stream": "stdout",
            "kubernetes": k8s,
            "kloghub": {
                "file": "/var/log/pods/x/api/0.log",
                "file_id": "9f2c" * 4,
                "offset": offset,
            },
        }
        entry = b"\x92\xd7\x00" + struct.pack(">II", now, offset % 10**9) + pack(record)
        out.append(entry)
        size += len(entry)
    return out, size


def chunks(items: list[bytes], chunk_bytes: int) -> list[tuple[bytes, int]]:
    result, part, n, size = [], [], 0, 0
    for e in items:
        part.append(e)
        n += 1
        size += len(e)
        if size >= chunk_bytes:
            result.append((b"".join(part), n))
            part, n, size = [], 0, 0
    if part:
        result.append((b"".join(part), n))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--mib", type=float, default=64)
    ap.add_argument("--chunk-kib", type=int, default=1024)
    args = ap.parse_args()
    items, total = entries(int(args.mib * 2**20))
    parts = chunks(items, args.chunk_kib * 1024)
    lines = len(items)
    codecs: list[tuple[str, object, object]] = [
        ("gzip zlib-1", lambda b: gzip.compress(b, 1), gzip.decompress),
        ("gzip zlib-6", lambda b: gzip.compress(b, 6), gzip.decompress),
        ("zlib-1 raw stream", lambda b: zlib.compress(b, 1), zlib.decompress),
    ]
    try:
        import deflate

        codecs.append(("gzip libdeflate-1", lambda b: deflate.gzip_compress(b, 1), gzip.decompress))
        codecs.append(("gzip libdeflate-6", lambda b: deflate.gzip_compress(b, 6), gzip.decompress))
    except ImportError:
        print("(libdeflate: pip install deflate)")
    try:
        import zstandard

        for level in (1, 3):
            c = zstandard.ZstdCompressor(level=level)
            d = zstandard.ZstdDecompressor()
            codecs.append((f"zstd-{level}", c.compress, d.decompress))
    except ImportError:
        print("(zstd: pip install zstandard)")
    print(
        f"{lines:,} entries, {total / 2**20:.1f} MiB in {len(parts)} chunks of "
        f"~{args.chunk_kib} KiB (median message ~200 B)"
    )
    print(f"{'codec':20} {'ns/line':>9} {'MB/s':>8} {'ratio':>7} {'decomp ns/line':>15}")
    for name, comp, decomp in codecs:
        t0 = time.process_time()
        out = [comp(p) for p, _ in parts]  # type: ignore[operator]
        t1 = time.process_time()
        back = [decomp(o) for o in out]  # type: ignore[operator]
        t2 = time.process_time()
        assert back == [p for p, _ in parts], name
        csize = sum(map(len, out))
        print(
            f"{name:20} {1e9 * (t1 - t0) / lines:9.0f} {total / 1e6 / (t1 - t0):8.0f} "
            f"{total / csize:7.2f} {1e9 * (t2 - t1) / lines:15.0f}"
        )


if __name__ == "__main__":
    main()
