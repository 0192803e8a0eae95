"""Chunks back to events, for the local outputs (``file:``, ``stdout:``, ``store:``).

These outputs write records, not wire bytes, and are local: decoding here
(``kernels.decode_entries``) is off the path to the collector. The events share one
finalizer that settles the chunk once every event of it is settled.
"""

from __future__ import annotations

from kloghub import core, kernels

__all__ = ["decoded"]


def decoded(chunk: core.Chunk) -> core.Batch:
    """The events of ``chunk``; settling all of them settles the chunk (worst status)."""
    entries = kernels.decode_entries(chunk.entries)
    fin = core.Finalizer(chunk.settle, count=len(entries)) if entries else None
    tag, size = chunk.tag, len(chunk.entries) // max(1, len(entries))
    batch = core.Batch(core.Event(tag, t, record, fin, size) for t, record in entries)
    if not entries:
        chunk.settle(core.Delivery.DELIVERED)
    return batch
