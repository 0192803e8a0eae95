"""Detections in the collector: CPU per event with the default pack on and off, and the
latency from an audit line written to its alert stored.

Usage:
    python bench/detect_bench.py cpu [--records 400000] [--audit-share 0.2]
    python bench/detect_bench.py latency [--rate 10000] [--seconds 30]

``cpu`` starts the real ``kloghub collector --level run`` twice, with
``detections.enabled`` false then true (sink ``null:``: documents encoded as ``_bulk``
lines, then discarded), and replays the same pre-encoded ``PackedForward`` requests to
each as fast as it takes them, over ``--connections`` connections that authenticate as a
control-plane identity (HELO/PING/PONG with a user of role ``control-plane``, so audit
records become audit documents). The input is collector_e2e.py's container log mix with
``--audit-share`` of the records replaced by audit events built from the real lines of
tests/fixtures/kube-audit/audit.log, each with its own auditID, in chunks of ``--chunk``
records, tag ``audit``: the fixture's lines that raise nothing (pods created, patched and
deleted, a secret created, RBAC objects, refusals…) and one of its five alerting lines
(exec, secret-reader Role, secret read, cluster-admin binding) in every
``--alert-every`` (``0``: the fixture as it is, a quarter of it alerting). Reported per
run: collector CPU seconds (utime + stime, all threads, from the first byte sent to the
last record acknowledged by the sink), events per CPU second, and the difference of the
medians.

``latency`` runs the shipped pipeline: a writer appends audit lines to a file at
``--rate`` lines per second (in 10 ms ticks), a real agent at level run tails it
(``sources.audit``, defaults otherwise: 1 s Forward flush, 250 ms buffer commit) and
forwards to a real collector with the default pack and an embedded store sink (1 s
batch flush). One line in ``--alert-every`` is an exec into a pod (rule "Exec or attach
into a pod"); the others are the fixture's events that raise nothing. Each line's
auditID holds the time it was written; a reader polls the store every 20 ms for new
alerts and exec audit documents and takes latency = time seen in the store - time
written, per exec alert and per exec event (``--detections off``: events only, the
pipeline's own latency). Reported: p50/p99/max of each, lines per second achieved,
collector and agent CPU.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import random
import re
import shutil
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import msgpack
import orjson

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))

import _daemon  # noqa: E402 - next to this file
import collector_e2e as ce2e  # noqa: E402 - the benchmark next to this file

_FIXTURE = _HERE.parent / "tests" / "fixtures" / "kube-audit" / "audit.log"
_ALERTING = {5, 10, 13, 15, 17}
"""Fixture lines the default pack alerts on (tests/detect/test_pack.py)."""
_EXEC_LINE = 5
_EXEC_RULE = "faa4761f-d604-4387-84c2-e2ed3d5931b1"
_USER, _PASSWORD, _KEY = "cp-1", "pw", "bench-key"
_NEW_EXECS = (
    "SELECT seq, dataset, json_extract(doc, '$.rule.id'),"
    " json_extract(doc, '$.kubernetes.audit.auditID') FROM events WHERE seq > ?"
    " AND dataset IN ('kloghub.alerts', 'kubernetes.audit_logs')"
)


def _fixture() -> list[dict[str, Any]]:
    return [json.loads(line) for line in _FIXTURE.read_text().splitlines() if line]


def _stamp(ns: int) -> str:
    seconds, nanos = divmod(ns, 1_000_000_000)
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S") + (
        f".{nanos // 1000:06d}Z"
    )


def _audit_line(event: dict[str, Any], audit_id: str, ns: int) -> str:
    out = dict(event)
    out["auditID"] = audit_id
    out["requestReceivedTimestamp"] = out["stageTimestamp"] = _stamp(ns)
    return orjson.dumps(out).decode()


# ------------------------------------------------------------------ cpu


def _audit_chunks(total: int, per_chunk: int, alert_every: int) -> list[tuple[str, bytes, int]]:
    """Audit records: the fixture's lines that raise nothing, and one of its alerting
    lines in every ``alert_every`` (0: the fixture as it is, a quarter of it alerting)."""
    fixture = _fixture()
    events = fixture
    if alert_every:
        benign = [e for i, e in enumerate(fixture) if i not in _ALERTING]
        alerting = [fixture[i] for i in sorted(_ALERTING)]
        events = [
            alerting[(i // alert_every) % len(alerting)]
            if i % alert_every == 0
            else benign[i % len(benign)]
            for i in range(alert_every * len(alerting))
        ]
    packer = msgpack.Packer(use_bin_type=True)
    path = "/var/log/kubernetes/audit/audit.log"
    base = time.time_ns()
    chunks, made = [], 0
    while made < total:
        count = min(per_chunk, total - made)
        parts = []
        for i in range(made, made + count):
            ns = base + i * 1000
            when = msgpack.ExtType(0, struct.pack(">II", ns // 10**9, ns % 10**9))
            line = _audit_line(events[i % len(events)], f"bench-{i:09d}", ns)
            record = {"log": line, "kloghub": {"file": path, "file_id": "audit:1", "offset": i}}
            parts.append(packer.pack([when, record]))
        chunks.append(("audit", b"".join(parts), count))
        made += count
    return chunks


def _mixed_chunks(records: int, per_chunk: int, audit_share: float, alert_every: int) -> list[Any]:
    audit = int(records * audit_share)
    container = ce2e.make_chunks(records - audit, per_chunk) if records > audit else []
    audits = _audit_chunks(audit, per_chunk, alert_every) if audit else []
    rng = random.Random(7)
    mixed = container + audits
    rng.shuffle(mixed)
    return mixed


def _metric(port: int, name: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return -1
    pattern = rf"^{name}(?:\{{[^}}]*\}})? (\S+)$"
    return int(sum(float(m.group(1)) for m in re.finditer(pattern, text, re.M)))


def _collector_yaml(state: Path, port: int, mport: int, sink: str, *, detections: bool) -> str:
    return json.dumps(
        {
            "collector": {
                "listen": f"127.0.0.1:{port}",
                "state_dir": str(state / "state"),
                "metrics_addr": f"127.0.0.1:{mport}",
                "log_level": "warning",
                "listener": {
                    "shared_key": _KEY,
                    "users": [
                        {"username": _USER, "password": _PASSWORD, "roles": ["control-plane"]}
                    ],
                },
                "sinks": [{"url": sink}],
                "detections": {"enabled": detections},
            }
        }
    )


def _run_cpu(args: argparse.Namespace, chunks_path: Path, *, detections: bool) -> dict[str, float]:
    port, mport = _daemon.free_port(), _daemon.free_port()
    state = Path(tempfile.mkdtemp(prefix="kloghub-detect-", dir=args.tmp))
    cfg = state / "collector.yaml"
    cfg.write_text(_collector_yaml(state, port, mport, "null:", detections=detections))
    log = state / "collector.log"
    proc = _daemon.start("collector", "run", cfg, log, args.profile if detections else None)
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    sender = ctx.Process(
        target=ce2e._sender,
        args=(
            port,
            str(chunks_path),
            args.connections,
            args.in_flight,
            go,
            (_USER, _PASSWORD, _KEY),
        ),
    )
    try:
        _daemon.wait_port(port, proc, log)
        sender.start()
        time.sleep(3)  # the sender builds its frames
        cpu0 = ce2e.cpu_seconds(proc.pid)
        started = time.perf_counter()
        go.set()
        while (n := _metric(mport, "kloghub_records_acked_total")) < args.records + _metric(
            mport, "kloghub_alerts_total"
        ) or sender.is_alive():
            if proc.poll() is not None:
                raise SystemExit(f"collector exited ({proc.returncode}); see {log}")
            if time.perf_counter() - started > args.timeout:
                raise SystemExit(f"timeout: {n} of {args.records} records acked by the sink")
            time.sleep(0.05)
        wall = time.perf_counter() - started
        cpu = ce2e.cpu_seconds(proc.pid) - cpu0
        alerts = _metric(mport, "kloghub_alerts_total")
    finally:
        _daemon.stop(proc)
        if sender.is_alive():
            sender.kill()
        shutil.rmtree(state, ignore_errors=True)
    print(
        f"  detections={'on ' if detections else 'off'} cpu={cpu:.2f}s "
        f"events/cpu-s={args.records / cpu:,.0f} us/event={cpu / args.records * 1e6:.1f} "
        f"wall={wall:.2f}s alerts={alerts}"
    )
    return {"cpu": cpu, "wall": wall}


def cpu_mode(args: argparse.Namespace) -> None:
    args.data.mkdir(parents=True, exist_ok=True)
    name = f"detect-{args.records}-{args.chunk}-{args.audit_share}-{args.alert_every}.msgpack"
    chunks_path = args.data / name
    if not chunks_path.exists():
        chunks = _mixed_chunks(args.records, args.chunk, args.audit_share, args.alert_every)
        chunks_path.write_bytes(msgpack.packb(chunks, use_bin_type=True))
    print(
        f"cpu records={args.records:,} audit_share={args.audit_share} "
        f"alert_every={args.alert_every} chunk={args.chunk} "
        f"connections={args.connections} runs={args.runs}"
    )
    offs, ons = [], []
    for _ in range(args.runs):
        offs.append(_run_cpu(args, chunks_path, detections=False)["cpu"])
        ons.append(_run_cpu(args, chunks_path, detections=True)["cpu"])
    off, on = statistics.median(offs), statistics.median(ons)
    print(
        f"median cpu off={off:.2f}s on={on:.2f}s: +{(on / off - 1) * 100:.1f} % CPU per event "
        "with the default pack"
    )


# ------------------------------------------------------------------ latency


def _writer(path: str, rate: int, seconds: float, alert_every: int, done: Any) -> None:
    events = _fixture()
    benign = [e for i, e in enumerate(events) if i not in _ALERTING]
    trigger = events[_EXEC_LINE]
    per_tick = max(1, rate // 100)
    n = 0
    with open(path, "a", buffering=1024 * 1024) as f:
        start = time.monotonic()
        tick = 0
        while time.monotonic() - start < seconds:
            now = time.time_ns()
            lines = []
            for _ in range(per_tick):
                if n % alert_every == 0:
                    lines.append(_audit_line(trigger, f"exec-{n}-{now}", now))
                else:
                    lines.append(_audit_line(benign[n % len(benign)], f"b-{n}-{now}", now))
                n += 1
            f.write("\n".join(lines) + "\n")
            f.flush()
            tick += 1
            delay = start + tick * 0.01 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    done.value = n


def _start_daemon(
    kind: str, cfg: dict[str, Any], state: Path, profile: Path | None = None
) -> subprocess.Popen[bytes]:
    path = state / f"{kind}.yaml"
    path.write_text(json.dumps(cfg))
    return _daemon.start(kind, "run", path, state / f"{kind}.log", profile)


def latency_mode(args: argparse.Namespace) -> None:
    state = Path(tempfile.mkdtemp(prefix="kloghub-detect-lat-", dir=args.tmp))
    audit = state / "audit.log"
    audit.touch()
    db = state / "store.db"
    port, cport, aport = _daemon.free_port(), _daemon.free_port(), _daemon.free_port()
    collector_cfg = json.loads(
        _collector_yaml(state, port, cport, f"store:{db}", detections=args.detections == "on")
    )
    collector = _start_daemon("collector", collector_cfg, state, args.profile)
    _daemon.wait_port(port, collector, state / "collector.log")
    agent = _start_daemon(
        "agent",
        {
            "agent": {
                "state_dir": str(state / "agent"),
                "metrics_addr": f"127.0.0.1:{aport}",
                "log_level": "warning",
                "node_name": _USER,
                "enrichment": {"kubernetes_api": False},
                "sources": {
                    "containers": {"paths": [str(state / "no-pods" / "*.log")]},
                    "node": {"enabled": False},
                    "audit": {"path": str(audit)},
                },
                "outputs": [
                    {
                        "url": f"forward://127.0.0.1:{port}",
                        "shared_key": _KEY,
                        "username": _USER,
                        "password": _PASSWORD,
                    }
                ],
            }
        },
        state,
    )
    while not db.exists():
        time.sleep(0.05)
    time.sleep(3)  # both started, the agent tails the (empty) file
    ctx = multiprocessing.get_context("spawn")
    written = ctx.Value("q", 0)
    writer = ctx.Process(
        target=_writer, args=(str(audit), args.rate, args.seconds, args.alert_every, written)
    )
    cpu0 = ce2e.cpu_seconds(collector.pid), ce2e.cpu_seconds(agent.pid)
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    last = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
    alerts: list[float] = []
    events: list[float] = []
    writer.start()
    started = time.monotonic()
    expected = args.rate * args.seconds // args.alert_every
    want_alerts = expected if args.detections == "on" else 0
    try:
        while time.monotonic() - started < args.seconds + args.drain and (
            len(events) < expected or len(alerts) < want_alerts
        ):
            rows = conn.execute(_NEW_EXECS, (last,)).fetchall()
            seen = time.time_ns()
            for seq, dataset, rule, audit_id in rows:
                last = max(last, seq)
                if not audit_id or not audit_id.startswith("exec-"):
                    continue
                latency = (seen - int(audit_id.rsplit("-", 1)[1])) / 1e9
                if dataset == "kloghub.alerts" and rule == _EXEC_RULE:
                    alerts.append(latency)
                elif dataset == "kubernetes.audit_logs":
                    events.append(latency)
            time.sleep(0.02)
        writer.join(args.seconds + 10)
        cpu = ce2e.cpu_seconds(collector.pid) - cpu0[0], ce2e.cpu_seconds(agent.pid) - cpu0[1]
    finally:
        _daemon.stop(agent, collector)
        if writer.is_alive():
            writer.kill()
        conn.close()
        if not args.keep:
            shutil.rmtree(state, ignore_errors=True)
    print(
        f"latency rate={args.rate}/s for {args.seconds}s detections={args.detections}: "
        f"lines written={written.value:,} ({written.value / args.seconds:,.0f}/s), "
        f"one exec per {args.alert_every}"
    )
    for name, found in (("exec audit event", events), ("exec alert", alerts)):
        if not found:
            continue
        found.sort()
        p99 = found[min(len(found) - 1, int(len(found) * 0.99))]
        print(
            f"  audit line written → {name} stored ({len(found)} of {expected}): "
            f"p50={statistics.median(found):.2f}s p99={p99:.2f}s max={found[-1]:.2f}s"
        )
    print(f"  cpu collector={cpu[0]:.1f}s agent={cpu[1]:.1f}s over the run")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    cpu = sub.add_parser("cpu")
    cpu.add_argument("--records", type=int, default=400_000)
    cpu.add_argument("--audit-share", type=float, default=0.2)
    cpu.add_argument(
        "--alert-every",
        type=int,
        default=100,
        help="one alerting audit line per N (0: the fixture as is, 1 in 4 alerting)",
    )
    cpu.add_argument("--chunk", type=int, default=1000)
    cpu.add_argument("--connections", type=int, default=4)
    cpu.add_argument("--in-flight", type=int, default=8)
    cpu.add_argument("--runs", type=int, default=3, help="off/on pairs; medians reported")
    cpu.add_argument("--timeout", type=float, default=1200.0)
    cpu.add_argument("--profile", type=Path, help="cProfile the collector (detections on)")
    cpu.add_argument("--data", type=Path, default=Path("/tmp/kloghub-bench-collector"))
    lat = sub.add_parser("latency")
    lat.add_argument("--rate", type=int, default=10_000, help="audit lines per second")
    lat.add_argument("--seconds", type=int, default=30)
    lat.add_argument("--alert-every", type=int, default=100, help="one exec per N lines")
    lat.add_argument("--detections", choices=("on", "off"), default="on")
    lat.add_argument("--drain", type=float, default=60.0, help="seconds to wait after writing")
    lat.add_argument("--keep", action="store_true", help="keep the state dir and logs")
    lat.add_argument("--profile", type=Path, help="cProfile the collector into this file")
    for p in (cpu, lat):
        p.add_argument("--tmp", default=None, help="where state dirs go")
    args = parser.parse_args()
    if args.mode == "cpu":
        cpu_mode(args)
    else:
        latency_mode(args)


if __name__ == "__main__":
    main()
