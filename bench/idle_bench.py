"""Agent idle cost: 200 quiet container log files, nothing written, for 60 s.

Usage:
    python bench/idle_bench.py [--files 200] [--seconds 60] [--level crawl]

Starts the shipped ``kloghub agent`` (``--level crawl`` by default: no API server is
needed, output to a file) on ``--files`` kubelet-style pod folders, each with one short
log file, waits until every file was read (the startup work is not idle), then samples
the process for ``--seconds``: CPU of the agent process (utime + stime from
``/proc/PID/stat``) as a percentage of one core, RSS at start-up (after the first read)
and peak RSS (VmHWM). Fluent Bit's figure on this machine class (issue 12): 0.17 % of a
core and 20 MiB RSS.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _procstat import cpu_seconds, peak_rss_mib, status_mib


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--level", default="crawl")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kloghub-idle-") as tmp:
        root = Path(tmp)
        pods = root / "pods"
        for i in range(args.files):
            d = pods / f"ns_pod-{i}_{i:08x}-0000-4000-8000-000000000000" / "app"
            d.mkdir(parents=True)
            (d / "0.log").write_bytes(
                b"2026-12-02T10:00:00.000000001Z stdout F quiet line %d\n" % i
            )
        out = root / "out.ndjson"
        cmd = [
            sys.executable,
            "-m",
            "kloghub",
            "agent",
            "--level",
            args.level,
            "--path",
            str(pods / "*/*/*.log"),
            "--output",
            f"file:{out}",
            "--state-dir",
            str(root / "state"),
            "--metrics-addr",
            "127.0.0.1:0",
        ]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if out.exists() and out.read_bytes().count(b"\n") >= args.files:
                    break
                time.sleep(0.2)
            else:
                sys.exit("the agent did not read every file within 120 s")
            time.sleep(2.0)  # let start-up work settle
            rss_start = status_mib(proc.pid, "VmRSS")
            c0, t0 = cpu_seconds(proc.pid), time.monotonic()
            time.sleep(args.seconds)
            c1, t1 = cpu_seconds(proc.pid), time.monotonic()
            hwm = peak_rss_mib(proc.pid)
        finally:
            proc.terminate()
            proc.wait(30)
    pct = 100.0 * (c1 - c0) / (t1 - t0)
    print(f"agent idle, {args.files} quiet files, {t1 - t0:.0f} s, level {args.level}")
    print(f"  CPU            {pct:.3f} % of one core ({c1 - c0:.2f} CPU s)")
    print(f"  RSS after start {rss_start:.1f} MiB, peak {hwm:.1f} MiB")


if __name__ == "__main__":
    main()
