"""Shared pieces of the enrichment tests: a watcher wired to the test API server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from kloghub import config, enrich

FAST = config.RetryConfig(initial_backoff=0.05, max_backoff=0.2)


def enrichment(kubeconfig: Path, **kw) -> config.EnrichmentConfig:
    kw.setdefault("persist_cache", False)
    return config.EnrichmentConfig(kubeconfig=kubeconfig, **kw)


def watcher(
    kubeconfig: Path,
    cache: enrich.PodCache | None = None,
    *,
    node: str = "node-1",
    state_dir: Path | None = None,
    initial_sync_timeout: float = 5.0,
    watch_timeout: tuple[int, int] = (30, 30),
    page_size: int = 500,
    **cfg,
) -> enrich.PodWatcher:
    return enrich.PodWatcher(
        enrichment(kubeconfig, **cfg),
        node,
        cache if cache is not None else enrich.PodCache(),
        state_dir=state_dir,
        initial_sync_timeout=initial_sync_timeout,
        watch_timeout=watch_timeout,
        save_interval=0.1,
        page_size=page_size,
        retry=FAST,
    )


async def until(predicate: Callable[[], object], timeout: float = 5.0, what: str = "") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.02)


def source(world, sink, *, decider=None, filters=None, multiline=None):
    """A LogSource on the world's pod tree, with an optional decider and filters."""
    from kloghub import sources
    from tests._world import settings

    src, parsers = settings(world)
    if multiline is not None:
        parsers = parsers.model_copy(update={"multiline": multiline})
    return sources.LogSource(src, parsers, world.state, sink, decider=decider, filters=filters)


def committed(src, path: Path) -> int:
    """The acknowledged offset of a tailed file (0 when it is not open)."""
    import os

    st = os.stat(path)
    tf = src.tailer.files.get((st.st_dev, st.st_ino))
    return tf.committed if tf is not None else 0
