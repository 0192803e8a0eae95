"""The life of one tailed file: read it in large pieces, as bytes and their offset.

Offsets are byte positions in the file's (uncompressed) content. ``pos`` is how far the
file was read; ``tracker.committed`` is how far it was acknowledged downstream; the
checkpoint store only ever sees the latter. Cutting lines and parsing them is the
source's business (``kloghub.kernels.FileEncoder``): the tailer hands on bytes.
"""

from __future__ import annotations

import contextlib
import os
from typing import IO, TYPE_CHECKING

from kloghub import core

if TYPE_CHECKING:
    from kloghub.tail._spec import FileSpec

__all__ = ["TailedFile", "fingerprint_matches"]


def fingerprint_matches(known: bytes, seen: bytes) -> bool:
    """Same content start: one fingerprint is a prefix of the other (files grow)."""
    n = min(len(known), len(seen))
    return known[:n] == seen[:n]


class TailedFile:
    """An open file being tailed, with its identity and position."""

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
        self.compressed = compressed
        """Reading the gzip of a rotated file, continuing at an uncompressed offset."""
        self.tracker = core.OffsetTracker(offset)
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
    def key(self) -> tuple[int, int]:
        """The identity the tailer keys its files by: (device, inode)."""
        return (self.dev, self.ino)

    @property
    def committed(self) -> int:
        return self.tracker.committed

    def read(self, max_bytes: int) -> bytes:
        """The next bytes (up to ``max_bytes``; empty at EOF); they start at ``pos`` before
        the call."""
        data = self.handle.read(max_bytes)
        self.last_read = len(data)
        self.pos += len(data)
        return data

    def head(self, n: int) -> bytes:
        """The file's first ``n`` bytes as they are now (empty for gzip continuations)."""
        if self.compressed:
            return b""
        return os.pread(self.handle.fileno(), n, 0)

    def seek(self, offset: int) -> None:
        """Read again from ``offset`` (at or after the committed offset; the tracker stays:
        what is in flight still commits in order)."""
        self.handle.seek(offset)
        self.pos = offset

    def size(self) -> int:
        """Current size of the open file (not meaningful for gzip continuations)."""
        if self.compressed:
            return self.pos
        try:
            return os.fstat(self.handle.fileno()).st_size
        except (OSError, ValueError):
            return self.pos

    def rewind(self, file_id: str, fingerprint: bytes) -> None:
        """The file was truncated (copytruncate): read it again from the start, as a new
        identity (offsets restart, so document ids must not repeat)."""
        self.handle.seek(0)
        self.pos = 0
        self.tracker = core.OffsetTracker(0)
        self.file_id = file_id
        self.fingerprint = fingerprint

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.final_offset = self.pos
            with contextlib.suppress(OSError):
                self.handle.close()
