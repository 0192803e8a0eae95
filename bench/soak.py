"""Soak: issue 16's chaos scenario for a long run, with the processes sampled from /proc.

    set -a; . ~/.cache/kloghub/run/servers.env; set +a
    .venv/bin/python bench/soak.py --seconds 1800 --rate 5000

The scenario of ``tests/chaos`` (real ``kloghub agent`` and ``kloghub collector``
processes, kubelet rotation with delayed gzip, one copytruncate file, the collector's
sinks the harness's OpenSearch behind a TCP proxy and an embedded store). Its kills and
the OpenSearch outage fall in the first ``--chaos-fraction`` of the run (``--no-chaos``:
none); the rest is steady load, where memory must stay flat. Every ``--interval`` seconds
the agent and the collector are sampled: RSS (``VmRSS``), peak (``VmHWM``), CPU seconds
(utime + stime), descriptors held and deleted files among them.

Reported: lines written, in OpenSearch and in the store (missing, duplicated); per daemon
the peak RSS over all its lives, CPU seconds and CPU share over the run, the RSS slope of
its last life after ``--warmup`` seconds (MiB per 10 minutes, least squares), the most
descriptors held and the longest a deleted file stayed open (to compare with
``close_deleted_after``, 60 s).
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))
sys.path.insert(1, str(_HERE.parent))

from _procstat import cpu_seconds, open_files, status_mib  # noqa: E402 - next to this file
from tests.chaos._scenario import Run, Scenario  # noqa: E402 - the scenario of the tests


@dataclasses.dataclass
class Sample:
    at: float
    pid: int
    rss: float
    hwm: float
    cpu: float
    fds: int
    deleted: list[str]


class Sampler:
    """Samples of one daemon (across its restarts: each life has its own pid)."""

    def __init__(self, name: str, interval: float) -> None:
        self.name = name
        self.interval = interval
        self.samples: list[Sample] = []
        self._next = 0.0
        self.deleted_since: dict[str, float] = {}
        self.longest_deleted = 0.0

    def __call__(self, daemon: object) -> None:
        now = time.monotonic()
        proc = getattr(daemon, "proc", None)
        if proc is None or proc.poll() is not None or now < self._next:
            return
        self._next = now + self.interval
        pid = proc.pid
        fds, deleted = open_files(pid)
        self.samples.append(
            Sample(
                now,
                pid,
                status_mib(pid, "VmRSS"),
                status_mib(pid, "VmHWM"),
                cpu_seconds(pid),
                fds,
                deleted,
            )
        )
        for path in deleted:
            self.deleted_since.setdefault(f"{pid}:{path}", now)
        held = {f"{pid}:{path}" for path in deleted}
        for key in list(self.deleted_since):
            if key not in held:
                del self.deleted_since[key]
            else:
                self.longest_deleted = max(self.longest_deleted, now - self.deleted_since[key])

    def report(self, warmup: float) -> str:
        if not self.samples:
            return f"{self.name}: no samples"
        lives: dict[int, list[Sample]] = {}
        for s in self.samples:
            lives.setdefault(s.pid, []).append(s)
        cpu = sum(life[-1].cpu for life in lives.values())
        span = self.samples[-1].at - self.samples[0].at
        last = list(lives.values())[-1]
        steady = [s for s in last if s.at - last[0].at >= warmup]
        slope = _slope([(s.at, s.rss) for s in steady]) * 600 if len(steady) >= 3 else float("nan")
        return (
            f"{self.name}: lives={len(lives)} peak_rss={max(s.hwm for s in self.samples):.0f}MiB "
            f"rss_last={last[-1].rss:.0f}MiB cpu={cpu:.0f}s "
            f"({100 * cpu / max(span, 1):.0f}% of a core) "
            f"rss_slope={slope:+.2f}MiB/10min over {len(steady)} samples of the last life "
            f"(after {warmup:.0f}s) max_fds={max(s.fds for s in self.samples)} "
            f"longest_deleted_open={self.longest_deleted:.0f}s"
        )


def _slope(points: list[tuple[float, float]]) -> float:
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=1800.0)
    parser.add_argument("--rate", type=int, default=5000, help="lines per second, all files")
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--rotate-bytes", type=int, default=1024 * 1024)
    parser.add_argument("--keep", type=int, default=5)
    parser.add_argument("--outage", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--chaos-fraction", type=float, default=0.2)
    parser.add_argument("--no-chaos", action="store_true")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=120.0)
    parser.add_argument("--opensearch", default=None, help="default: KLOGHUB_TEST_OPENSEARCH_URL")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="kept afterwards (default: a temporary one)"
    )
    args = parser.parse_args()

    import os

    url = args.opensearch or os.environ.get("KLOGHUB_TEST_OPENSEARCH_URL")
    if not url:
        parser.error("no OpenSearch: source ~/.cache/kloghub/run/servers.env or --opensearch")
    seed = args.seed if args.seed is not None else random.randrange(10**6)
    chaos = not args.no_chaos
    scenario = Scenario(
        seed=seed,
        seconds=args.seconds,
        files=args.files,
        rate=args.rate,
        rotate_bytes=args.rotate_bytes,
        keep=args.keep,
        outage=args.outage if chaos else 0.0,
        agent_kills=3 if chaos else 0,
        collector_kills=2 if chaos else 0,
        chaos_until=args.chaos_fraction,
        drain_timeout=max(600.0, args.seconds / 2),
        sink_outage=chaos,
    )
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="kloghub-soak-"))
    run = Run(scenario, workdir, url)
    agent, collector = Sampler("agent", args.interval), Sampler("collector", args.interval)
    run.samplers.append(lambda: agent(run.agent))
    run.samplers.append(lambda: collector(run.collector))
    started = time.monotonic()
    result = None
    try:
        result = run.run()
    finally:
        run.cleanup()
        clean = result is not None and not (
            result.missing(result.opensearch) or result.duplicates(result.opensearch)
        )
        if args.workdir is None and clean:
            shutil.rmtree(workdir, ignore_errors=True)  # kept when something is wrong
    wall = time.monotonic() - started
    print(f"soak: {time.strftime('%Y-%m-%d')} seed={seed} wall={wall:.0f}s workdir={workdir}")
    print(f"soak: {result.summary()}")
    print(f"soak: {agent.report(args.warmup)}")
    print(f"soak: {collector.report(args.warmup)}")


if __name__ == "__main__":
    main()
