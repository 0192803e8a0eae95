"""The reference file encoder: the executable specification of the native one.

It is today's behaviour, moved: the line cutting of the tailer's ``read_chunk`` (bytes kept
until their newline, lines longer than ``max_line_bytes`` cut and the rest of them skipped
up to their newline, cut lines flagged ``TRUNCATED``), :class:`kloghub.parse.Parser`
(unchanged: partial joining, multiline, flush, ``safe_offset``), then
:func:`kernels._entries.encode_records`.
"""

from __future__ import annotations

from itertools import accumulate

from kloghub import config, parse
from kloghub.kernels import _encoded, _entries

__all__ = ["ReferenceFileEncoder"]

_INVALID_UTF8 = parse.INVALID_UTF8
_Encoded = _encoded.Encoded


class ReferenceFileEncoder:
    """One tailed file's bytes → entries, in Python (see the module docstring)."""

    __slots__ = ("_ctx", "_leftover", "_max_line", "_parser", "_skipping", "read_offset")

    def __init__(
        self,
        fmt: str,
        parsers: config.ParsersConfig,
        multiline: config.MultilineConfig | None,
        ctx: _entries.EntryContext,
        offset: int,
    ) -> None:
        # refuses an unknown format (ValueError)
        self._parser = parse.Parser(fmt, parsers, multiline)  # type: ignore[arg-type]
        self._max_line = int(parsers.max_line_bytes)
        self._ctx = ctx
        self._leftover = b""
        self._skipping = False
        """Inside an over-long line: discard bytes up to its newline."""
        self.read_offset = offset
        """Offset after the last byte fed."""

    @property
    def format(self) -> str:
        """The file's format (``auto`` until the first line decided it)."""
        return self._parser.format

    @property
    def native(self) -> bool:
        """Whether the compiled kernel does the work (never, here)."""
        return False

    def set_context(self, ctx: _entries.EntryContext) -> None:
        """Entries from now on carry this context (the pod's metadata changed)."""
        self._ctx = ctx

    def safe_offset(self) -> int:
        """Every byte before it is in an entry already returned (held lines are not)."""
        return self._parser.safe_offset(self.read_offset - len(self._leftover))

    def feed(self, data: bytes, now_ns: int) -> _encoded.Encoded:
        """Bytes read from the file, contiguous from ``read_offset``."""
        if not data:
            return _encoded.EMPTY
        lines, ends, truncated = self._cut(data)
        if not lines:
            return _encoded.EMPTY
        records = self._parser.feed(lines, ends, now_ns, truncated or None)
        return self._encode(records, len(lines), len(truncated))

    def flush(self, now_ns: int, force: bool = False) -> _encoded.Encoded:
        """Held records whose timeout passed (all of them with ``force``: EOF, drain)."""
        records = self._parser.flush(now_ns, force)
        if not records:
            return _encoded.EMPTY
        return self._encode(records, 0, 0)

    def _encode(self, records: list[parse.Record], lines: int, truncated: int) -> _Encoded:
        if not records:
            return _Encoded(b"", 0, lines, 0, truncated, 0)
        invalid = 0
        for r in records:
            if r.flags & _INVALID_UTF8:
                invalid += 1
        entries = _entries.encode_records(records, self._ctx)
        return _Encoded(entries, len(records), lines, records[-1].end_offset, truncated, invalid)

    def _cut(self, data: bytes) -> tuple[list[bytes], list[int], set[int]]:
        """Complete lines of ``data`` (after what was left over), their end offsets and the
        indexes of the lines cut at ``max_line_bytes`` (the tailer's ``read_chunk``)."""
        start = self.read_offset - len(self._leftover)
        self.read_offset += len(data)
        if self._skipping:
            cut = data.find(b"\n")
            if cut < 0:
                return [], [], set()
            start += len(self._leftover) + cut + 1
            data = data[cut + 1 :]
            self._leftover = b""
            self._skipping = False
        buf = self._leftover + data if self._leftover else data
        last = buf.rfind(b"\n")
        if last < 0:
            self._leftover = buf
            return self._cut_long_line()
        self._leftover = buf[last + 1 :]
        lines = buf[:last].split(b"\n")
        ends = [start + n + i for i, n in enumerate(accumulate(len(x) for x in lines), 1)]
        truncated: set[int] = set()
        limit = self._max_line
        if max(map(len, lines)) > limit:
            for i, line in enumerate(lines):
                if len(line) > limit:
                    lines[i] = line[:limit]
                    truncated.add(i)
        if len(self._leftover) > limit:
            extra, extra_ends, _ = self._cut_long_line()
            if extra:
                lines.extend(extra)
                ends.extend(extra_ends)
                truncated.add(len(lines) - 1)
        return lines, ends, truncated

    def _cut_long_line(self) -> tuple[list[bytes], list[int], set[int]]:
        """A line longer than the limit with no newline yet: emit its head, skip the rest."""
        if len(self._leftover) <= self._max_line:
            return [], [], set()
        head = self._leftover[: self._max_line]
        self._leftover = b""
        self._skipping = True
        return [head], [self.read_offset], {0}
