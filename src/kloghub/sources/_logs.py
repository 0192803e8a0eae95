"""The agent's log source: container, node and audit files → chunks.

It plugs :class:`kloghub.tail.Tailer` (files) into the pipeline: it declares what to tail,
and it owns the per-file :class:`kloghub.kernels.FileEncoder` that turns the bytes the
tailer read into wire-ready entries in Fluent Bit's kubernetes layout (DESIGN.md §3):
``log``, ``stream``, ``kubernetes{...}`` and kloghub's own ``kloghub{...}`` block. What
one read gives becomes one :class:`kloghub.core.Chunk` (tag, file, offset range,
entries), whose finalizer moves the file's checkpoint when it is settled. The file's
constant metadata is an :class:`kloghub.kernels.EntryContext`, built once per file and
again when its decisions change.

Two optional collaborators, given by the agent app (they live in sibling packages, so
they are seen here through the protocols below):

- a :class:`Decider` (``kloghub.enrich.Enricher``): per container log file, the
  ``kubernetes`` map from the pod cache, the owner workload (``kloghub.owner``) and the
  pod's annotations (exclude, parser, multiline). It is asked once per file, and again
  when its ``generation`` moved (a pod, namespace or node changed), never per line.
- :class:`FileFilters` (``kloghub.filters.Filters``): the per-file verdict (namespace,
  label selector, container) and the per-event chain (drop/keep regex, redaction).

An excluded file is still read: its chunks are settled ``DROPPED`` at once, so the
checkpoint moves past them. The file's decisions are taken before its first bytes are
encoded, so an annotation known by then (a parser, multiline rules) applies from the first
line. An annotation that changes the multiline rules later swaps the file's encoder: what
the old one holds is flushed as a chunk of its own, and the new one reads the file again
from the old one's safe offset (the start of an incomplete line, if any). Re-read bytes
count twice in ``kloghub_bytes_read``/``kloghub_lines_read``.

Per-event filters (drop/keep regex, redaction) need records: a file with filters uses the
reference encoder, which runs the chain on the parsed records before encoding them (a
native kernel will cover them later); files without filters use the compiled kernel when
it is built.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from kloghub import config, core, kernels, parse, tail
from kloghub.runtime import metrics
from kloghub.sources import _paths

__all__ = ["LogSource", "Sink", "specs_from_config"]

Sink = Callable[[core.Chunk], Awaitable[None]]
"""Where chunks go (the disk buffer's ``push_chunk``, a local output); waits when full."""

_INVALID_UTF8 = parse.INVALID_UTF8
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


class _FilteringEncoder(kernels.ReferenceFileEncoder):
    """The reference encoder with the per-event filter chain run on its records before
    they are encoded (drop/keep regex, redaction; no kernel covers them yet)."""

    __slots__ = ("_chain", "_tag", "dropped")

    def __init__(
        self,
        fmt: str,
        parsers: config.ParsersConfig,
        multiline: config.MultilineConfig | None,
        ctx: kernels.EntryContext,
        offset: int,
        *,
        chain: Callable[[core.Event], core.Event | None],
        tag: str,
    ) -> None:
        super().__init__(fmt, parsers, multiline, ctx, offset)
        self._chain = chain
        self._tag = tag
        self.dropped = 0
        """Records the chain dropped in the last call."""

    def _encode(self, records: list[parse.Record], lines: int, truncated: int) -> kernels.Encoded:
        chain, tag, event = self._chain, self._tag, core.Event
        kept: list[parse.Record] = []
        for r in records:
            # The fields the filters look at; they may change "log" and "kloghub.raw".
            raw = r.raw if r.flags & _INVALID_UTF8 else None
            rec: dict[str, Any] = {"log": r.message, "stream": r.stream}
            if raw is not None:
                rec["kloghub"] = {"raw": raw}
            out = chain(event(tag, r.time_ns, rec))
            if out is None:
                continue
            r.message = out.record["log"]
            if raw is not None:
                r.raw = out.record["kloghub"]["raw"]
            kept.append(r)
        self.dropped = len(records) - len(kept)
        return super()._encode(kept, lines, truncated)


_Encoder = kernels.FileEncoder | _FilteringEncoder
"""The compiled kernel when it covers the file (``kernels.FileEncoder`` chooses), or the
reference with the filter chain."""


class _FileMeta:
    """Computed once per file: the tag, the kubernetes map, the encoder and its context,
    and (with a decider or filters) the file's decisions."""

    __slots__ = (
        "built_for",
        "ctx",
        "encoder",
        "excluded",
        "first",
        "gen",
        "kubernetes",
        "multiline",
        "owner",
        "parser_hint",
        "path_meta",
        "signature",
        "tag",
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
        """The multiline rules the file needs when not the configured default."""
        self.gen = -1
        self.signature: object = None
        self.ctx: kernels.EntryContext | None = None
        """The encoder's context; ``None`` when the decisions changed since it was built."""
        self.encoder: _Encoder | None = None
        self.built_for: config.MultilineConfig | None = None
        """The ``multiline`` the encoder was built for."""
        self.first = 0
        """Where the next chunk's range starts (the end of the previous one)."""
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
    """Tails the configured files and sends what they hold as chunks to ``sink``."""

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
            state_dir,
            self,
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

    def _meta(self, tf: tail.TailedFile) -> _FileMeta:
        meta = tf.meta
        if not isinstance(meta, _FileMeta):
            meta = _FileMeta(tf)
            tf.meta = meta
            if meta.path_meta is not None and (
                self._decider is not None or self._filters is not None
            ):
                self._refresh(meta, tf)
        elif (
            self._decider is not None
            and meta.path_meta is not None
            and meta.gen != self._decider.generation
        ):
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
            meta.ctx = None  # built again before the next entries
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

    def _context(self, tf: tail.TailedFile, meta: _FileMeta) -> kernels.EntryContext:
        ctx = meta.ctx
        if ctx is None:
            ctx = meta.ctx = kernels.EntryContext(
                tf.path, tf.file_id, meta.kubernetes, meta.owner, meta.parser_hint
            )
            if meta.encoder is not None:
                meta.encoder.set_context(ctx)
        return ctx

    def _new_encoder(self, tf: tail.TailedFile, meta: _FileMeta, offset: int) -> _Encoder:
        old = meta.encoder
        fmt = tf.spec.fmt if old is None or old.format == "auto" else old.format
        multiline = meta.multiline if meta.multiline is not None else self._parsers.multiline
        meta.encoder = None  # the context is set on the new one below
        if meta.ctx is not None and meta.ctx.file_id != tf.file_id:
            meta.ctx = None  # truncated: a new identity, so new document ids
        ctx = self._context(tf, meta)
        encoder: _Encoder
        if self._chain is not None:
            encoder = _FilteringEncoder(
                fmt, self._parsers, multiline, ctx, offset, chain=self._chain, tag=meta.tag
            )
        else:
            encoder = kernels.FileEncoder(fmt, self._parsers, multiline, ctx, offset)
        meta.encoder = encoder
        meta.built_for = meta.multiline
        meta.first = offset
        return encoder

    # ------------------------------------------------------------------ hot path

    async def read(self, tf: tail.TailedFile, data: bytes, offset: int) -> None:
        """Bytes the tailer read from ``tf`` at ``offset`` → a chunk (``tail.Reader``)."""
        meta = self._meta(tf)
        encoder = meta.encoder
        now = time.time_ns()
        if encoder is None or encoder.read_offset != offset:
            encoder = self._new_encoder(tf, meta, offset)  # first read, truncation
        elif meta.multiline != meta.built_for:
            # Other multiline rules: flush the old encoder, read again where it is safe.
            await self._hand_on(tf, meta, encoder, encoder.flush(now, force=True))
            start = encoder.safe_offset()
            encoder = self._new_encoder(tf, meta, start)
            if start != offset:
                tf.seek(start)
                return
        elif meta.ctx is None:
            self._context(tf, meta)
        encoded = encoder.feed(data, now)
        if encoded.lines:
            metrics.LINES_READ.labels(tf.spec.kind).inc(encoded.lines)
            if encoded.truncated:
                metrics.TRUNCATED_LINES.inc(encoded.truncated)
        await self._hand_on(tf, meta, encoder, encoded)

    async def flush(self, tf: tail.TailedFile, *, force: bool) -> None:
        """What ``tf``'s encoder holds past its timeouts (all with ``force``)."""
        meta = tf.meta
        if not isinstance(meta, _FileMeta) or meta.encoder is None:
            return
        if meta.ctx is None:
            self._context(tf, meta)
        await self._hand_on(tf, meta, meta.encoder, meta.encoder.flush(time.time_ns(), force))

    def holding(self, tf: tail.TailedFile) -> bool:
        """Whether ``tf``'s encoder holds bytes (a partial line, a P group, a multiline
        group) that a timed flush may hand on (``tail.Reader``)."""
        meta = tf.meta
        if not isinstance(meta, _FileMeta) or meta.encoder is None:
            return False
        return meta.encoder.safe_offset() < meta.encoder.read_offset

    async def _hand_on(
        self,
        tf: tail.TailedFile,
        meta: _FileMeta,
        encoder: _Encoder,
        encoded: kernels.Encoded,
    ) -> None:
        dropped = 0
        if isinstance(encoder, _FilteringEncoder) and encoder.dropped:
            dropped, encoder.dropped = encoder.dropped, 0
            metrics.DROPPED.labels("filtered").inc(dropped)
        if not encoded.count and not dropped:
            return
        if encoded.invalid_utf8:
            metrics.INVALID_UTF8.labels(tf.spec.kind).inc(encoded.invalid_utf8)
        end = encoder.safe_offset()
        chunk = core.Chunk(
            meta.tag,
            encoded.entries,
            encoded.count,
            path=tf.path,
            file_id=tf.file_id,
            first=meta.first,
            end=end,
            finalizer=self.tailer.finalizer(tf, end),
        )
        meta.first = end
        if meta.excluded is not None:
            chunk.settle(core.Delivery.DROPPED)
            metrics.DROPPED.labels("excluded_" + meta.excluded).inc(encoded.count)
            return
        if not encoded.count:
            chunk.settle(core.Delivery.DROPPED)  # all filtered: the checkpoint moves on
            return
        await self._sink(chunk)
