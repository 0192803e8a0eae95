"""Bounded, crash-safe disk queues: the agent's buffer and the collector's sink queues."""

from kloghub.buffer._pump import Pump
from kloghub.buffer._queue import DiskQueue

__all__ = ["DiskQueue", "Pump"]
