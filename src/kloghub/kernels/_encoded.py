"""What one ``feed`` or ``flush`` of a file encoder produced."""

from __future__ import annotations

__all__ = ["EMPTY", "Encoded"]


class Encoded:
    """Entries of one call, with the counts the tailer needs (plain, slotted, no validation)."""

    __slots__ = ("count", "end_offset", "entries", "invalid_utf8", "lines", "truncated")

    def __init__(  # noqa: PLR0917 - built per chunk by both kernels: positional on purpose
        self,
        entries: bytes,
        count: int,
        lines: int,
        end_offset: int,
        truncated: int,
        invalid_utf8: int,
    ) -> None:
        self.entries = entries
        """Concatenated msgpack entries (a PackedForward body), see ``kernels._entries``."""
        self.count = count
        """Number of entries."""
        self.lines = lines
        """Physical lines consumed by this call."""
        self.end_offset = end_offset
        """End offset of the last entry (0 if none)."""
        self.truncated = truncated
        """Lines cut at ``max_line_bytes``."""
        self.invalid_utf8 = invalid_utf8
        """Entries flagged ``invalid_utf8``."""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Encoded):
            return NotImplemented
        return (
            self.entries == other.entries
            and self.count == other.count
            and self.lines == other.lines
            and self.end_offset == other.end_offset
            and self.truncated == other.truncated
            and self.invalid_utf8 == other.invalid_utf8
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Encoded(count={self.count}, lines={self.lines}, end_offset={self.end_offset}, "
            f"truncated={self.truncated}, invalid_utf8={self.invalid_utf8}, "
            f"entries={len(self.entries)} bytes)"
        )


EMPTY = Encoded(b"", 0, 0, 0, 0, 0)
"""Nothing produced (callers must not mutate it)."""
