"""The parsers alone: read a file in 1 MiB chunks, split lines, run ``Parser.feed``.

Usage:
    python bench/gen_cri.py --size 200MiB          # writes /tmp/kloghub-bench/cri.log
    python bench/parse_bench.py [/tmp/kloghub-bench/cri.log] [--format auto] [--multiline]
                                [--repeat N] [--gc-gen0 N]

Prints lines/s and CPU seconds per GiB for the whole loop (read + split + offsets + parse)
and for ``Parser.feed`` alone, and the peak RSS. Fluent Bit 5.1 does ~390k lines/s on one
core of the reference machine with its ``cri`` multiline parser, on the same file shape.
"""

from __future__ import annotations

import argparse
import gc
import operator
import resource
import time
from itertools import accumulate
from pathlib import Path

from kloghub import config, parse

CHUNK = 1 << 20


def run(path: Path, fmt: parse.Format, multiline: bool, repeat: int) -> None:
    cfg = config.ParsersConfig(multiline=config.MultilineConfig(enabled=multiline))
    total_bytes = path.stat().st_size * repeat
    lines_seen = 0
    records = 0
    flagged = 0
    feed_cpu = 0.0
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    for _ in range(repeat):
        parser = parse.Parser(fmt, cfg)
        offset = 0  # file offset of the first byte of `leftover`
        leftover = b""
        with path.open("rb", buffering=0) as fh:
            while True:
                chunk = fh.read(CHUNK)
                if not chunk:
                    break
                data = leftover + chunk if leftover else chunk
                cut = data.rfind(b"\n") + 1
                if cut == 0:
                    leftover = data
                    continue
                lines = data[: cut - 1].split(b"\n")
                leftover = data[cut:]
                # end_offsets[i] = offset + sum(len(lines[:i+1])) + (i + 1)
                ends = list(
                    map(
                        operator.add,
                        accumulate(map(len, lines)),
                        range(offset + 1, offset + len(lines) + 1),
                    )
                )
                offset += cut
                now = time.time_ns()
                t0 = time.process_time()
                out = parser.feed(lines, ends, now)
                feed_cpu += time.process_time() - t0
                lines_seen += len(lines)
                records += len(out)
                flagged += sum(1 for r in out if r.flags)
        out = parser.flush(time.time_ns(), force=True)
        records += len(out)
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    gib = total_bytes / 2**30
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"input: {total_bytes / 2**20:.1f} MiB, {lines_seen} lines -> {records} records")
    print(f"  ({flagged} flagged), format {parser.format}, multiline {multiline}")
    print(
        f"whole loop : {lines_seen / cpu:>10,.0f} lines/s (CPU)  {cpu / gib:6.2f} CPU s/GiB"
        f"  wall {wall:.2f} s"
    )
    print(
        f"feed alone : {lines_seen / feed_cpu:>10,.0f} lines/s (CPU)  "
        f"{feed_cpu / gib:6.2f} CPU s/GiB  {feed_cpu / lines_seen * 1e9:.0f} ns/line"
    )
    print(f"peak RSS   : {rss:.0f} MiB   gc thresholds {gc.get_threshold()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", type=Path, nargs="?", default=Path("/tmp/kloghub-bench/cri.log"))
    ap.add_argument("--format", default="auto", choices=["auto", "cri", "docker", "text", "json"])
    ap.add_argument("--multiline", action="store_true", help="enable the built-in rules")
    ap.add_argument("--repeat", type=int, default=1, help="parse the file this many times")
    ap.add_argument(
        "--gc-gen0",
        type=int,
        default=None,
        help="gc.set_threshold(N, 50, 100) first (default: Python's 700, 10, 10)",
    )
    args = ap.parse_args()
    if args.gc_gen0:
        gc.set_threshold(args.gc_gen0, 50, 100)
    run(args.path, args.format, args.multiline, args.repeat)


if __name__ == "__main__":
    main()
