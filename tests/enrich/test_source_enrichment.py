"""The log source with pod metadata from the cache: the pod annotations applied per file.
With the real apiserver (tombstones, outages, label changes): tests/kube/."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from kloghub import config, core, enrich, kernels
from kloghub.runtime import metrics
from tests._kubeapi import make_pod
from tests._world import NUM, Collector, World, cri
from tests.enrich._helpers import committed, source, until

UID = "0b3c5a4e-1111-2222-3333-444455556666"


def cached(*objs) -> enrich.PodCache:
    cache = enrich.PodCache()
    for obj in objs:
        cache.upsert(enrich.pod_from_api(obj))
    return cache


@pytest.mark.parametrize(
    ("annotations", "container"),
    [
        ({"kloghub.io/exclude": "true"}, "app"),
        ({"fluentbit.io/exclude": "true"}, "app"),
        ({"kloghub.io/exclude-containers": "sidecar,app"}, "app"),
    ],
)
async def test_excluded_files_ship_nothing_and_their_checkpoint_moves(
    world: World, annotations, container
):
    """If this failed, excluded pods would be shipped, or re-read forever after a restart."""
    other_uid = str(uuid.uuid4())
    cache = cached(
        make_pod("web-1", "shop", uid=UID, annotations=annotations, containers=("app", "sidecar")),
        make_pod("web-2", "shop", uid=other_uid),
    )
    log = world.container_dir("shop", "web-1", UID, container) / "0.log"
    log.write_bytes(cri(1) + cri(2) + cri(3))
    kept = world.container_dir("shop", "web-2", other_uid, "app") / "0.log"
    kept.write_bytes(cri(4))
    before = metrics.DROPPED.labels("excluded_annotation")._value.get()
    sink = Collector()
    src = source(world, sink, decider=enrich.Enricher(cache))
    await src.start()
    try:
        await sink.wait_for(1)
        await until(lambda: committed(src, log) == log.stat().st_size, what="the checkpoint")
    finally:
        await src.stop(5)
    assert [e.record["kubernetes"]["pod_name"] for e in sink.events] == ["web-2"]
    assert metrics.DROPPED.labels("excluded_annotation")._value.get() == before + 3


async def test_parser_annotation_travels_with_the_records(world: World):
    """If this failed, the collector could not honour a pod's json/text parser choice."""
    cache = cached(
        make_pod(
            "web-1",
            "shop",
            uid=UID,
            annotations={"kloghub.io/parser": "json"},
            owner=("ReplicaSet", "web-6d4b9c"),
        )
    )
    (world.container_dir("shop", "web-1", UID) / "0.log").write_bytes(cri(1, text='{"a":1}'))
    sink = Collector()
    src = source(world, sink, decider=enrich.Enricher(cache))
    await src.start()
    try:
        await sink.wait_for(1)
    finally:
        await src.stop(5)
    kh = sink.events[0].record["kloghub"]
    assert kh["parser"] == "json"
    assert kh["owner"] == {"kind": "ReplicaSet", "name": "web-6d4b9c"}


QUICK = config.MultilineConfig(enabled=False, flush_timeout=0.2)
JAVA = [
    "Exception in thread main java.lang.IllegalStateException: boom",
    "\tat com.example.App.run(App.java:10)",
    "\tat com.example.App.main(App.java:5)",
    "next record",
]


def java_lines(start: int) -> bytes:
    """CRI lines whose messages start as a Java trace does (the number at the end)."""
    return b"".join(
        f"2026-11-27T06:20:43.{start + i:09d}Z stdout F {line} n={start + i}\n".encode()
        for i, line in enumerate(JAVA)
    )


async def test_multiline_annotation_joins_from_the_first_line_of_the_file(world: World):
    """If this failed, a pod's stack traces read in the file's first chunk would stay split."""
    cache = cached(make_pod("web-1", "shop", uid=UID, annotations={"kloghub.io/multiline": "java"}))
    log = world.container_dir("shop", "web-1", UID) / "0.log"
    log.write_bytes(java_lines(1))
    other = world.container_dir("shop", "plain", str(uuid.uuid4())) / "0.log"
    other.write_bytes(java_lines(11))
    sink = Collector()
    src = source(world, sink, decider=enrich.Enricher(cache), multiline=QUICK)
    await src.start()
    try:
        await sink.wait_for(2 + 4)
        await asyncio.sleep(0.4)  # the held last record flushes after its timeout
    finally:
        await src.stop(5)
    mine = [e for e in sink.events if e.record["kubernetes"]["pod_name"] == "web-1"]
    theirs = [e for e in sink.events if e.record["kubernetes"]["pod_name"] == "plain"]
    assert len(theirs) == 4  # no annotation, multiline off by default
    assert [e.record["log"].count("\n") for e in mine] == [2, 0]
    assert mine[0].record["kloghub"]["flags"] == ["multiline"]
    assert mine[-1].record["kloghub"]["offset"] == log.stat().st_size
    assert sorted(sink.numbers()) == [1, 4, 11, 12, 13, 14]  # nothing lost, nothing twice


async def test_a_multiline_annotation_added_later_takes_over_without_loss(world: World):
    """If this failed, changing a pod's multiline rule would drop or duplicate lines."""
    obj = make_pod("web-1", "shop", uid=UID)
    cache = cached(obj)
    log = world.container_dir("shop", "web-1", UID) / "0.log"
    log.write_bytes(java_lines(1))
    sink = Collector()
    src = source(world, sink, decider=enrich.Enricher(cache), multiline=QUICK)
    await src.start()
    try:
        await sink.wait_for(4)
        obj["metadata"]["annotations"] = {"kloghub.io/multiline": "java"}
        cache.upsert(enrich.pod_from_api(obj))
        with log.open("ab") as f:
            f.write(java_lines(21))
        await sink.wait_for(4 + 2)
        await asyncio.sleep(0.4)
    finally:
        await src.stop(5)
    assert sorted(sink.numbers()) == [1, 2, 3, 4, 21, 24]
    assert sink.events[4].record["log"].count("\n") == 2


async def test_the_default_multiline_rule_is_off_for_json_parser_pods(world: World):
    """If this failed, JSON log lines would be glued together by a stack-trace rule."""
    cache = cached(make_pod("web-1", "shop", uid=UID, annotations={"kloghub.io/parser": "json"}))
    log = world.container_dir("shop", "web-1", UID) / "0.log"
    log.write_bytes(java_lines(1))
    sink = Collector()
    ml = config.MultilineConfig(enabled=True, rules=["java"])
    src = source(world, sink, decider=enrich.Enricher(cache), multiline=ml)
    await src.start()
    try:
        await sink.wait_for(4)
    finally:
        await src.stop(5)
    assert len(sink.events) == 4


class HoldingSink:
    """Accepts chunks at once and settles them only when told (acks in flight)."""

    def __init__(self) -> None:
        self.chunks = []
        self.batches = []
        """The events of each chunk, decoded."""

    async def __call__(self, chunk) -> None:
        self.chunks.append(chunk)
        self.batches.append(
            [core.Event(chunk.tag, t, r) for t, r in kernels.decode_entries(chunk.entries)]
        )

    def release(self) -> None:
        for chunk in self.chunks:
            chunk.settle()

    def numbers(self) -> list[int]:
        return sorted(int(n) for b in self.batches for e in b for n in NUM.findall(e.record["log"]))


async def test_a_parser_switch_with_acks_in_flight_loses_and_repeats_nothing(world: World):
    """If this failed, a multiline change while the output is slow would lose or repeat lines."""
    obj = make_pod("web-1", "shop", uid=UID)
    cache = cached(obj)
    log = world.container_dir("shop", "web-1", UID) / "0.log"
    log.write_bytes(java_lines(1))
    sink = HoldingSink()
    src = source(world, sink, decider=enrich.Enricher(cache), multiline=QUICK)
    await src.start()
    try:
        await until(lambda: sum(len(b) for b in sink.batches) == 4, what="the first lines")
        obj["metadata"]["annotations"] = {"kloghub.io/multiline": "java"}
        cache.upsert(enrich.pod_from_api(obj))
        for start in (21, 31, 41):
            with log.open("ab") as f:
                f.write(java_lines(start))
            await asyncio.sleep(0.1)
        await until(lambda: sink.numbers()[-1:] == [44], what="the last line")
        sink.release()
        await until(lambda: committed(src, log) == log.stat().st_size, what="the checkpoint")
    finally:
        await src.stop(5)
    expected = [s + i for s in (1, 21, 31, 41) for i in range(4)]
    assert sink.numbers() == expected
    joined = [e.record["log"].count("\n") for b in sink.batches for e in b]
    assert 2 in joined  # the new rule took over
