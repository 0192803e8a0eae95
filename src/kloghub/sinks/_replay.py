"""``kloghub dlq replay``: send dead-lettered entries again, after the cause was fixed.

Segment by segment, oldest first: the entries chosen (by sink URL, optionally by sink and
error kind) are sent through a freshly built sink of the same URL. An entry the
destination now accepts is removed; one it refuses again stays, with the new reason; one
that was not settled before the timeout stays as it was. The segment is rewritten
atomically (temporary file, ``fsync``, rename).

A segment that another process holds (the running collector's active segment) is left
alone and counted in ``busy_segments``: it can be replayed once that collector has moved
to a new segment (after its restart).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from kloghub import config, core
from kloghub.sinks import _build, _dlq, _sink

__all__ = ["ReplayReport", "replay"]

_log = logging.getLogger("kloghub.sinks.replay")

Builder = Callable[[config.SinkConfig, _dlq.DeadLetters], _sink.Sink]


@dataclasses.dataclass
class ReplayReport:
    """What a replay did."""

    delivered: int = 0
    """Entries the destination accepted; removed from the dead-letter queue."""
    refused: int = 0
    """Entries refused again; kept, with the new reason."""
    unsettled: int = 0
    """Entries sent without an answer before the timeout; kept as they were."""
    skipped: int = 0
    """Entries not chosen (other sink or error kind, no configured sink, unreadable)."""
    busy_segments: int = 0
    """Segments another process holds (the collector writing to it); not replayed."""


class _Capture:
    """Stands in for the dead-letter queue while replaying: remembers refusals."""

    def __init__(self) -> None:
        self.refusals: dict[int, _dlq.Rejection] = {}

    async def put(self, sink: str, rejections: Sequence[_dlq.Rejection]) -> None:
        del sink
        for rejection in rejections:
            self.refusals[id(rejection.event)] = rejection


class _Replayer:
    def __init__(
        self, configs: dict[str, config.SinkConfig], builder: Builder, deadline: float
    ) -> None:
        self._configs = configs
        self._builder = builder
        self._deadline = deadline
        self._sinks: dict[str, tuple[_sink.Sink, _Capture]] = {}

    async def sink(self, url: str) -> tuple[_sink.Sink, _Capture]:
        if url not in self._sinks:
            capture = _Capture()
            sink = self._builder(self._configs[url], capture)
            await sink.start()
            self._sinks[url] = (sink, capture)
        return self._sinks[url]

    def remaining(self) -> float:
        return max(0.0, self._deadline - asyncio.get_running_loop().time())

    async def send(
        self, chosen: list[tuple[int, _dlq.DeadLetter]]
    ) -> dict[int, tuple[core.Delivery, _dlq.Rejection | None]]:
        """Send the chosen entries; returns the fate of those that were settled."""
        results: dict[int, tuple[core.Delivery, _dlq.Rejection | None]] = {}
        all_settled = asyncio.Event()
        waiting = len(chosen)

        def settled(
            index: int, event: core.Event, capture: _Capture
        ) -> Callable[[core.Delivery], None]:
            def done(status: core.Delivery) -> None:
                nonlocal waiting
                results[index] = (status, capture.refusals.pop(id(event), None))
                waiting -= 1
                if waiting == 0:
                    all_settled.set()

            return done

        by_sink: dict[str, list[tuple[int, _dlq.DeadLetter]]] = {}
        for index, entry in chosen:
            by_sink.setdefault(entry.sink, []).append((index, entry))
        try:
            async with asyncio.timeout(self.remaining()):
                for url, entries in by_sink.items():
                    await self._send_to(url, entries, settled)
                await all_settled.wait()
        except TimeoutError:
            pass  # what is unsettled stays in the dead-letter queue
        return results

    async def _send_to(
        self,
        url: str,
        entries: list[tuple[int, _dlq.DeadLetter]],
        settled: Callable[[int, core.Event, _Capture], Callable[[core.Delivery], None]],
    ) -> None:
        sink, capture = await self.sink(url)
        batch = core.Batch()
        for index, entry in entries:
            event = entry.to_event()
            event.finalizer = core.Finalizer(settled(index, event, capture), count=1)
            batch.append(event)
            if len(batch) >= sink.cfg.batch_max_records:
                await sink.send(batch)
                batch = core.Batch()
        if len(batch):
            await sink.send(batch)

    async def close(self) -> None:
        for sink, _capture in self._sinks.values():
            await sink.stop(max(0.1, self.remaining()))


async def replay(
    directory: Path,
    sinks: Sequence[config.SinkConfig],
    *,
    sink: str | None = None,
    error: str | None = None,
    timeout: float = 300.0,
    builder: Builder = _build.build,
) -> ReplayReport:
    """Re-send dead-lettered entries of ``directory`` through the configured ``sinks``.

    Only entries whose ``sink`` URL is one of ``sinks`` (and equals ``sink`` and whose
    ``error`` kind equals ``error``, when given) are sent. ``timeout`` bounds the whole
    replay; what is unsettled then stays. Raises ConfigError when a sink cannot be built.
    """
    configs = {cfg.url: cfg for cfg in sinks if _build.handles(cfg.url)}
    loop = asyncio.get_running_loop()
    replayer = _Replayer(configs, builder, loop.time() + timeout)
    report = ReplayReport()
    try:
        for _sid, path in _dlq.segments(directory):
            await _replay_segment(
                path,
                replayer=replayer,
                configs=configs,
                only_sink=sink,
                only_error=error,
                report=report,
            )
            if replayer.remaining() <= 0:
                break
    finally:
        await replayer.close()
    _log.info("dead-letter replay finished", extra=dataclasses.asdict(report))
    return report


async def _replay_segment(
    path: Path,
    *,
    replayer: _Replayer,
    configs: dict[str, config.SinkConfig],
    only_sink: str | None,
    only_error: str | None,
    report: ReplayReport,
) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        if not _dlq.try_lock(fd):
            report.busy_segments += 1
            return
        with os.fdopen(os.dup(fd), "rb") as handle:
            lines = handle.readlines()
        chosen: list[tuple[int, _dlq.DeadLetter]] = []
        for index, line in enumerate(lines):
            entry = _dlq.parse_line(line)
            if (
                entry is None
                or entry.sink not in configs
                or (only_sink is not None and entry.sink != only_sink)
                or (only_error is not None and entry.error != only_error)
            ):
                report.skipped += 1
                continue
            chosen.append((index, entry))
        if not chosen:
            return
        results = await replayer.send(chosen)
        report.unsettled += len(chosen) - len(results)
        kept: list[bytes] = []
        for index, line in enumerate(lines):
            fate = results.get(index)
            if fate is None:
                kept.append(line)
                continue
            status, rejection = fate
            if status is core.Delivery.DELIVERED:
                report.delivered += 1
            elif rejection is not None:
                report.refused += 1
                entry = _dlq.parse_line(line)
                kept.append(_dlq.encode_entry(entry.sink if entry else "", rejection))
            else:  # settled without a reason (dropped): keep it as it was
                report.refused += 1
                kept.append(line)
        await asyncio.to_thread(_rewrite, path, kept)
    finally:
        os.close(fd)


def _rewrite(path: Path, lines: list[bytes]) -> None:
    if not lines:
        path.unlink(missing_ok=True)
        _dlq.fsync_dir(path.parent)
        return
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as handle:
        handle.writelines(lines)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)
    _dlq.fsync_dir(path.parent)
