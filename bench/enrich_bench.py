"""Tail → parse → enrich → filter → null output: the cost of metadata and redaction.

Usage:
    python bench/gen_cri.py --out \
        /tmp/bench/pods/ns_pod_0b3c5a4e-1111-2222-3333-444455556666/app/0.log
    python bench/enrich_bench.py /tmp/bench/pods [--enrich] [--redact] [--owner]

Same shape as ``tail_bench.py`` (the agent's real ``LogSource`` against a null sink that
acknowledges every batch at once), with the pieces of issue 5 switched on one by one:

- ``--enrich``: an ``enrich.Enricher`` over a ``PodCache`` that knows the bench pods
  (labels, annotations, owner): the records carry the full kubernetes map;
- ``--owner``: the pods have an owner workload (one more key per record);
- ``--redact``: ``filters.Filters`` with redaction on (the ``run`` preset).

The cache is filled directly: the watch is not on the hot path and not measured here.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import tempfile
import time
from pathlib import Path

from kloghub import config, core, enrich, filters, runtime, sources


def _cache(pods: Path, owner: bool) -> enrich.PodCache:
    cache = enrich.PodCache()
    for folder in sorted(pods.glob("*_*_*")):
        namespace, name, uid = folder.name.split("_", 2)
        obj = {
            "metadata": {
                "uid": uid,
                "namespace": namespace,
                "name": name,
                "labels": {"app": name, "app.kubernetes.io/part-of": "bench", "tier": "web"},
                "annotations": {"prometheus.io/scrape": "true"},
                "ownerReferences": (
                    [{"kind": "ReplicaSet", "name": f"{name}-6d4b9c", "controller": True}]
                    if owner
                    else []
                ),
            },
            "spec": {"nodeName": "bench-node", "containers": [{"name": "app", "image": "a:1"}]},
            "status": {
                "podIP": "10.0.0.1",
                "containerStatuses": [
                    {"name": "app", "image": "a:1", "imageID": "a@sha256:00", "restartCount": 0}
                ],
            },
        }
        pod = enrich.pod_from_api(obj)
        assert pod is not None
        cache.upsert(pod)
    return cache


async def run(pods: Path, state: Path, args: argparse.Namespace) -> tuple[int, float]:
    total = sum(p.stat().st_size for p in pods.glob("*/*/*.log"))
    count = 0

    async def sink(chunk: core.Chunk) -> None:
        nonlocal count
        count += chunk.count
        chunk.settle(core.Delivery.DELIVERED)

    src = config.SourcesConfig(
        containers=config.ContainerSource(paths=[str(pods / "*/*/*.log")]),
        poll_interval=0.01,
    )
    decider = (
        enrich.Enricher(_cache(pods, args.owner), node_name="bench-node") if args.enrich else None
    )
    flt = None
    if args.redact:
        flt = filters.Filters(config.FiltersConfig(redact=config.RedactionConfig(enabled=True)))
    source = sources.LogSource(
        src, config.ParsersConfig(), state, sink, decider=decider, filters=flt
    )
    started = time.perf_counter()
    await source.start()
    while sum(tf.committed for tf in source.tailer.files.values()) < total:
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - started
    await source.stop(5)
    return count, elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("pods", type=Path, help="a /var/log/pods-like tree")
    parser.add_argument("--enrich", action="store_true", help="records from the pod cache")
    parser.add_argument("--owner", action="store_true", help="pods with an owner workload")
    parser.add_argument("--redact", action="store_true", help="secret redaction on")
    args = parser.parse_args()
    total = sum(p.stat().st_size for p in args.pods.glob("*/*/*.log"))
    state = Path(tempfile.mkdtemp(prefix="kloghub-bench-"))
    runtime.tune_gc()
    cpu0 = time.process_time()
    try:
        count, elapsed = asyncio.run(run(args.pods, state, args))
    finally:
        shutil.rmtree(state, ignore_errors=True)
    cpu = time.process_time() - cpu0
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gib = total / 2**30
    on = [name for name in ("enrich", "owner", "redact") if getattr(args, name)] or ["none"]
    print(f"on: {', '.join(on)}  input: {total / 2**20:.1f} MiB, records: {count}")
    print(f"wall: {elapsed:.2f} s  records/s: {count / elapsed:,.0f}")
    print(f"cpu: {cpu:.2f} s  cpu s/GiB: {cpu / gib:.1f}  peak RSS: {rss_mib:.0f} MiB")


if __name__ == "__main__":
    main()
