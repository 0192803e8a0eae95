"""``kloghub demo``: the whole pipeline on a generated node, then incident searches.

It writes a kubelet-like node into a temporary folder, runs the agent and the collector
(level ``walk``, in this process, on loopback) into an embedded store — or, given an
Elasticsearch/OpenSearch URL, at level ``run`` into it — writes the second half of the
logs while they run (a rotation, a pod deleted, the rest of an attack story), waits
until every line is searchable, and prints a few incident searches with the commands
that produce them.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import secrets
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO

from kloghub import agent, collector, config, detect, search
from kloghub.demo import _generate

__all__ = ["SEARCHES", "run_demo"]

SEARCHES: list[tuple[str, str, str | None]] = [
    ("Who touched the cluster without credentials?", 'user:"system:anonymous"', None),
    (
        f"Everything the suspicious service account did ({_generate.ATTACKER_SA})",
        f'user:"{_generate.ATTACKER_SA}"',
        None,
    ),
    (
        "Which pods were exec'ed into, and who bound a ClusterRole?",
        "kubernetes.audit.objectRef.subresource:exec OR resource:clusterrolebindings",
        None,
    ),
    ("The Java service's stack trace", "SocketTimeoutException", "shop"),
    ("The worker's errors, newest last", "level:error", "jobs"),
]
"""(what the responder asks, the query, the --namespace option)."""


_NODE = "demo-node"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _settings(
    node: _generate.DemoNode, state: Path, sink_url: str, level: str
) -> tuple[config.AgentConfig, config.CollectorConfig]:
    port = _free_port()
    # The demo node authenticates as a control-plane node (it ships an audit log too),
    # with credentials made for this run.
    key, password = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    user = {"username": _NODE, "password": password, "roles": ["node", "control-plane"]}
    output = {
        "url": f"forward://127.0.0.1:{port}",
        "flush_interval": "200ms",
        "shared_key": key,
        "username": _NODE,
        "password": password,
    }
    flags = {
        "level": level,
        "agent": {
            "state_dir": str(state / "agent"),
            "metrics_addr": "127.0.0.1:0",
            "enrichment": {"kubernetes_api": False},
            "sources": {
                "containers": {"paths": [str(node.pods_dir / "*/*/*.log")]},
                "node": {"enabled": False},
                "audit": {"enabled": True, "path": str(node.audit_log)},
                "poll_interval": "50ms",
                "rescan_interval": "500ms",
            },
            "parsers": {"multiline": {"enabled": True}},
            "node_name": _NODE,
            "outputs": [output],
        },
        "collector": {
            "listen": f"127.0.0.1:{port}",
            "listener": {"shared_key": key, "users": [user]},
            "state_dir": str(state / "collector"),
            "metrics_addr": "127.0.0.1:0",
            "sinks": [{"url": sink_url, "flush_interval": "200ms"}],
        },
    }
    settings = config.load(None, flags)
    return settings.agent, settings.collector


async def _count(backend: search.Backend) -> int:
    plan = search.plan(search.Request(query="", default_since=None, limit=1_000_000))
    hits = await search.fetch(
        backend, plan.where, now_ns=time.time_ns(), newest_first=True, limit=1_000_000
    )
    return len(hits)


async def _pipeline(
    node: _generate.DemoNode,
    state: Path,
    sink_url: str,
    level: str,
    *,
    out: TextIO,
    timeout: float,
) -> int:
    agent_cfg, collector_cfg = _settings(node, state, sink_url, level)
    coll = collector.build(collector_cfg)
    ag = agent.build(agent_cfg)
    coll_task = asyncio.create_task(coll.run(), name="demo-collector")
    while not coll.readiness.started and not coll_task.done():  # noqa: ASYNC110 - another task
        await asyncio.sleep(0.05)
    agent_task = asyncio.create_task(ag.run(), name="demo-agent")
    backend = search.open_backend(sink_url)
    found = 0
    tty = hasattr(out, "isatty") and out.isatty()
    try:
        out.write("  agent and collector running; writing the second half of the logs\n")
        await asyncio.sleep(1.0)
        _generate.generate_second_half(node)
        # Multiline joins make fewer events than lines: at least every line but those of
        # the stack trace must be in, then the count must stop moving.
        least = node.lines - len(_generate.JAVA_TRACE)
        deadline = time.monotonic() + timeout
        still, last = 0, -1
        while time.monotonic() < deadline and (found < least or still < 4):
            with contextlib.suppress(Exception):
                found = await _count(backend)
            if tty:
                out.write(f"\r  {found} events searchable from {node.lines} lines written")
                out.flush()
            if agent_task.done() or coll_task.done():
                break
            still = still + 1 if found == last and found > 0 else 0
            last = found
            await asyncio.sleep(0.5)
        out.write(
            f"{'' if tty else '  '}{found} events searchable from {node.lines} lines written\n"
            if not tty
            else "\n"
        )
    finally:
        ag.request_stop("demo done")
        await agent_task
        coll.request_stop("demo done")
        await coll_task
        await backend.close()
    return found


async def _searches(sink_url: str, out: TextIO) -> int:
    shown = 0
    backend = search.open_backend(sink_url)
    try:
        for title, query, namespace in SEARCHES:
            option = f" --namespace {namespace}" if namespace else ""
            command = f"kloghub search '{query}'{option} --since 2h --limit 5 --store {sink_url}"
            out.write(f"\n# {title}\n$ {command}\n")
            buf = io.StringIO()
            formatter = search.make_formatter("table", buf, width=120)
            n = await search.run(
                search.Request(query=query, namespace=namespace, since="2h", limit=5),
                backend,
                formatter,
            )
            out.write(buf.getvalue() or "(no matches)\n")
            shown += n
    finally:
        await backend.close()
    return shown


async def _alerts(sink_url: str, out: TextIO) -> int:
    """Backtest the default pack over the demo's events; print what it raised."""
    from kloghub.detect import _backtest

    command = f"kloghub rules test --since 2h --store {sink_url}"
    out.write(f"\n# What the default detections raise on it\n$ {command}\n")
    backtest = detect.Backtest(detect.Detector.from_config(config.DetectionsConfig()))
    plan = search.plan(search.Request(query="dataset:kubernetes.audit_logs", since="2h"))
    backend = search.open_backend(sink_url)
    try:
        async for hit in search.stream(backend, plan.where, now_ns=time.time_ns()):
            backtest.feed(hit.id, hit.doc, hit.time_ns)
    finally:
        await backend.close()
    out.write(_backtest.render(backtest, backend.description))
    return sum(s.alerts for s in backtest.summaries.values())


def run_demo(
    sink_url: str | None = None,
    workdir: Path | None = None,
    out: TextIO | None = None,
    timeout: float = 120.0,
) -> int:
    """Run the demo; returns 0 when every generated line became searchable."""
    out = out or sys.stdout
    root = workdir or Path(tempfile.mkdtemp(prefix="kloghub-demo-"))
    level = "run" if sink_url and not sink_url.startswith("store:") else "walk"
    sink_url = sink_url or f"store:{root / 'store.db'}"
    out.write(f"kloghub demo — a generated node in {root}\n")
    node = _generate.generate_first_half(root / "node")
    out.write(f"  wrote {node.lines} lines of pod and audit logs; level {level}, sink {sink_url}\n")
    found = asyncio.run(_pipeline(node, root / "state", sink_url, level, out=out, timeout=timeout))
    shown = asyncio.run(_searches(sink_url, out))
    asyncio.run(_alerts(sink_url, out))
    out.write(
        f"\n{found} events are in {sink_url}. Try your own, e.g.:\n"
        f"  kloghub search 'ns:payments' --store {sink_url} --since 2h --format json\n"
    )
    return 0 if found and shown else 1
