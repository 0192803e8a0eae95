"""The agent's log source: container, node and audit files → events.

It plugs :class:`kloghub.tail.Tailer` (files) into the pipeline: it declares what to tail
and turns parsed records into events in Fluent Bit's kubernetes layout (DESIGN.md §3):
``log``, ``stream``, ``kubernetes{...}`` and kloghub's own ``kloghub{...}`` block.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from kloghub import config, core, parse, tail
from kloghub.sources import _paths

__all__ = ["LogSource", "Sink", "specs_from_config"]

Sink = Callable[[core.Batch], Awaitable[None]]
"""Where batches go (an output's or a buffer's ``send``); waits when it is full."""

_EVENT_OVERHEAD = 160


def specs_from_config(sources: config.SourcesConfig) -> list[tail.FileSpec]:
    specs = []
    if sources.containers.enabled:
        c = sources.containers
        specs.append(
            tail.FileSpec("containers", tuple(c.paths), tuple(c.exclude), c.format, c.read_from)
        )
    if sources.node.enabled:
        n = sources.node
        specs.append(tail.FileSpec("node", tuple(n.paths), tuple(n.exclude), "text", n.read_from))
    if sources.audit.enabled:
        a = sources.audit
        specs.append(tail.FileSpec("audit", (a.path,), (), "json", a.read_from))
    return specs


class _FileMeta:
    """Computed once per file: the tag, the shared kubernetes map, the kloghub base."""

    __slots__ = ("kubernetes", "tag")

    def __init__(self, tf: tail.TailedFile) -> None:
        kind = tf.spec.kind
        self.kubernetes: dict[str, Any] | None = None
        if kind == "containers":
            meta = _paths.from_path(tf.discovered_as)
            if meta.pod is None:
                meta = _paths.from_path(tf.path)
            k8s = {
                "pod_name": meta.pod,
                "namespace_name": meta.namespace,
                "pod_id": meta.pod_uid,
                "container_name": meta.container,
                "docker_id": meta.container_id,
            }
            self.kubernetes = {k: v for k, v in k8s.items() if v is not None}
            self.tag = f"kube.{meta.namespace}.{meta.pod}.{meta.container}"
        elif kind == "audit":
            self.tag = "audit"
        else:
            self.tag = "node." + tf.discovered_as.rsplit("/", 1)[-1]


class LogSource(core.Service):
    """Tails the configured files and sends their records as events to ``sink``."""

    name = "source"

    def __init__(
        self,
        sources: config.SourcesConfig,
        parsers: config.ParsersConfig,
        state_dir: Path,
        sink: Sink,
        *,
        node_name: str | None = None,
        supervisor: core.Supervisor | None = None,
    ) -> None:
        super().__init__(supervisor)
        self._sink = sink
        self._host = node_name
        self.tailer = tail.Tailer(
            specs_from_config(sources),
            sources,
            parsers,
            state_dir,
            self._emit,
            supervisor=supervisor,
        )

    def attach(self, supervisor: core.Supervisor) -> None:
        super().attach(supervisor)
        self.tailer.attach(supervisor)

    async def _on_start(self) -> None:
        await self.tailer.start()

    async def _on_drain(self) -> None:
        await self.tailer.stop(3600)  # the daemon's budget bounds this from outside

    async def _on_close(self) -> None:
        await self.tailer.stop(0)

    async def _emit(
        self, tf: tail.TailedFile, records: list[parse.Record], fin: core.Finalizer
    ) -> None:
        meta = tf.meta
        if not isinstance(meta, _FileMeta):
            meta = tf.meta = _FileMeta(tf)
        tag, k8s, path, file_id = meta.tag, meta.kubernetes, tf.path, tf.file_id
        event = core.Event
        # One dict literal per record: the cheapest way CPython builds them (bench/).
        if k8s is not None:
            events = [
                event(
                    tag,
                    r.time_ns,
                    {
                        "log": r.message,
                        "stream": r.stream,
                        "kubernetes": k8s,
                        "kloghub": {"file": path, "file_id": file_id, "offset": r.end_offset},
                    },
                    fin,
                    len(r.message) + _EVENT_OVERHEAD,
                )
                for r in records
            ]
        else:
            events = [
                event(
                    tag,
                    r.time_ns,
                    {
                        "log": r.message,
                        "stream": r.stream,
                        "kloghub": {"file": path, "file_id": file_id, "offset": r.end_offset},
                    },
                    fin,
                    len(r.message) + _EVENT_OVERHEAD,
                )
                for r in records
            ]
        for ev, r in zip(events, records, strict=True):
            if r.flags:
                kh = ev.record["kloghub"]
                kh["flags"] = parse.flag_names(r.flags)
                if r.raw is not None and r.flags & parse.INVALID_UTF8:
                    kh["raw"] = r.raw  # the bytes as written, where the message replaced some
        await self._sink(core.Batch(events))
