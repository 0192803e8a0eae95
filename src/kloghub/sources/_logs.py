"""The agent's log source: container, node and audit files → events.

It plugs :class:`kloghub.tail.Tailer` (files) into the pipeline: it declares what to tail
and turns parsed records into events in Fluent Bit's kubernetes layout (DESIGN.md §3):
``log``, ``stream``, ``kubernetes{...}`` and kloghub's own ``kloghub{...}`` block.

Two optional collaborators, given by the agent app (they live in sibling packages, so
they are seen here through the protocols below):

- a :class:`Decider` (``kloghub.enrich.Enricher``): per container log file, the
  ``kubernetes`` map from the pod cache, the owner workload (``kloghub.owner``) and the
  pod's annotations (exclude, parser, multiline). It is asked once per file, and again
  when its ``generation`` moved (a pod, namespace or node changed), never per line.
- :class:`FileFilters` (``kloghub.filters.Filters``): the per-file verdict (namespace,
  label selector, container) and the per-event chain (drop/keep regex, redaction).

An excluded file is still read: its records are settled ``DROPPED`` at once, so the
checkpoint moves past them. An annotation that changes the multiline rules swaps the
file's parser: before anything of the file was handed on (its first chunk), the chunk is
read again with the new parser; later, the old parser's held lines are flushed into the
current batch and the new parser takes over. Re-read bytes count twice in
``kloghub_bytes_read``/``kloghub_lines_read``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from kloghub import config, core, parse, tail
from kloghub.runtime import metrics
from kloghub.sources import _paths

__all__ = ["LogSource", "Sink", "specs_from_config"]

Sink = Callable[[core.Batch], Awaitable[None]]
"""Where batches go (an output's or a buffer's ``send``); waits when it is full."""

_EVENT_OVERHEAD = 160
_NO_MULTILINE = config.MultilineConfig(enabled=False)


class FileView(Protocol):
    """What a :class:`Decider` says about one container log file."""

    @property
    def kubernetes(self) -> dict[str, Any]: ...
    @property
    def owner(self) -> dict[str, str] | None: ...
    @property
    def namespace(self) -> str | None: ...
    @property
    def pod(self) -> str | None: ...
    @property
    def container(self) -> str | None: ...
    @property
    def labels(self) -> Mapping[str, str] | None: ...
    @property
    def exclude(self) -> str | None: ...
    @property
    def parser(self) -> str | None: ...
    @property
    def multiline(self) -> config.MultilineConfig | None: ...
    @property
    def signature(self) -> object: ...


class Decider(Protocol):
    """Pod metadata and per-file decisions (``kloghub.enrich.Enricher``)."""

    @property
    def generation(self) -> int: ...

    def decide(self, fields: _paths.PathMeta, path: str) -> FileView: ...


class FileFilters(Protocol):
    """Agent-side filters (``kloghub.filters.Filters``)."""

    @property
    def chain(self) -> Callable[[core.Event], core.Event | None] | None: ...

    def file_verdict(
        self, namespace: str | None, labels: Mapping[str, str] | None, container: str | None
    ) -> str | None: ...


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
    """Computed once per file: the tag, the shared kubernetes map, the kloghub base, and
    (with a decider or filters) the file's decisions."""

    __slots__ = (
        "clean_end",
        "excluded",
        "gen",
        "kubernetes",
        "multiline",
        "owner",
        "parser",
        "parser_hint",
        "path_meta",
        "signature",
        "tag",
        "tracker",
    )

    def __init__(self, tf: tail.TailedFile) -> None:
        kind = tf.spec.kind
        self.kubernetes: dict[str, Any] | None = None
        self.path_meta: _paths.PathMeta | None = None
        self.owner: dict[str, str] | None = None
        self.excluded: str | None = None
        """Why the file's records are not shipped, or ``None``."""
        self.parser_hint: str | None = None
        self.multiline: config.MultilineConfig | None = None
        """The parser the file needs when not the configured default."""
        self.parser: parse.Parser | None = None
        """The parser installed for ``multiline`` (``None``: the tailer's own)."""
        self.gen = -1
        self.signature: object = None
        self.tracker: core.OffsetTracker | None = None
        """The file's tracker at the last emit: another one means nothing was emitted
        under the current one yet (first chunk, or after a truncation)."""
        self.clean_end: int | None = None
        """Where the last emitted chunk ended, when its parser held nothing back: every
        record emitted so far ends there or before."""
        if kind == "containers":
            meta = _paths.from_path(tf.discovered_as)
            if meta.pod is None:
                meta = _paths.from_path(tf.path)
            self.path_meta = meta
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
        decider: Decider | None = None,
        filters: FileFilters | None = None,
    ) -> None:
        super().__init__(supervisor)
        self._sink = sink
        self._host = node_name
        self._parsers = parsers
        self._decider = decider
        self._filters = filters
        self._chain = filters.chain if filters is not None else None
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

    # ------------------------------------------------------------------ per file

    def _new_meta(self, tf: tail.TailedFile) -> _FileMeta:
        meta = _FileMeta(tf)
        if meta.path_meta is not None and (self._decider is not None or self._filters is not None):
            self._refresh(meta, tf)
        return meta

    def _refresh(self, meta: _FileMeta, tf: tail.TailedFile) -> None:
        """(Re)take the file's decisions; cheap when nothing it depends on changed."""
        assert meta.path_meta is not None
        decider = self._decider
        pm = meta.path_meta
        namespace, labels, container = pm.namespace, None, pm.container
        if decider is not None:
            meta.gen = decider.generation
            view = decider.decide(pm, tf.discovered_as)
            if view.signature == meta.signature:
                return
            meta.signature = view.signature
            meta.kubernetes = view.kubernetes
            meta.owner = view.owner
            meta.tag = f"kube.{view.namespace}.{view.pod}.{view.container}"
            meta.parser_hint = view.parser
            meta.multiline = self._multiline_for(view)
            namespace, labels, container = view.namespace, view.labels, view.container
            meta.excluded = view.exclude
        else:
            meta.gen = 0
        if meta.excluded is None and self._filters is not None:
            meta.excluded = self._filters.file_verdict(namespace, labels, container)

    def _multiline_for(self, view: FileView) -> config.MultilineConfig | None:
        default = self._parsers.multiline
        if view.parser == "json":
            return _NO_MULTILINE if default.enabled else None
        if view.multiline is None:
            return None
        return view.multiline.model_copy(update={"flush_timeout": default.flush_timeout})

    def _switch_parser(
        self,
        tf: tail.TailedFile,
        meta: _FileMeta,
        records: list[parse.Record],
        fin: core.Finalizer,
    ) -> list[parse.Record] | None:
        """Install the parser the file's decisions ask for (module docstring).

        Returns the records to emit, or ``None`` when the chunk will be read again: that is
        exact when everything emitted before is acknowledged and ends where this chunk
        starts (nothing read twice, nothing skipped).
        """
        fmt = tf.parser.format if tf.parser.format != "auto" else tf.spec.fmt
        wanted = meta.multiline
        new = parse.Parser(fmt, self._parsers, wanted)  # type: ignore[arg-type]
        tracker = tf.tracker
        rewind_to = None
        if not tf.detached and not tf.compressed and tracker.in_flight == 1:
            if meta.tracker is not tracker:  # nothing emitted under this tracker yet
                rewind_to = tracker.committed
            elif meta.clean_end is not None and tracker.committed == meta.clean_end:
                rewind_to = meta.clean_end
        meta.parser = new if wanted is not None else None
        if rewind_to is not None:
            tf.handle.seek(rewind_to)
            tf.pos = rewind_to
            tf.leftover = b""
            tf.skipping = False
            tf.tracker = core.OffsetTracker(rewind_to)  # acks of the old one are ignored
            tf.parser = new
            fin.settle(core.Delivery.DROPPED, len(records))
            return None
        held = tf.parser.flush(time.time_ns(), force=True)
        tf.parser = new
        if held:
            fin.add(len(held))
            records = records + held
        return records

    # ------------------------------------------------------------------ hot path

    async def _emit(
        self, tf: tail.TailedFile, records: list[parse.Record], fin: core.Finalizer
    ) -> None:
        meta = tf.meta
        if not isinstance(meta, _FileMeta):
            meta = tf.meta = self._new_meta(tf)
        elif (
            self._decider is not None
            and meta.path_meta is not None
            and meta.gen != self._decider.generation
        ):
            self._refresh(meta, tf)
        if meta.excluded is not None:
            fin.settle(core.Delivery.DROPPED, len(records))
            metrics.DROPPED.labels("excluded_" + meta.excluded).inc(len(records))
            return
        if self._decider is not None:  # only a pod's annotations ask for another parser
            read_end = tf.pos - len(tf.leftover)
            clean = tf.parser.safe_offset(read_end) == read_end  # what the tailer reserved
            if (meta.multiline is not None and tf.parser is not meta.parser) or (
                meta.multiline is None and meta.parser is not None and tf.parser is meta.parser
            ):
                switched = self._switch_parser(tf, meta, records, fin)
                if switched is None:
                    meta.tracker = None
                    meta.clean_end = None
                    return
                records = switched
                clean = False
            meta.tracker = tf.tracker
            meta.clean_end = read_end if clean else None
        events = self._events(tf, meta, records, fin)
        chain = self._chain
        if chain is not None:
            kept = [e for e in map(chain, events) if e is not None]
            dropped = len(events) - len(kept)
            if dropped:
                fin.settle(core.Delivery.DROPPED, dropped)
                metrics.DROPPED.labels("filtered").inc(dropped)
                if not kept:
                    return
            events = kept
        await self._sink(core.Batch(events))

    @staticmethod
    def _events(
        tf: tail.TailedFile, meta: _FileMeta, records: list[parse.Record], fin: core.Finalizer
    ) -> list[core.Event]:
        tag, k8s, path, file_id = meta.tag, meta.kubernetes, tf.path, tf.file_id
        owner = meta.owner
        event = core.Event
        # One dict literal per record: the cheapest way CPython builds them (bench/).
        if k8s is None:
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
        elif owner is None:
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
                        "kubernetes": k8s,
                        "kloghub": {
                            "file": path,
                            "file_id": file_id,
                            "offset": r.end_offset,
                            "owner": owner,
                        },
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
        if meta.parser_hint is not None:
            for ev in events:
                ev.record["kloghub"]["parser"] = meta.parser_hint
        return events
