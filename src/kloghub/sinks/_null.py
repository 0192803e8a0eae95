"""``null:``: a sink that encodes every event as an Elasticsearch ``_bulk`` request would,
batches them like any sink, and discards the requests.

For measuring the collector without a SIEM behind it (``bench/collector_e2e.py``) and for
a dry run of a configuration: everything up to the network is the Elasticsearch sink's
work (ECS document, ``_bulk`` action and document lines, batching, concurrency), then each
request is counted as delivered. Nothing is kept: events sent here are gone, and the
collector acknowledges them to the agents as it would for a real destination.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kloghub import core
from kloghub.sinks import _bulk, _sink

__all__ = ["NullSink"]


class NullSink(_sink.Sink):
    """Encodes ``_bulk`` lines, batches them, drops each request as delivered."""

    kind = "null"
    bytes_discarded = 0
    """Bytes of the requests dropped so far (tests read it)."""

    codec = _bulk.CODEC

    def encode(self, event: core.Event) -> bytes:
        return _bulk.encode(event)

    def decode(self, data: bytes) -> Any:
        return _bulk.decode(data)

    async def push(self, items: Sequence[_sink.Item]) -> _sink.Outcome:
        self.bytes_discarded += sum(len(item.data) for item in items)
        return _sink.DELIVERED
