"""The filters inside the log source: per-file verdicts, per-event chain, checkpoints."""

from __future__ import annotations

import uuid

from kloghub import config, enrich, filters
from kloghub.runtime import metrics
from tests._kubeapi import make_pod
from tests._world import Collector, World, cri
from tests.enrich._helpers import committed, source, until


async def run(world: World, flt: filters.Filters, count: int, decider=None) -> Collector:
    sink = Collector()
    src = source(world, sink, decider=decider, filters=flt)
    await src.start()
    try:
        await sink.wait_for(count)
        logs = list(world.pods.glob("*/*/*.log"))
        await until(
            lambda: all(committed(src, p) == p.stat().st_size for p in logs),
            what="every checkpoint to reach its file's end",
        )
    finally:
        await src.stop(5)
    return sink


def pod_log(world: World, ns: str, pod: str, container: str = "app", uid: str | None = None):
    return world.container_dir(ns, pod, uid or str(uuid.uuid4()), container) / "0.log"


async def test_namespace_and_container_rules_work_from_the_path_alone(world: World):
    """If this failed, level crawl (no API) could not exclude namespaces or sidecars."""
    pod_log(world, "shop", "web").write_bytes(cri(1))
    pod_log(world, "kube-system", "dns").write_bytes(cri(2))
    pod_log(world, "shop-canary", "web").write_bytes(cri(3))
    pod_log(world, "shop", "web2", "istio-proxy").write_bytes(cri(4) + cri(5))
    before = metrics.DROPPED.labels("excluded_namespace")._value.get()
    flt = filters.Filters(
        config.FiltersConfig(
            include_namespaces=["shop*"],
            exclude_namespaces=["*-canary"],
            exclude_containers=["istio-*"],
        )
    )
    sink = await run(world, flt, 1)
    assert sorted(sink.numbers()) == [1]
    assert metrics.DROPPED.labels("excluded_namespace")._value.get() == before + 2


async def test_label_selector_uses_the_cached_labels(world: World):
    """If this failed, label_selector would never exclude, or would drop pods it cannot see."""
    web, batch, unknown = (str(uuid.uuid4()) for _ in range(3))
    cache = enrich.PodCache()
    cache.upsert(enrich.pod_from_api(make_pod("web", "shop", uid=web, labels={"app": "web"})))
    cache.upsert(enrich.pod_from_api(make_pod("job", "shop", uid=batch, labels={"app": "batch"})))
    pod_log(world, "shop", "web", uid=web).write_bytes(cri(1))
    pod_log(world, "shop", "job", uid=batch).write_bytes(cri(2))
    pod_log(world, "shop", "new", uid=unknown).write_bytes(cri(3))  # not in the cache yet
    flt = filters.Filters(config.FiltersConfig(label_selector="app in (web)"))
    sink = await run(world, flt, 2, decider=enrich.Enricher(cache))
    assert sorted(sink.numbers()) == [1, 3]


async def test_message_filters_drop_and_count_and_the_checkpoint_still_moves(world: World):
    """If this failed, dropped lines would be re-read after a restart, or shipped anyway."""
    log = pod_log(world, "shop", "web")
    log.write_bytes(
        cri(1, text="GET /healthz")
        + cri(2, text="ERROR boom")
        + cri(3, text="INFO fine")
        + cri(4, text="GET /healthz")
    )
    before = metrics.DROPPED.labels("filtered")._value.get()
    flt = filters.Filters(config.FiltersConfig(drop_regex=["/healthz"], keep_regex=["ERROR"]))
    sink = await run(world, flt, 1)
    assert sorted(sink.numbers()) == [2]
    assert metrics.DROPPED.labels("filtered")._value.get() == before + 3


async def test_redaction_in_the_source_keeps_file_offsets(world: World):
    """If this failed, redacted events would point to the wrong place in the file."""
    log = pod_log(world, "shop", "web")
    first = cri(1, text="login password=hunter2")
    log.write_bytes(first + cri(2, text="token=abc123 ok"))
    flt = filters.Filters(config.FiltersConfig(redact=config.RedactionConfig(enabled=True)))
    sink = await run(world, flt, 2)
    a, b = sink.events
    assert a.record["log"] == "n=1 login password=[REDACTED]"
    assert b.record["log"] == "n=2 token=[REDACTED] ok"
    assert a.record["kloghub"]["offset"] == len(first)
    assert b.record["kloghub"]["offset"] == log.stat().st_size
