"""The record a parser emits: one log entry of a tailed file, with its flags and offset."""

from __future__ import annotations

__all__ = [
    "FLAG_NAMES",
    "INVALID_UTF8",
    "MULTILINE",
    "PARSE_ERROR",
    "PARTIAL_JOINED",
    "TRUNCATED",
    "Record",
    "flag_names",
]

PARTIAL_JOINED = 1
"""Built from runtime partial lines (CRI ``P`` parts, docker ``log`` without newline)."""
TRUNCATED = 2
"""Content was cut: a line longer than ``max_line_bytes`` or a record past ``max_record_bytes``."""
PARSE_ERROR = 4
"""The line did not parse in the file's format; ``message`` is the whole line as text."""
INVALID_UTF8 = 8
"""The bytes were not UTF-8: ``message`` has U+FFFD replacements, ``raw`` the original bytes."""
MULTILINE = 16
"""Several lines joined by a multiline rule (a stack trace), separated by ``\\n``."""

FLAG_NAMES: tuple[tuple[int, str], ...] = (
    (PARTIAL_JOINED, "partial"),
    (TRUNCATED, "truncated"),
    (PARSE_ERROR, "parse_error"),
    (INVALID_UTF8, "invalid_utf8"),
    (MULTILINE, "multiline"),
)
"""Each flag bit with its stable name (the names travel in ``kloghub.flags``)."""


def flag_names(flags: int) -> list[str]:
    """The names of the bits set in ``flags``, in bit order (``[]`` for 0)."""
    if not flags:
        return []
    return [name for bit, name in FLAG_NAMES if flags & bit]


class Record:
    """One log entry: built on the hot path, so positional, slotted and never validated.

    ``raw`` holds the original bytes when they matter: audit lines (``event.original``)
    and entries whose bytes were not valid UTF-8 — for CRI and plain text the message
    bytes, for docker and JSON lines the whole line (their message is JSON-escaped
    inside it). It is ``None`` otherwise.
    """

    __slots__ = ("end_offset", "flags", "message", "raw", "stream", "time_ns")

    def __init__(  # noqa: PLR0917 - built per line: positional is the fast call
        self,
        time_ns: int,
        stream: str,
        message: str,
        raw: bytes | None,
        flags: int,
        end_offset: int,
    ) -> None:
        self.time_ns = time_ns
        """Nanoseconds since the epoch: from the line when it carries a time, else read time."""
        self.stream = stream
        """``stdout`` or ``stderr`` for container logs; ``""`` for node and audit logs."""
        self.message = message
        self.raw = raw
        self.flags = flags
        """Bit set of ``PARTIAL_JOINED | TRUNCATED | PARSE_ERROR | INVALID_UTF8 | MULTILINE``."""
        self.end_offset = end_offset
        """Byte offset just past the last line that contributed to this record."""

    def __repr__(self) -> str:
        return (
            f"Record(time_ns={self.time_ns}, stream={self.stream!r}, "
            f"message={self.message!r}, raw={self.raw!r}, flags={flag_names(self.flags)}, "
            f"end_offset={self.end_offset})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record):
            return NotImplemented
        return (
            self.time_ns == other.time_ns
            and self.stream == other.stream
            and self.message == other.message
            and self.raw == other.raw
            and self.flags == other.flags
            and self.end_offset == other.end_offset
        )

    __hash__ = None  # type: ignore[assignment]  # mutable: equal records need not hash alike
