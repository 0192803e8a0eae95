"""The life of one tailed file: read in large chunks, cut lines, hand them to its parser.

Offsets are byte positions in the file's (uncompressed) content. ``pos`` is how far the
file was read; ``tracker.committed`` is how far it was acknowledged downstream; the
checkpoint store only ever sees the latter.
"""

from __future__ import annotations

import contextlib
import os
from itertools import accumulate
from typing import IO, TYPE_CHECKING

from kloghub import core

if TYPE_CHECKING:
    from kloghub import parse
    from kloghub.tail._spec import FileSpec

__all__ = ["Chunk", "TailedFile", "fingerprint_matches"]


def fingerprint_matches(known: bytes, seen: bytes) -> bool:
    """Same content start: one fingerprint is a prefix of the other (files grow)."""
    n = min(len(known), len(seen))
    return known[:n] == seen[:n]


class Chunk:
    """Lines cut from one read, ready for the parser."""

    __slots__ = ("end_offsets", "lines", "truncated")

    def __init__(self, lines: list[bytes], end_offsets: list[int], truncated: set[int]) -> None:
        self.lines = lines
        self.end_offsets = end_offsets
        self.truncated = truncated


class TailedFile:
    """An open file being tailed, with its identity, position and parser."""

    def __init__(
        self,
        spec: FileSpec,
        path: str,
        handle: IO[bytes],
        *,
        dev: int,
        ino: int,
        file_id: str,
        fingerprint: bytes,
        offset: int,
        parser: parse.Parser,
        max_line_bytes: int,
        compressed: bool = False,
    ) -> None:
        self.spec = spec
        self.path = path
        """The path the file was discovered at (it may since have been renamed)."""
        self.handle = handle
        self.dev = dev
        self.ino = ino
        self.file_id = file_id
        self.fingerprint = fingerprint
        self.pos = offset
        self.parser = parser
        self.max_line_bytes = max_line_bytes
        self.compressed = compressed
        """Reading the gzip of a rotated file, continuing at an uncompressed offset."""
        self.tracker = core.OffsetTracker(offset)
        self.leftover = b""
        self.skipping = False
        """Inside an over-long line: discard bytes up to its newline."""
        self.detached = compressed
        """Renamed or deleted: read it to the end, then close it."""
        self.detached_at: float | None = None
        self.closed = False
        self.final_offset: int | None = None
        self.last_read = 0
        self.discovered_as = path
        """The path as matched by the glob (a /var/log/containers symlink, say)."""
        self.meta: object = None
        """What the source derived from the path (pod, namespace, ...), computed once."""

    @property
    def committed(self) -> int:
        return self.tracker.committed

    def read_chunk(self, max_bytes: int) -> Chunk | None:
        """Read up to ``max_bytes`` and cut them into complete lines (None at EOF)."""
        data = self.handle.read(max_bytes)
        self.last_read = len(data)
        if not data:
            return None
        start = self.pos - len(self.leftover)
        self.pos += len(data)
        if self.skipping:
            cut = data.find(b"\n")
            if cut < 0:
                return Chunk([], [], set())
            start += len(self.leftover) + cut + 1
            data = data[cut + 1 :]
            self.leftover = b""
            self.skipping = False
        buf = self.leftover + data if self.leftover else data
        last = buf.rfind(b"\n")
        if last < 0:
            self.leftover = buf
            return self._maybe_cut_long_line(start)
        self.leftover = buf[last + 1 :]
        lines = buf[:last].split(b"\n")
        ends = [start + n + i for i, n in enumerate(accumulate(len(x) for x in lines), 1)]
        truncated: set[int] = set()
        limit = self.max_line_bytes
        if max(map(len, lines)) > limit:
            for i, line in enumerate(lines):
                if len(line) > limit:
                    lines[i] = line[:limit]
                    truncated.add(i)
        if len(self.leftover) > limit:
            extra = self._maybe_cut_long_line(ends[-1] if ends else start)
            if extra is not None and extra.lines:
                lines.extend(extra.lines)
                ends.extend(extra.end_offsets)
                truncated.add(len(lines) - 1)
        return Chunk(lines, ends, truncated)

    def _maybe_cut_long_line(self, start: int) -> Chunk | None:
        """A line longer than the limit with no newline yet: emit its head, skip the rest."""
        if len(self.leftover) <= self.max_line_bytes:
            return Chunk([], [], set())
        head = self.leftover[: self.max_line_bytes]
        self.leftover = b""
        self.skipping = True
        return Chunk([head], [self.pos], {0})

    def size(self) -> int:
        """Current size of the open file (not meaningful for gzip continuations)."""
        if self.compressed:
            return self.pos
        try:
            return os.fstat(self.handle.fileno()).st_size
        except (OSError, ValueError):
            return self.pos

    def rewind(self) -> None:
        """The file was truncated (copytruncate): read it again from the start."""
        self.handle.seek(0)
        self.pos = 0
        self.leftover = b""
        self.skipping = False
        self.tracker = core.OffsetTracker(0)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.final_offset = self.pos
            with contextlib.suppress(OSError):
                self.handle.close()
