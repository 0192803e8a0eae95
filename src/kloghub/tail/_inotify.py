"""Change detection behind a tiny interface: inotify where the kernel has it, else polling.

The watcher only *wakes up* the tailer early; correctness never depends on it. Every
file is still checked by the tailer's own loop (stat and read), and globs are rescanned
periodically, so a missed or overflowed inotify queue costs latency, never data.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import errno
import logging
import os

__all__ = ["Watcher"]

_log = logging.getLogger("kloghub.tail")

_IN_MODIFY = 0x00000002
_IN_ATTRIB = 0x00000004
_IN_CLOSE_WRITE = 0x00000008
_IN_MOVED_FROM = 0x00000040
_IN_MOVED_TO = 0x00000080
_IN_CREATE = 0x00000100
_IN_DELETE = 0x00000200
_IN_DELETE_SELF = 0x00000400
_IN_MOVE_SELF = 0x00000800
_IN_ONLYDIR = 0x01000000
_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000
_DIR_MASK = (
    _IN_MODIFY
    | _IN_ATTRIB
    | _IN_CLOSE_WRITE
    | _IN_MOVED_FROM
    | _IN_MOVED_TO
    | _IN_CREATE
    | _IN_DELETE
    | _IN_DELETE_SELF
    | _IN_MOVE_SELF
    | _IN_ONLYDIR
)


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        _ = libc.inotify_init1, libc.inotify_add_watch, libc.inotify_rm_watch
    except (OSError, AttributeError):
        return None
    return libc


class Watcher:
    """Wakes a waiter when something changes in the watched directories.

    ``wait(timeout)`` returns after a change or after ``timeout`` (the polling fallback).
    """

    def __init__(self) -> None:
        self._fd = -1
        self._libc = _libc()
        self._watches: dict[str, int] = {}
        self._event = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def using_inotify(self) -> bool:
        return self._fd >= 0

    def open(self) -> None:
        if self._libc is None:
            _log.info("inotify not available; polling for changes")
            return
        fd = self._libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            _log.info(
                "inotify_init1 failed; polling for changes", extra={"errno": ctypes.get_errno()}
            )
            return
        self._fd = fd
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(fd, self._drain)

    def close(self) -> None:
        if self._fd >= 0:
            if self._loop is not None:
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
        self._watches.clear()

    def watch_dir(self, path: str) -> None:
        """Watch a directory for created, moved, written and deleted entries."""
        if self._fd < 0 or self._libc is None or path in self._watches:
            return
        wd = self._libc.inotify_add_watch(self._fd, os.fsencode(path), _DIR_MASK)
        if wd < 0:
            err = ctypes.get_errno()
            if err == errno.ENOSPC:
                _log.warning(
                    "inotify watch limit reached; relying on polling for the rest",
                    extra={"path": path},
                )
            return
        self._watches[path] = wd

    def forget_missing(self) -> None:
        """Drop watches of directories that no longer exist (the kernel removed them)."""
        for path in [p for p in self._watches if not os.path.isdir(p)]:
            del self._watches[path]

    def _drain(self) -> None:
        try:
            while os.read(self._fd, 65536):
                pass
        except BlockingIOError:
            pass
        except OSError:
            return
        self._event.set()

    def poke(self) -> None:
        """Wake the waiter now (e.g. after back-pressure was released)."""
        self._event.set()

    async def wait(self, timeout: float) -> bool:
        """Wait for a change; True if woken by one, False on timeout."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return False
        finally:
            self._event.clear()
        return True
