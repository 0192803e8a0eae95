"""Shared helpers of the sink tests: events with one finalizer each, an in-memory DLQ."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from kloghub import core, sinks
from kloghub.runtime import metrics

NS = 1_700_000_000_123_456_789
FAST_RETRY = {"initial_backoff": 0.01, "max_backoff": 0.2}


class Settled:
    """One finalizer per event, so that every event's fate is visible."""

    def __init__(self) -> None:
        self.status: dict[str, core.Delivery] = {}
        self.twice: list[str] = []
        self._changed = asyncio.Event()

    def event(self, tag: str, doc_id: str, doc: dict[str, Any], time_ns: int = NS) -> core.Event:
        return core.Event(
            tag, time_ns, {"id": doc_id, "doc": doc}, core.Finalizer(self._done(doc_id), count=1)
        )

    def _done(self, doc_id: str):
        def done(status: core.Delivery) -> None:
            if doc_id in self.status:
                self.twice.append(doc_id)
            self.status[doc_id] = status
            self._changed.set()

        return done

    def count(self, status: core.Delivery | None = None) -> int:
        return sum(1 for s in self.status.values() if status is None or s is status)

    async def wait_for(self, n: int, timeout: float = 10.0) -> None:
        """Until ``n`` events are settled (any status)."""
        async with asyncio.timeout(timeout):
            while len(self.status) < n:
                self._changed.clear()
                await self._changed.wait()


class MemoryDeadLetters:
    """A DeadLetters store in memory; ``failures`` makes the next puts raise."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, sinks.Rejection]] = []
        self.failures = 0

    async def put(self, sink: str, rejections: Sequence[sinks.Rejection]) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError("disk full (test)")
        self.entries.extend((sink, r) for r in rejections)

    def ids(self) -> list[str]:
        return [r.event.record["id"] for _sink, r in self.entries]


def doc(i: int, **extra: Any) -> dict[str, Any]:
    """A small ECS-like container log document."""
    return {
        "@timestamp": "2024-05-01T10:00:00.123456789Z",
        "message": f"GET /api/items/{i} 200 3ms",
        "n": i,
        "log": {"file": {"path": "/var/log/pods/shop_web-1_uid/web/0.log"}, "offset": i * 120},
        "kubernetes": {
            "namespace": "shop",
            "pod": {"name": "web-1"},
            "container": {"name": "web"},
            "node": {"name": "node-1"},
        },
        "host": {"name": "node-1"},
        **extra,
    }


def counter(metric: Any, *labels: str) -> float:
    """The current value of a labelled counter."""
    return float(metric.labels(*labels)._value.get())


__all__ = ["FAST_RETRY", "NS", "MemoryDeadLetters", "Settled", "counter", "doc", "metrics"]
