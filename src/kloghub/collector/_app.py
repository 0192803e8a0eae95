"""The collector process: Forward input (and the audit webhook input) → ECS normalization →
detections → per-sink disk queue → sink.

PackedForward requests take the compiled path (``_fastpath``: entries → queue frames in
native code, made from templates of the Python path) when every sink sends ``_bulk``
lines; everything else is normalized here.

A chunk is acknowledged to the agent only when its documents are durable in the queue of
every sink (``ForwardServer`` calls :meth:`_Router.deliver`, which returns after the
pushes). Each sink has its own queue, so a slow or broken SIEM holds back only its own
queue (and, when that queue is full with policy ``block``, the agents).

With ``detections.enabled``, the documents of each batch go through the detection stage
(``detect.Stage``) after normalization; the alerts it raises are documents of the
``kloghub.alerts`` data stream pushed with the batch into every queue, and once that push
returned (the alerts are durable) those of mode ``alert`` are handed to the stage's
``on_alert`` hooks: the notifier of ``detections.notify`` (:func:`build`).

Components start in order (dead letters, queues, sinks, pumps, listener) and stop in
reverse: the listener stops accepting first, and queues close last.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
from pathlib import Path
from typing import TYPE_CHECKING

from kloghub import buffer, config, core, normalize, outputs, runtime, sinks, store, transport
from kloghub.collector import _fastpath

if TYPE_CHECKING:
    from kloghub import detect

__all__ = ["build"]

_SINK_BATCHES = 2
_TRIM_INTERVAL = 5.0


class _MemoryTrim(core.Service):
    """Hands freed memory back to the system once a burst is over.

    The allocator keeps the pages that a burst of decoded requests freed, so without
    this the resident size stays near its peak: every few seconds in which the listener
    holds nothing, ``malloc_trim(0)`` (glibc; a few milliseconds) returns them.
    """

    name = "memory-trim"

    def __init__(self, budget: core.Budget) -> None:
        super().__init__()
        self._budget = budget
        path = ctypes.util.find_library("c")
        libc = ctypes.CDLL(path) if path else None
        self._trim = getattr(libc, "malloc_trim", None)  # glibc only

    async def _on_start(self) -> None:
        if self._trim is not None:
            self.spawn("trim", self._loop())

    async def _loop(self) -> None:
        assert self._trim is not None
        while True:
            await asyncio.sleep(_TRIM_INTERVAL)
            if not self._budget.used:
                await asyncio.to_thread(self._trim, 0)


class _Router:
    """Normalizes every received batch, runs the detections on it and pushes it (with its
    alerts) into each sink's queue."""

    def __init__(
        self,
        normalizer: normalize.Normalizer,
        queues: list[buffer.DiskQueue],
        detections: detect.Stage | None = None,
    ) -> None:
        self._normalize = normalizer
        self._queues = queues
        self._detect = detections

    async def deliver(self, batch: core.Batch) -> None:
        normalizer = self._normalize
        origin = batch.origin
        docs = [normalizer(event, origin) for event in batch.events]
        alerts = self._detect(docs) if self._detect is not None else None
        if alerts:
            docs.extend(alerts)
        if len(self._queues) == 1:
            await self._queues[0].push(core.Batch(docs))
        else:
            # Each queue settles its own copy; received events carry no finalizer of their
            # own (the acknowledgement to the agent is the Forward ack).
            await asyncio.gather(*(q.push(core.Batch(docs)) for q in self._queues))
        if alerts:
            assert self._detect is not None
            self._detect.notify(alerts)


def _detections(
    cfg: config.CollectorConfig, normalizer: normalize.Normalizer
) -> detect.Stage | None:
    if not cfg.detections.enabled:
        return None
    from kloghub import detect  # pySigma is loaded only where rules run

    return detect.Stage.from_config(cfg.detections, normalizer.namespace, pods=normalizer.pod)


def _sink(index: int, cfg: config.SinkConfig, dlq: sinks.DeadLetterQueue) -> core.Service:
    scheme, _, rest = cfg.url.partition(":")
    # Behind the disk queue, a sink holds in memory only the batch it is writing and
    # _SINK_BATCHES more (each at most batch_max_records / batch_max_bytes): the rest
    # waits on disk.
    if scheme == "file":
        return outputs.FileOutput(Path(rest), documents=True, queue_batches=_SINK_BATCHES)
    if scheme == "stdout":
        return outputs.FileOutput(None, documents=True, queue_batches=_SINK_BATCHES)
    if scheme == "store":
        return store.StoreSink.from_config(cfg, queue_batches=_SINK_BATCHES)
    if sinks.handles(cfg.url):
        return sinks.build(cfg, dlq)
    raise core.ConfigError([f"collector.sinks[{index}].url: {scheme}: has no sink"])


def _queue(
    directory: Path, cfg: config.SinkConfig, sink: core.Service, name: str
) -> buffer.DiskQueue:
    """The disk queue before ``sink``: the bytes the sink sends, encoded once before the
    queue, for sinks that send bytes (SIEM sinks, files); documents for the store."""
    if isinstance(sink, sinks.Sink | outputs.FileOutput):
        return buffer.DiskQueue(directory, cfg.queue, name, encode=sink.encode, codec=sink.codec)
    return buffer.DiskQueue(directory, cfg.queue, name)


def build(cfg: config.CollectorConfig) -> runtime.Daemon:
    """The collector's daemon; raises ConfigError for what cannot run as configured."""
    dlq = sinks.DeadLetterQueue(cfg.state_dir / "dlq", int(cfg.dead_letter_max_bytes))
    built = [_sink(i, s, dlq) for i, s in enumerate(cfg.sinks)]
    readiness = runtime.Readiness()
    for i, sink in enumerate(built):
        if isinstance(sink, sinks.Sink):
            readiness.add(f"sink-{i}", sink.problem)
    queues = [
        _queue(cfg.state_dir / "queues" / f"sink-{i}", s, sink, f"sink-{i}")
        for i, (s, sink) in enumerate(zip(cfg.sinks, built, strict=True))
    ]
    pumps = [
        buffer.Pump(
            q,
            sink.send,  # type: ignore[attr-defined]
            name=f"sink-{i}",
            max_records=s.batch_max_records,
            max_bytes=int(s.batch_max_bytes),
        )
        for i, (q, sink, s) in enumerate(zip(queues, built, cfg.sinks, strict=True))
    ]
    normalizer = normalize.Normalizer(cfg.normalizer)
    detections = _detections(cfg, normalizer)
    # Notifications: the notifier receives alert documents (mode alert, once stored in
    # every sink queue) through ``detections.on_alert``; submit files them and returns.
    notifier: list[core.Component] = []
    if detections is not None and cfg.detections.notify:
        from kloghub import detect

        sender = detect.Notifier.from_config(cfg.detections, cfg.state_dir / "notify")
        detections.on_alert.append(sender.submit)
        notifier.append(sender)
    router = _Router(normalizer, queues, detections)
    fast = None
    if _fastpath.FastPath.applies(queues, detections):
        fast = _fastpath.FastPath(normalizer, queues, cfg.normalizer.parse_json, detections)
    budget = core.Budget(int(cfg.max_in_flight_bytes))
    listener = transport.ForwardServer(
        cfg.listen,
        cfg.listener,
        router.deliver,
        budget=budget,
        deliver_packed=fast.deliver if fast is not None else None,
    )
    components: list[core.Component] = [
        dlq,
        *queues,
        *built,
        *pumps,
        *notifier,  # started before the listener, stopped after it (drains what is left)
        listener,
        _MemoryTrim(budget),
    ]
    if cfg.audit_webhook.enabled:
        components.append(transport.AuditWebhook(cfg.audit_webhook, router.deliver))
    if cfg.pod_certificates.enabled:
        from kloghub.collector import _signer  # cryptography is loaded only where it signs

        components.append(_signer.PodCertificateSigner(cfg.pod_certificates))
    return runtime.Daemon("collector", components, cfg.metrics_addr, cfg.drain_timeout, readiness)
