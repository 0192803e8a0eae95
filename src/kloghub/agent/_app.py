"""The agent process: source → (disk buffer → pump) → output, run by the daemon.

- ``forward://`` outputs (one or several upstreams, load-balanced with failover) go
  through the disk buffer in ``<state_dir>/buffer``, which stores the source's chunks as
  they go on the wire and group-commits them (``buffer.flush_interval``): the tailer's
  checkpoints move once chunks are durable there, so logs the kubelet rotates away while
  the collector is down are kept (up to ``buffer.max_bytes``, then ``buffer.when_full``).
  The pump hands the stored chunks to the Forward output undecoded.
- ``file:`` and ``stdout:`` are local and acknowledge after writing: no buffer; they
  decode the chunks into records (``outputs.decoded``).
- ``store:PATH`` (level crawl) keeps ECS documents in the node's embedded store, searchable
  with ``kloghub search``: the agent normalizes as the collector would, and with
  ``detections.enabled`` runs the rules on them (the node's own audit log), stores the
  alerts next to them and sends them to ``detections.notify`` receivers.

Components start in dependency order and stop in reverse, so that the source stops
reading first and the buffer closes last, after the output's final acknowledgements.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from kloghub import (
    buffer,
    config,
    core,
    enrich,
    filters,
    normalize,
    outputs,
    runtime,
    sources,
    store,
    transport,
)

if TYPE_CHECKING:
    from kloghub import detect

__all__ = ["build"]

_IN_FLIGHT_REQUESTS = 4
"""Forward requests (each up to ``batch_max_bytes``) sent and not yet acknowledged: the
output's memory bound; a chunk read is ~1 MiB, so 4 keep a LAN link busy."""
_UNSYNCED_BYTES = 2 * 1024 * 1024
"""Chunk bytes pushed to the disk buffer and not yet durable before the tailer waits for a
commit: the agent's largest memory term after the in-flight window. 8 MiB (the queue's
default) gave a 95-100 MiB peak in bench/agent_e2e.py, 2 MiB 76-78 MiB, at no measurable
CPU cost (bench/RESULTS.md, "agent", 2026-12-03)."""
_POP_MAX_CHUNKS = 64
"""Chunks the pump takes from the buffer at once (bytes are bounded by batch_max_bytes)."""


def _decoding(send: Callable[[core.Batch], Awaitable[None]]) -> sources.Sink:
    """A local output's ``send`` as a chunk sink (the records decoded)."""

    async def send_chunk(chunk: core.Chunk) -> None:
        await send(outputs.decoded(chunk))

    return send_chunk


def _schemes(cfg: config.AgentConfig) -> set[str]:
    return {o.url.split(":", 1)[0] for o in cfg.outputs}


class _NormalizingStore(store.StoreSink):
    """The store as an agent output: records are normalized to ECS documents first and,
    with ``detections``, the alerts they raise are stored with them (in the same batch,
    so the tailer's checkpoint moves only once they are committed)."""

    def __init__(
        self, path: Path, detections: config.DetectionsConfig, state_dir: Path | None = None
    ) -> None:
        super().__init__(path)
        self._state_dir = state_dir
        """Where the notifier keeps the alerts it has not notified yet."""
        self._normalize = normalize.Normalizer(config.NormalizerConfig())
        self._detect: detect.Stage | None = None
        self._notify = detections.notify
        if detections.enabled:
            from kloghub import detect  # pySigma is loaded only where rules run

            self._detect = detect.Stage.from_config(
                detections, self._normalize.namespace, where="agent.detections"
            )

    def notifier(self) -> detect.Notifier | None:
        """The alert notifier of ``detections.notify`` (a component to run), or None."""
        if self._detect is None or not self._notify:
            return None
        from kloghub import detect

        notifier = detect.Notifier(self._notify, self._state_dir)
        self._detect.on_alert.append(notifier.submit)
        return notifier

    async def send(self, batch: core.Batch) -> None:
        normalizer = self._normalize
        docs = [normalizer(event) for event in batch.events]
        alerts = self._detect(docs) if self._detect is not None else None
        if alerts:
            docs.extend(alerts)
        await super().send(core.Batch(docs))
        if alerts:
            assert self._detect is not None
            self._detect.notify(alerts)


def _local_output(cfg: config.AgentConfig) -> outputs.FileOutput | store.StoreSink:
    if len(cfg.outputs) != 1:
        raise core.ConfigError(
            [
                f"agent.outputs: got {len(cfg.outputs)} outputs; several outputs must all "
                "be forward:// (load-balanced); file: and stdout: take exactly one"
            ]
        )
    scheme, _, rest = cfg.outputs[0].url.partition(":")
    if scheme == "file":
        return outputs.FileOutput(Path(rest))
    if scheme == "stdout":
        return outputs.FileOutput(None)
    return _NormalizingStore(
        store.path_from_url(cfg.outputs[0].url), cfg.detections, cfg.state_dir / "notify"
    )


def _watchers_and_decider(
    cfg: config.AgentConfig, node: str | None
) -> tuple[list[core.Component], enrich.Enricher]:
    """The pod watch (when the API is used) and what decides each file's metadata."""
    if not cfg.enrichment.kubernetes_api:
        return [], enrich.Enricher(None, node_name=node)
    cache = enrich.PodCache(cfg.enrichment.tombstone_ttl)
    watcher = enrich.PodWatcher(cfg.enrichment, node, cache, state_dir=cfg.state_dir)
    return [watcher], enrich.Enricher(cache, node_name=node)


def build(cfg: config.AgentConfig) -> runtime.Daemon:
    """The agent's daemon; raises ConfigError for what cannot run as configured."""
    schemes = _schemes(cfg)
    forward = {"forward", "forward+tls"}
    if schemes & forward and not schemes <= forward:
        raise core.ConfigError(
            ["agent.outputs: forward:// outputs cannot be mixed with file:, stdout: or store:"]
        )
    node = cfg.node_name or os.environ.get("NODE_NAME")
    watchers, decider = _watchers_and_decider(cfg, node)
    chain = filters.Filters(cfg.filters)
    readiness = runtime.Readiness()

    def source(sink: sources.Sink) -> sources.LogSource:
        src = sources.LogSource(
            cfg.sources,
            cfg.parsers,
            cfg.state_dir,
            sink,
            node_name=node,
            decider=decider,
            filters=chain,
        )
        readiness.add("tailer", src.tailer.problem)  # a full state disk pauses reading
        return src

    components: list[core.Component]
    if schemes <= forward:
        output = transport.ForwardOutput(
            cfg.outputs, hostname=cfg.node_name, max_in_flight_chunks=_IN_FLIGHT_REQUESTS
        )
        queue = buffer.DiskQueue(
            cfg.state_dir / "buffer",
            cfg.buffer,
            "agent",
            kind="chunks",
            flush_interval=cfg.buffer.flush_interval,
            max_unsynced_bytes=_UNSYNCED_BYTES,
        )
        first = cfg.outputs[0]
        pump = buffer.Pump(
            queue,
            send_chunks=output.send_chunks,
            name="agent",
            max_records=_POP_MAX_CHUNKS,
            max_bytes=int(first.batch_max_bytes),
        )
        components = [*watchers, queue, output, pump, source(queue.push_chunk)]
    else:
        local = _local_output(cfg)
        notifier = local.notifier() if isinstance(local, _NormalizingStore) else None
        components = [*watchers, *([notifier] if notifier else []), local]
        components.append(source(_decoding(local.send)))
    return runtime.Daemon("agent", components, cfg.metrics_addr, cfg.drain_timeout, readiness)
