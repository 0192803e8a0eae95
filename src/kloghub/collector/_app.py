"""The collector process: Forward input → per-sink disk queue → pump → sink.

A chunk is acknowledged to the agent only when its events are durable in the queue of
every sink (``ForwardServer`` calls :func:`_Router.deliver`, which returns after the
pushes). Each sink has its own queue, so a slow or broken SIEM holds back only its own
queue (and, when that queue is full with policy ``block``, the agents).

Components start in order (queues, sinks, pumps, listener) and stop in reverse: the
listener stops accepting first, and queues close last.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from kloghub import buffer, config, core, outputs, runtime, transport

__all__ = ["build"]


class _Router:
    """Pushes every received batch into each sink's queue; returns when all have it."""

    def __init__(self, queues: list[buffer.DiskQueue]) -> None:
        self._queues = queues

    async def deliver(self, batch: core.Batch) -> None:
        if len(self._queues) == 1:
            await self._queues[0].push(batch)
            return
        # Each queue settles its own copy of the batch; the received events carry no
        # finalizer of their own (the acknowledgement is the Forward ack).
        await asyncio.gather(*(q.push(core.Batch(batch.events)) for q in self._queues))


def _sink(index: int, sink: config.SinkConfig) -> outputs.FileOutput:
    scheme, _, rest = sink.url.partition(":")
    if scheme == "file":
        return outputs.FileOutput(Path(rest))
    if scheme == "stdout":
        return outputs.FileOutput(None)
    raise core.ConfigError(
        [
            f"collector.sinks[{index}].url: {scheme}: is not available in this build yet "
            "(Elasticsearch, OpenSearch and Splunk HEC sinks arrive with issue #6, store: "
            "with issue #7); use file:PATH or stdout:"
        ]
    )


def build(cfg: config.CollectorConfig) -> runtime.Daemon:
    """The collector's daemon; raises ConfigError for what cannot run as configured."""
    sinks = [_sink(i, s) for i, s in enumerate(cfg.sinks)]
    queues = [
        buffer.DiskQueue(cfg.state_dir / "queues" / f"sink-{i}", s.queue, f"sink-{i}")
        for i, s in enumerate(cfg.sinks)
    ]
    pumps = [
        buffer.Pump(
            q,
            sink.send,
            name=f"sink-{i}",
            max_records=s.batch_max_records,
            max_bytes=int(s.batch_max_bytes),
        )
        for i, (q, sink, s) in enumerate(zip(queues, sinks, cfg.sinks, strict=True))
    ]
    router = _Router(queues)
    listener = transport.ForwardServer(cfg.listen, cfg.listener, router.deliver)
    components: list[core.Component] = [*queues, *sinks, *pumps, listener]
    return runtime.Daemon(
        "collector", components, cfg.metrics_addr, cfg.drain_timeout, runtime.Readiness()
    )
