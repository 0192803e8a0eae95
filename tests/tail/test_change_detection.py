"""Change detection (src/kloghub/tail/DESIGN.md): an idle tailer reads only what changed,
and its progress check still finds what inotify did not report."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from pathlib import Path

import pytest

from kloghub import config, sources, tail
from kloghub.tail import _inotify
from tests._world import Collector, World, assert_exactly_once, running


def _source(world: World, sink: Collector, **kw: object) -> sources.LogSource:
    src = config.SourcesConfig(
        containers=config.ContainerSource(paths=[str(world.pods / "*/*/*.log")]),
        **{"poll_interval": 0.02, "rescan_interval": 3600.0, **kw},  # type: ignore[arg-type]
    )
    return sources.LogSource(src, config.ParsersConfig(), world.state, sink)


@pytest.fixture
def counted_reads(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How often each file was read (also the reads that found nothing new)."""
    reads: Counter[str] = Counter()
    original = tail.TailedFile.read

    def read(self: tail.TailedFile, max_bytes: int) -> bytes:
        reads[os.path.basename(os.path.dirname(self.path))] += 1
        return original(self, max_bytes)

    monkeypatch.setattr(tail.TailedFile, "read", read)
    return reads


async def test_a_write_wakes_only_its_own_directory_not_every_quiet_file(
    world: World, counted_reads: Counter[str]
):
    """If this failed, an agent on a node with hundreds of quiet containers would read every
    one of them each time any container wrote a line (the idle CPU of issue 12)."""
    busy = world.container_dir(container="busy") / "0.log"
    quiet = [world.container_dir(container=f"quiet{i}") / "0.log" for i in range(5)]
    for i, path in enumerate(quiet):
        world.append(path, [1000 + i])
    world.append(busy, [0])
    sink = Collector()
    source = _source(world, sink, progress_check_interval=3600.0)
    async with running(source):
        await sink.wait_for(6)
        if not source.tailer._watcher.complete:
            pytest.fail("inotify does not cover the test folders; this test needs it")
        await asyncio.sleep(0.2)
        before = counted_reads.copy()
        for n in range(1, 21):
            world.append(busy, [n])
            await sink.wait_for(6 + n)
        await asyncio.sleep(0.2)
    assert_exactly_once(sink.numbers(), [*range(21), *range(1000, 1005)])
    assert counted_reads["busy"] - before["busy"] >= 20
    for i in range(5):
        assert counted_reads[f"quiet{i}"] == before[f"quiet{i}"], "a quiet file was read"


async def test_progress_check_finds_growth_that_inotify_did_not_report(
    world: World, monkeypatch: pytest.MonkeyPatch
):
    """If this failed, a lost inotify event (queue overflow, a kernel that does not report
    some writes) would leave lines unread until the next write to the same folder."""
    log = world.container_dir() / "0.log"
    world.append(log, range(10))
    sink = Collector()
    source = _source(world, sink, progress_check_interval=0.2)
    async with running(source):
        await sink.wait_for(10)
        monkeypatch.setattr(_inotify.Watcher, "_note", lambda self, data: None)  # events lost
        world.append(log, range(10, 30))
        await sink.wait_for(30)
    assert_exactly_once(sink.numbers(), range(30))


async def test_new_pod_folder_is_found_at_once_without_waiting_for_the_rescan(world: World):
    """If this failed, a new pod's first lines would wait for the periodic rescan (60 s)."""
    first = world.container_dir(pod="web-1") / "0.log"
    world.append(first, [0])
    sink = Collector()
    source = _source(world, sink, progress_check_interval=3600.0)
    async with running(source):
        await sink.wait_for(1)
        second = world.container_dir(pod="web-2") / "0.log"
        world.append(second, [1])
        await sink.wait_for(2)
    assert_exactly_once(sink.numbers(), range(2))


async def test_writes_next_to_the_pods_folder_do_not_trigger_rescans(tmp_path: Path):
    """If this failed, every file created in /var/log (or /tmp) would rescan every glob,
    which on a busy node is the agent's main idle cost."""
    (tmp_path / "pods").mkdir()
    watcher = _inotify.Watcher()
    watcher.open()
    try:
        watcher.watch_dir(str(tmp_path), contents=False, names="pods")
        watcher.watch_dir(str(tmp_path / "pods"), contents=False, names="*")
        (tmp_path / "unrelated.tmp").write_bytes(b"x")
        assert not await watcher.wait(0.1) or not watcher.take_structural()
        (tmp_path / "pods" / "ns_pod_uid").mkdir()
        assert await watcher.wait(5.0)
        assert watcher.take_structural()
        assert str(tmp_path / "pods") in (watcher.take_changed() or set())
    finally:
        watcher.close()
