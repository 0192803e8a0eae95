"""The acknowledgement log: which records of which segments were acknowledged.

Append-only, one fixed 20-byte entry per acknowledged range::

    u64 segment id | u32 first record | u32 end record (exclusive) | u32 crc32(first 16 bytes)

Each acknowledgement is appended with one ``write`` as it happens (it survives SIGKILL at
once: the page cache outlives the process) and the file is ``fsync``-ed lazily (a power cut
may lose the last second of acknowledgements, which only replays those records). When the
log grows it is rewritten with only the live ranges: write a temporary file, ``fsync``,
rename over the log, ``fsync`` the directory.
"""

from __future__ import annotations

import contextlib
import os
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path

__all__ = ["AckLog", "read_entries"]

_BODY = struct.Struct("<QII")
_CRC = struct.Struct("<I")
ENTRY_SIZE = _BODY.size + _CRC.size


def _encode(entries: Iterable[tuple[int, int, int]]) -> bytes:
    parts = []
    for segment_id, start, end in entries:
        body = _BODY.pack(segment_id, start, end)
        parts.append(body)
        parts.append(_CRC.pack(zlib.crc32(body)))
    return b"".join(parts)


def read_entries(path: Path) -> tuple[list[tuple[int, int, int]], bool]:
    """The entries of the log, and whether it ended with a torn or corrupt entry."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], False
    entries: list[tuple[int, int, int]] = []
    body_size = _BODY.size
    for offset in range(0, len(data) - ENTRY_SIZE + 1, ENTRY_SIZE):
        body = data[offset : offset + body_size]
        (crc,) = _CRC.unpack_from(data, offset + body_size)
        if zlib.crc32(body) != crc:
            return entries, True
        segment_id, start, end = _BODY.unpack(body)
        if end > start:
            entries.append((segment_id, start, end))
    return entries, len(data) % ENTRY_SIZE != 0


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AckLog:
    """The open log; ``append`` on the event loop, ``sync`` may run in a thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = 0
        """Bytes in the log, for the compaction threshold."""
        self.dirty = False
        """Appended since the last ``fsync``."""
        self._fd: int | None = None

    @property
    def closed(self) -> bool:
        return self._fd is None

    def rewrite(self, entries: Iterable[tuple[int, int, int]]) -> None:
        """Replace the log with ``entries``, atomically and durably, and keep appending."""
        data = _encode(entries)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                tmp.unlink()  # a full disk: the half-written copy must not keep the space
            raise
        os.close(fd)
        tmp.replace(self.path)
        fsync_directory(self.path.parent)
        new_fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        old, self._fd = self._fd, new_fd
        if old is not None:
            with contextlib.suppress(OSError):
                os.close(old)
        self.size = len(data)
        self.dirty = False

    def append(self, entries: Iterable[tuple[int, int, int]]) -> None:
        if self._fd is None:
            return
        data = _encode(entries)
        os.write(self._fd, data)
        self.size += len(data)
        self.dirty = True

    def fileno(self) -> int | None:
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
