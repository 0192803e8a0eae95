"""A small kubelet-like world for tests: pod folders, CRI lines, rotation, a collecting sink."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import re
import shutil
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

from kloghub import config, core, kernels, sources

NUM = re.compile(r"n=(\d+)")


def cri(n: int, stream: str = "stdout", tag: str = "F", text: str = "") -> bytes:
    return f"2026-11-27T06:20:43.{n % 1_000_000_000:09d}Z {stream} {tag} n={n} {text}\n".encode()


class World:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.pods = root / "pods"
        self.state = root / "state"

    def container_dir(
        self,
        ns: str = "default",
        pod: str = "web-1",
        uid: str = "0b3c5a4e-1111-2222-3333-444455556666",
        container: str = "app",
    ) -> Path:
        d = self.pods / f"{ns}_{pod}_{uid}" / container
        d.mkdir(parents=True, exist_ok=True)
        return d

    @staticmethod
    def append(path: Path, numbers, **kw) -> None:
        with path.open("ab") as f:
            for n in numbers:
                f.write(cri(n, **kw))

    @staticmethod
    def rotate(path: Path, stamp: str, gzip_it: bool = False) -> Path:
        """kubelet: rename <n>.log → <n>.log.<stamp>; optionally gzip it and delete it."""
        rotated = path.with_name(f"{path.name}.{stamp}")
        os.rename(path, rotated)
        path.touch()
        if gzip_it:
            with rotated.open("rb") as src, gzip.open(f"{rotated}.gz", "wb") as dst:
                shutil.copyfileobj(src, dst)
            rotated.unlink()
            return Path(f"{rotated}.gz")
        return rotated


class Collector:
    """A sink that records events and acknowledges them (or holds them while paused)."""

    def __init__(self) -> None:
        self.events: list[core.Event] = []
        self.chunks: list[core.Chunk] = []
        self.open = asyncio.Event()
        self.open.set()

    async def __call__(self, item: core.Batch | core.Chunk) -> None:
        await self.open.wait()
        self.record(item)
        item.settle(core.Delivery.DELIVERED)

    def record(self, item: core.Batch | core.Chunk) -> None:
        """Keep the events of ``item`` (a source's chunk: its entries decoded)."""
        if isinstance(item, core.Chunk):
            self.chunks.append(item)
            self.events.extend(
                core.Event(item.tag, t, record)
                for t, record in kernels.decode_entries(item.entries)
            )
        else:
            self.events.extend(item.events)

    def numbers(self) -> Counter[int]:
        found: Counter[int] = Counter()
        for e in self.events:
            m = NUM.search(e.record["log"])
            if m:
                found[int(m.group(1))] += 1
        return found

    async def wait_for(self, count: int, timeout: float = 10.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.events) < count:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"got {len(self.events)} events, wanted {count}")
            await asyncio.sleep(0.02)


def settings(world: World, **containers) -> tuple[config.SourcesConfig, config.ParsersConfig]:
    src = config.SourcesConfig(
        containers=config.ContainerSource(paths=[str(world.pods / "*/*/*.log")], **containers),
        poll_interval=0.02,
        rescan_interval=0.1,
        close_deleted_after=2.0,
    )
    return src, config.ParsersConfig(max_line_bytes=4096)


def make_source(world: World, sink: Collector, **kw) -> sources.LogSource:
    src, parsers = settings(world, **kw)
    return sources.LogSource(src, parsers, world.state, sink)


def assert_exactly_once(found: Counter[int], expected) -> None:
    expected = set(expected)
    missing = expected - set(found)
    dupes = {n: c for n, c in found.items() if c > 1}
    extra = set(found) - expected
    assert not missing, f"lost {len(missing)} lines, e.g. {sorted(missing)[:5]}"
    assert not dupes, f"duplicated {len(dupes)} lines, e.g. {sorted(dupes)[:5]}"
    assert not extra, f"unexpected lines {sorted(extra)[:5]}"


@contextlib.asynccontextmanager
async def running(
    source: sources.LogSource, timeout: float = 5.0
) -> AsyncIterator[sources.LogSource]:
    """``source`` started for the block, stopped (``stop(timeout)``) however the block ends."""
    await source.start()
    try:
        yield source
    finally:
        await source.stop(timeout)


async def run_until(
    source: sources.LogSource, sink: Collector, count: int, linger: float = 0.3
) -> sources.LogSource:
    """Start ``source``, wait for ``count`` events (and ``linger`` for any extra), stop it."""
    async with running(source):
        await sink.wait_for(count)
        await asyncio.sleep(linger)
    return source
