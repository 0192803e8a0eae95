"""The event and the batch: what flows from sources to outputs.

An event's ``record`` uses Fluent Bit's kubernetes layout (``log``, ``stream``, ``time``,
``kubernetes{...}``, plus ``kloghub{...}``) so that the same records cross the Forward
protocol unchanged. Events are plain slotted objects; the hot path never copies them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from kloghub.core._finalize import Delivery, Finalizer
from kloghub.core._origin import Origin

__all__ = ["Batch", "Encoded", "Event"]


class Encoded:
    """The record of a document event as a sink's queue stores it: the document id and the
    bytes the sink sends for it (``_bulk`` action and source lines, a HEC event, a file
    line), encoded once before the queue; nothing decodes them on the way to the network.
    """

    __slots__ = ("data", "id")

    def __init__(self, doc_id: str | None, data: bytes) -> None:
        self.id = doc_id
        """The document id (``record["id"]`` of the document event it was made of)."""
        self.data = data
        """What the sink's ``encode`` made of the document event."""

    def __repr__(self) -> str:
        return f"Encoded(id={self.id!r}, bytes={len(self.data)})"


class Event:
    """One log record on its way through the pipeline."""

    __slots__ = ("finalizer", "record", "size", "tag", "time_ns")

    def __init__(
        self,
        tag: str,
        time_ns: int,
        record: dict[str, Any],
        finalizer: Finalizer | None = None,
        size: int = 0,
    ) -> None:
        self.tag = tag
        """Routing tag: ``kube.<ns>.<pod>.<container>``, ``node.<file>`` or ``audit``."""
        self.time_ns = time_ns
        """Event time in nanoseconds since the epoch (from the log line where it has one)."""
        self.record = record
        """The record (Fluent Bit's layout), or a document event's ``{"id", "doc"}``; a
        :class:`Encoded` in what a sink queue that stores bytes hands out (typed as the
        dict: only the sinks behind such a queue see one, and they check)."""
        self.finalizer = finalizer
        """Settled once the next hop has the event; shared with the events of one read."""
        self.size = size
        """Approximate size in bytes, for buffer and batch accounting."""

    def __repr__(self) -> str:
        return f"Event(tag={self.tag!r}, time_ns={self.time_ns}, record={self.record!r})"


class Batch:
    """Events that travel together and are settled together."""

    __slots__ = ("events", "origin", "size")

    def __init__(self, events: Iterable[Event] = (), origin: Origin | None = None) -> None:
        self.events: list[Event] = list(events)
        self.size = sum(e.size for e in self.events)
        self.origin = origin
        """Who sent the batch over the network, as the collector established it; None for
        events read locally (the agent's own)."""

    def __len__(self) -> int:
        return len(self.events)

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def append(self, event: Event) -> None:
        self.events.append(event)
        self.size += event.size

    def settle(self, status: Delivery = Delivery.DELIVERED) -> None:
        """Settle every event of the batch, calling each distinct finalizer once.

        Events of one read sit next to each other, so runs are counted first (cheap) and
        only their totals are merged per finalizer.
        """
        counts: dict[int, list[Any]] = {}
        run_fin: Finalizer | None = None
        run = 0
        for event in self.events:
            fin = event.finalizer
            if fin is run_fin:
                run += 1
                continue
            if run_fin is not None:
                _add(counts, run_fin, run)
            run_fin, run = fin, 1
        if run_fin is not None:
            _add(counts, run_fin, run)
        for fin, count in counts.values():
            fin.settle(status, count)


def _add(counts: dict[int, list[Any]], fin: Finalizer, n: int) -> None:
    entry = counts.get(id(fin))
    if entry is None:
        counts[id(fin)] = [fin, n]
    else:
        entry[1] += n
