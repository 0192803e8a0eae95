"""The parsers alone: read a file in 1 MiB chunks, split lines, run ``Parser.feed``.

Usage:
    python bench/gen_cri.py --size 200MiB          # writes /tmp/kloghub-bench/cri.log
    python bench/parse_bench.py [/tmp/kloghub-bench/cri.log] [--format auto] [--multiline]
                                [--passes N] [--gc-gen0 N]

Each pass reads the whole file again with a new parser. Per pass it measures the CPU time
of the whole loop (read + split + end offsets + parse) and of ``Parser.feed`` alone; it
prints the best and the median pass (on a shared machine the best pass is the one the
neighbours disturbed least) and the peak RSS. Fluent Bit 5.1 does ~390k lines/s on one
core of the reference machine with its ``cri`` multiline parser, on the same file shape.
"""

from __future__ import annotations

import argparse
import gc
import operator
import resource
import statistics
import time
from itertools import accumulate
from pathlib import Path

from kloghub import config, parse

CHUNK = 1 << 20


def one_pass(
    path: Path, fmt: parse.Format, cfg: config.ParsersConfig
) -> tuple[float, float, int, int, int]:
    """``(loop_cpu, feed_cpu, lines, records, flagged)`` of one pass over ``path``."""
    parser = parse.Parser(fmt, cfg)
    lines_seen = records = flagged = 0
    feed_cpu = stats_cpu = 0.0
    offset = 0  # file offset of the first byte of `leftover`
    leftover = b""
    cpu0 = time.process_time()
    with path.open("rb", buffering=0) as fh:
        while chunk := fh.read(CHUNK):
            data = leftover + chunk if leftover else chunk
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                leftover = data
                continue
            lines = data[: cut - 1].split(b"\n")
            leftover = data[cut:]
            # end_offsets[i] = offset + len(lines[0]) + ... + len(lines[i]) + (i + 1)
            ends = list(
                map(
                    operator.add,
                    accumulate(map(len, lines)),
                    range(offset + 1, offset + len(lines) + 1),
                )
            )
            offset += cut
            t0 = time.process_time()
            out = parser.feed(lines, ends, time.time_ns())
            t1 = time.process_time()
            feed_cpu += t1 - t0
            lines_seen += len(lines)
            records += len(out)
            flagged += sum(1 for r in out if r.flags)
            stats_cpu += time.process_time() - t1  # the bench's own bookkeeping, not counted
            del out  # freeing the records is part of the cost
    out = parser.flush(time.time_ns(), force=True)
    records += len(out)
    return time.process_time() - cpu0 - stats_cpu, feed_cpu, lines_seen, records, flagged


def run(path: Path, fmt: parse.Format, multiline: bool, passes: int) -> None:
    cfg = config.ParsersConfig(multiline=config.MultilineConfig(enabled=multiline))
    gib = path.stat().st_size / 2**30
    results = [one_pass(path, fmt, cfg) for _ in range(passes)]
    _, _, lines, records, flagged = results[0]
    print(f"input: {path} {path.stat().st_size / 2**20:.1f} MiB, {lines} lines")
    print(f"  -> {records} records ({flagged} flagged); multiline {multiline}; {passes} passes")
    for label, index in (("whole loop", 0), ("feed alone", 1)):
        cpus = sorted(r[index] for r in results)
        best, median = cpus[0], statistics.median(cpus)
        print(
            f"{label}: best {lines / best:>9,.0f} lines/s  {best / gib:5.2f} CPU s/GiB"
            f"  {best / lines * 1e9:5.0f} ns/line | median {lines / median:>9,.0f} lines/s"
            f"  {median / gib:5.2f} CPU s/GiB"
        )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {rss:.0f} MiB; gc thresholds {gc.get_threshold()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", type=Path, nargs="?", default=Path("/tmp/kloghub-bench/cri.log"))
    ap.add_argument("--format", default="auto", choices=["auto", "cri", "docker", "text", "json"])
    ap.add_argument("--multiline", action="store_true", help="enable the built-in rules")
    ap.add_argument("--passes", type=int, default=3, help="read the file this many times")
    ap.add_argument(
        "--gc-gen0",
        type=int,
        default=None,
        help="gc.set_threshold(N, 50, 100) first (default: Python's 700, 10, 10)",
    )
    args = ap.parse_args()
    if args.gc_gen0:
        gc.set_threshold(args.gc_gen0, 50, 100)
    run(args.path, args.format, args.multiline, args.passes)


if __name__ == "__main__":
    main()
