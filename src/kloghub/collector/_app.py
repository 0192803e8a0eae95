"""The collector process: Forward input (and the audit webhook input) → ECS normalization →
per-sink disk queue → sink.

A chunk is acknowledged to the agent only when its documents are durable in the queue of
every sink (``ForwardServer`` calls :meth:`_Router.deliver`, which returns after the
pushes). Each sink has its own queue, so a slow or broken SIEM holds back only its own
queue (and, when that queue is full with policy ``block``, the agents).

Components start in order (dead letters, queues, sinks, pumps, listener) and stop in
reverse: the listener stops accepting first, and queues close last.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from kloghub import buffer, config, core, normalize, outputs, runtime, sinks, store, transport

__all__ = ["build"]


class _Router:
    """Normalizes every received batch and pushes it into each sink's queue."""

    def __init__(self, normalizer: normalize.Normalizer, queues: list[buffer.DiskQueue]) -> None:
        self._normalize = normalizer
        self._queues = queues

    async def deliver(self, batch: core.Batch) -> None:
        normalizer = self._normalize
        origin = batch.origin
        docs = [normalizer(event, origin) for event in batch.events]
        if len(self._queues) == 1:
            await self._queues[0].push(core.Batch(docs))
            return
        # Each queue settles its own copy; received events carry no finalizer of their
        # own (the acknowledgement to the agent is the Forward ack).
        await asyncio.gather(*(q.push(core.Batch(docs)) for q in self._queues))


def _sink(index: int, cfg: config.SinkConfig, dlq: sinks.DeadLetterQueue) -> core.Service:
    scheme, _, rest = cfg.url.partition(":")
    if scheme == "file":
        return outputs.FileOutput(Path(rest), documents=True)
    if scheme == "stdout":
        return outputs.FileOutput(None, documents=True)
    if scheme == "store":
        return store.StoreSink.from_config(cfg)
    if sinks.handles(cfg.url):
        return sinks.build(cfg, dlq)
    raise core.ConfigError([f"collector.sinks[{index}].url: {scheme}: has no sink"])


def build(cfg: config.CollectorConfig) -> runtime.Daemon:
    """The collector's daemon; raises ConfigError for what cannot run as configured."""
    dlq = sinks.DeadLetterQueue(cfg.state_dir / "dlq", int(cfg.dead_letter_max_bytes))
    built = [_sink(i, s, dlq) for i, s in enumerate(cfg.sinks)]
    readiness = runtime.Readiness()
    for i, sink in enumerate(built):
        if isinstance(sink, sinks.Sink):
            readiness.add(f"sink-{i}", sink.problem)
    queues = [
        buffer.DiskQueue(cfg.state_dir / "queues" / f"sink-{i}", s.queue, f"sink-{i}")
        for i, s in enumerate(cfg.sinks)
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
    router = _Router(normalize.Normalizer(cfg.normalizer), queues)
    listener = transport.ForwardServer(cfg.listen, cfg.listener, router.deliver)
    components: list[core.Component] = [dlq, *queues, *built, *pumps, listener]
    if cfg.audit_webhook.enabled:
        components.append(transport.AuditWebhook(cfg.audit_webhook, router.deliver))
    return runtime.Daemon("collector", components, cfg.metrics_addr, cfg.drain_timeout, readiness)
