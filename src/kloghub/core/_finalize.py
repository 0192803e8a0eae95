"""Acknowledgements: how a sink tells a source that its data is safe.

A source hands out events that carry a :class:`Finalizer`. Many events may share one
finalizer (all the lines of one chunk read from a file), which keeps the hot path free of
per-event callbacks: a batch settles each distinct finalizer once with the number of its
events it held. When every event of a finalizer is settled, its callback runs once with
the worst status seen, and the source may move its checkpoint.

:class:`OffsetTracker` turns such callbacks, which arrive out of order, into the one
number a source may persist: the end of the longest acknowledged prefix.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable

__all__ = ["Delivery", "Finalizer", "OffsetTracker"]


class Delivery(enum.IntEnum):
    """What became of an event. Higher values are worse; a group reports its worst."""

    DELIVERED = 0
    """The next hop acknowledged it."""
    DROPPED = 1
    """Dropped on purpose by an explicit policy (``drop_oldest``); counted where it happened."""
    REJECTED = 2
    """Permanently refused by the destination and kept in the dead-letter store."""


class Finalizer:
    """A countdown shared by the events of one unit of source progress.

    ``callback`` runs exactly once, when as many events were settled as were added.
    """

    __slots__ = ("_callback", "_pending", "_sealed", "_worst")

    def __init__(self, callback: Callable[[Delivery], None], count: int = 0) -> None:
        self._callback: Callable[[Delivery], None] | None = callback
        self._pending = count
        self._worst = Delivery.DELIVERED
        self._sealed = count > 0

    @property
    def pending(self) -> int:
        """Events handed out and not yet settled."""
        return self._pending

    @property
    def done(self) -> bool:
        return self._callback is None

    def add(self, count: int = 1) -> None:
        """Hand out ``count`` more events under this finalizer (before :meth:`seal`)."""
        if self._callback is None:
            raise RuntimeError("finalizer already fired")
        self._pending += count

    def seal(self) -> None:
        """No more events will be added; fire now if every event is already settled."""
        self._sealed = True
        self._maybe_fire()

    def settle(self, status: Delivery = Delivery.DELIVERED, count: int = 1) -> None:
        """Settle ``count`` events with ``status``. Settling more than was added is a bug."""
        if self._callback is None:
            return
        if count > self._pending:
            raise RuntimeError(f"settled {count} events of a finalizer with {self._pending}")
        self._pending -= count
        self._worst = max(self._worst, status)
        self._maybe_fire()

    def _maybe_fire(self) -> None:
        if self._sealed and self._pending == 0 and self._callback is not None:
            callback, self._callback = self._callback, None
            callback(self._worst)


class OffsetTracker:
    """The committed offset of one source stream, advanced only over acknowledged ranges.

    The source calls :meth:`reserve` for each range it hands out, in stream order, and
    marks it with :meth:`acknowledge` when its finalizer fires (in any order).
    :attr:`committed` is the end of the longest prefix of acknowledged ranges.
    """

    __slots__ = ("_committed", "_ranges")

    def __init__(self, committed: int = 0) -> None:
        self._committed = committed
        self._ranges: deque[list[int]] = deque()  # [end_offset, acknowledged(0/1)]

    @property
    def committed(self) -> int:
        return self._committed

    @property
    def in_flight(self) -> int:
        """Ranges handed out and not yet committed."""
        return len(self._ranges)

    def reserve(self, end_offset: int) -> list[int]:
        """Register a range ending at ``end_offset``; returns the token for :meth:`acknowledge`."""
        if self._ranges and end_offset < self._ranges[-1][0]:
            raise ValueError("ranges must be reserved in stream order")
        token = [end_offset, 0]
        self._ranges.append(token)
        return token

    def acknowledge(self, token: list[int]) -> bool:
        """Mark a range acknowledged; returns True when :attr:`committed` moved."""
        token[1] = 1
        moved = False
        ranges = self._ranges
        while ranges and ranges[0][1]:
            self._committed = ranges.popleft()[0]
            moved = True
        return moved
