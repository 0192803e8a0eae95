"""The chunk: the unit of the agent's data plane after the tailer.

A chunk holds the entries of one file read, already encoded as they go on the wire (the
body of a Forward ``PackedForward`` request: concatenated ``[EventTime, record]`` msgpack
arrays, see ``kloghub.kernels``), with the tag, the file identity and the offset range
they came from. Nothing after the source decodes it on the way to the collector: the disk
buffer stores these bytes and the Forward output sends them. Local outputs that need
records decode them with ``kloghub.kernels.decode_entries``.

One chunk is one unit of its :class:`Finalizer`: settling the chunk settles one count of
it, which is how acknowledgements move the file's checkpoint.
"""

from __future__ import annotations

from kloghub.core._finalize import Delivery, Finalizer

__all__ = ["Chunk"]


class Chunk:
    """Entries of one file, wire-ready, on their way to an acknowledgement."""

    __slots__ = ("count", "end", "entries", "file_id", "finalizer", "first", "path", "tag")

    def __init__(
        self,
        tag: str,
        entries: bytes,
        count: int,
        *,
        path: str = "",
        file_id: str = "",
        first: int = 0,
        end: int = 0,
        finalizer: Finalizer | None = None,
    ) -> None:
        self.tag = tag
        """Routing tag: ``kube.<ns>.<pod>.<container>``, ``node.<file>`` or ``audit``."""
        self.entries = entries
        """Concatenated msgpack entries: the body of a PackedForward request."""
        self.count = count
        """Number of entries."""
        self.path = path
        """The file the entries were read from."""
        self.file_id = file_id
        """The file's stable id (``kloghub.file_id`` in every entry)."""
        self.first = first
        """Offset where the range of this chunk starts (the previous chunk's end)."""
        self.end = end
        """Offset up to which the file is in this chunk or before (its checkpoint)."""
        self.finalizer = finalizer
        """Settled once the next hop has the chunk (one count per chunk)."""

    @property
    def size(self) -> int:
        """Bytes of the entries (for buffer and batch accounting)."""
        return len(self.entries)

    def settle(self, status: Delivery = Delivery.DELIVERED) -> None:
        """Settle the chunk: one count of its finalizer."""
        if self.finalizer is not None:
            self.finalizer.settle(status, 1)

    def __repr__(self) -> str:
        return (
            f"Chunk(tag={self.tag!r}, count={self.count}, bytes={len(self.entries)}, "
            f"file_id={self.file_id!r}, range={self.first}..{self.end})"
        )
