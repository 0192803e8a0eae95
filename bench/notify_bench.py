"""Cost of `Notifier.submit` on the collector's hot path, and what a burst turns into.

Submits N real alert documents (the audit fixture's five, varied by user and object so
that they make G groups) to a Notifier with one webhook receiver (tests/_notify.py's
server, on loopback) and reports: CPU per submit (the call ingestion pays), the
notifications the burst became, and the time until the last was accepted.

    .venv/bin/python -m bench.notify_bench --alerts 100000 --groups 50 [--durable]
    .venv/bin/python -m bench.notify_bench --latency 100 [--durable]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import shutil
import tempfile
import time
from pathlib import Path

from tests import _notify as servers
from tests.detect import _events as ev

from kloghub import config
from kloghub.detect import _alert, _engine, _notify


def _alerts(count: int, groups: int) -> list[dict]:
    detector = _engine.Detector.from_config(config.DetectionsConfig(enabled=True))
    base = [
        _alert.alert_document(a, "default", t)[1]
        for i, d, t in ev.fixture_documents()
        for a in detector(i, d, t)
    ]
    out = []
    for n in range(count):
        doc = copy.deepcopy(base[n % len(base)])
        doc["user"]["name"] = f"user-{n % groups}"
        doc["kubernetes"]["audit"]["objectRef"]["name"] = f"obj-{n % 997}"
        out.append(doc)
    return out


async def main(count: int, groups: int, durable: bool) -> None:
    docs = _alerts(count, groups)
    async with servers.WebhookServer() as hook:
        cfg = config.NotifyConfig(
            type="webhook", url=hook.url, group_wait=0.5, rate_limit=None, max_pending=count
        )
        state = Path(tempfile.mkdtemp(prefix="notify-bench-")) if durable else None
        notifier = _notify.Notifier([cfg], state)
        await notifier.start()
        cpu, wall = time.process_time(), time.perf_counter()
        for doc in docs:
            notifier.submit(doc)
        cpu_submit = time.process_time() - cpu
        expected = len({(d["rule"]["id"], d["user"]["name"]) for d in docs})
        await hook.wait_for(expected, timeout=600)
        took = time.perf_counter() - wall
        held = notifier.receivers[0].grouper.held
        await notifier.aclose()
        if state is not None:
            shutil.rmtree(state)
    listed = sum(len(b["alerts"]) + b["truncatedAlerts"] for b in hook.accepted)
    print(f"alerts submitted      {count}")
    print(f"cpu per submit        {cpu_submit / count * 1e6:.1f} us")
    print(f"distinct alerts held  {held} (same labels merge)")
    print(f"notifications sent    {len(hook.accepted)} (groups: {expected})")
    print(f"alerts in them        {listed}")
    print(f"burst to last ack     {took:.2f} s (group_wait 0.5 s)")


async def latency(count: int, durable: bool) -> None:
    """Alerts one at a time (group_wait 0, no grouping): submit to accepted by the receiver."""
    docs = _alerts(count, count)
    async with servers.WebhookServer() as hook:
        cfg = config.NotifyConfig(
            type="webhook", url=hook.url, group_wait=0, rate_limit=None, group_by=["..."]
        )
        state = Path(tempfile.mkdtemp(prefix="notify-bench-")) if durable else None
        notifier = _notify.Notifier([cfg], state)
        await notifier.start()
        took = []
        for i, doc in enumerate(docs):
            started = time.perf_counter()
            notifier.submit(doc)
            await hook.wait_for(i + 1)
            took.append(time.perf_counter() - started)
            await asyncio.sleep(0.05)
        await notifier.aclose()
        if state is not None:
            shutil.rmtree(state)
    took.sort()
    print(f"submit to accepted    median {took[len(took) // 2] * 1e3:.1f} ms, "
          f"p95 {took[int(len(took) * 0.95)] * 1e3:.1f} ms over {count} alerts")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--alerts", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=50)
    parser.add_argument("--durable", action="store_true", help="with a disk queue (state_dir)")
    parser.add_argument("--latency", type=int, metavar="N", help="N alerts one at a time")
    args = parser.parse_args()
    if args.latency:
        asyncio.run(latency(args.latency, args.durable))
    else:
        asyncio.run(main(args.alerts, args.groups, args.durable))
