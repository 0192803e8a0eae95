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
import fnmatch
import logging
import os
import struct

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
_IN_Q_OVERFLOW = 0x00004000
_IN_IGNORED = 0x00008000
_IN_ONLYDIR = 0x01000000
_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000
# Events that change which files exist (a rescan may find something new).
_STRUCTURAL = (
    _IN_MOVED_FROM | _IN_MOVED_TO | _IN_CREATE | _IN_DELETE | _IN_DELETE_SELF | _IN_MOVE_SELF
)
# Directories above the files' own (``/var/log/pods``, a pod folder) matter only for
# what appears and disappears in them, not for writes to their other entries.
_PATH_MASK = _STRUCTURAL | _IN_ONLYDIR
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then the name)
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
    :meth:`take_changed` tells which directories changed since it was last asked, so an
    idle tailer need not look at every file on each wake-up.
    """

    def __init__(self) -> None:
        self._fd = -1
        self._libc = _libc()
        self._watches: dict[str, tuple[int, bool]] = {}  # path → (wd, watching contents)
        self._paths: dict[int, str] = {}
        self._names: dict[int, set[str]] = {}  # wd → the entry globs that matter (else all)
        self._changed: set[str] = set()
        self._everything = False  # queue overflow or a poke: every directory may have changed
        self._missed = False  # a watch could not be added: inotify does not cover everything
        self._structural = False  # an entry was created, moved or deleted since the last ask
        self._event = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def using_inotify(self) -> bool:
        return self._fd >= 0

    @property
    def complete(self) -> bool:
        """inotify is on and every directory asked for is watched: an unchanged directory
        really did not change (else the caller must poll)."""
        return self._fd >= 0 and not self._missed

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
        self._paths.clear()
        self._names.clear()

    def watch_dir(self, path: str, *, contents: bool = True, names: str | None = None) -> None:
        """Watch a directory for created, moved and deleted entries, and with ``contents``
        (a directory of tailed files) also for writes to them. With ``names`` (a glob of
        entry names), only entries matching it count as created, moved or deleted."""
        if self._fd < 0 or self._libc is None:
            return
        known = self._watches.get(path)
        if known is not None:
            self._widen(known[0], names)
            if known[1] >= contents:
                return
        mask = _DIR_MASK if contents else _PATH_MASK
        wd = self._libc.inotify_add_watch(self._fd, os.fsencode(path), mask)
        if wd < 0:
            self._not_watched(path, ctypes.get_errno())
            return
        if known is None:
            if names is not None:
                self._names[wd] = {names}
            else:
                self._names.pop(wd, None)
        self._watches[path] = (wd, contents)
        self._paths[wd] = path

    def _widen(self, wd: int, names: str | None) -> None:
        """A second glob leads through the same directory: its names count too."""
        wanted = self._names.get(wd)
        if wanted is None:
            return  # every name counts already
        if names is None:
            del self._names[wd]
        else:
            wanted.add(names)

    def _not_watched(self, path: str, err: int) -> None:
        if err == errno.ENOSPC:
            _log.warning(
                "inotify watch limit reached; relying on polling for the rest",
                extra={"path": path},
            )
        elif os.path.isdir(path):
            _log.info(
                "cannot watch a directory; polling for changes",
                extra={"path": path, "errno": err},
            )
        else:
            return  # it went away before the watch: nothing there to miss
        self._missed = True

    def forget_missing(self) -> None:
        """Drop watches of directories that no longer exist (the kernel removed them)."""
        for path in [p for p in self._watches if not os.path.isdir(p)]:
            wd = self._watches.pop(path)[0]
            self._paths.pop(wd, None)
            self._names.pop(wd, None)

    def take_changed(self) -> set[str] | None:
        """Directories with changes since the last call; ``None`` when any may have."""
        if self._everything:
            self._everything = False
            self._changed.clear()
            return None
        changed, self._changed = self._changed, set()
        return changed

    @property
    def structural_pending(self) -> bool:
        """Entries were created, moved or deleted and no rescan has looked yet."""
        return self._structural or self._everything

    def take_structural(self) -> bool:
        """Whether entries were created, moved or deleted (or events were lost) since the
        last call: only then can a rescan find a new file before its periodic time."""
        structural = self._structural or self._everything
        self._structural = False
        return structural

    def _drain(self) -> None:
        try:
            while data := os.read(self._fd, 65536):
                self._note(data)
        except BlockingIOError:
            pass
        except OSError:
            self._everything = True
            self._event.set()
            return
        self._event.set()

    def _note(self, data: bytes) -> None:
        pos, size = 0, _EVENT.size
        while pos + size <= len(data):
            wd, mask, _cookie, name_len = _EVENT.unpack_from(data, pos)
            name = data[pos + size : pos + size + name_len].rstrip(b"\0")
            pos += size + name_len
            if mask & _STRUCTURAL and self._matters(wd, name):
                self._structural = True
            if mask & _IN_Q_OVERFLOW:
                self._everything = True
            elif not mask & _IN_IGNORED:
                path = self._paths.get(wd)
                if path is None:
                    self._everything = True
                else:
                    self._changed.add(path)

    def _matters(self, wd: int, name: bytes) -> bool:
        wanted = self._names.get(wd)
        if wanted is None or not name:  # no filter, or the directory itself went away
            return True
        entry = os.fsdecode(name)
        return any(fnmatch.fnmatchcase(entry, pattern) for pattern in wanted)

    def poke(self) -> None:
        """Wake the waiter now (e.g. after back-pressure was released)."""
        self._everything = True
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
