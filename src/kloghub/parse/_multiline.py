"""Joining the lines of one stack trace into one record, per stream, after reassembly.

Every record is held until the next one of its stream says whether it continues it (or
until the flush timeout). Built-in rules:

* ``java``: a line that starts with whitespace + ``at ``, ``... N more`` (or ``... N
  common frames omitted``), ``Caused by:`` or ``Suppressed:`` continues the previous one.
* ``python``: ``Traceback (most recent call last):`` starts a trace; indented lines
  continue it, the first unindented line ending in ``Name`` or ``Name: text`` closes it;
  chained exceptions ("During handling of the above exception...", "The above exception
  was the direct cause...") and the blank lines around them stay in the same record.
* ``go``: ``panic:``, ``fatal error:`` or ``goroutine N [...]:`` starts a trace; blank,
  indented, ``goroutine``, function-call (``pkg.(*T).Method(...)``), ``created by``,
  ``[signal`` and ``exit status`` lines continue it.

A custom ``start_pattern`` replaces the built-in rules: a record whose message matches it
(``re.search``) starts a new record, any other continues the previous one.

Blank lines at the end of a Python or Go trace are held tentatively: if the trace does not
continue, they are emitted as records of their own, not glued to the trace. A joined record
never exceeds ``max_record_bytes``: the line that would pass the cap closes the current
record (flagged ``TRUNCATED``) and starts the next one, so no line is lost.
"""

from __future__ import annotations

import re

from kloghub import config
from kloghub.parse import _record

__all__ = ["Multiline"]

_PLAIN, _PY_TRACE, _PY_DONE, _PY_CHAIN, _GO, _CUSTOM = range(6)

_JAVA_CONT = re.compile(
    r"\s+at\s|\s*\.\.\.\s\d+\s(?:more|common frames omitted)|\s*(?:Caused by|Suppressed):"
)
_PY_START = "Traceback (most recent call last):"
_PY_ERROR = re.compile(r"[A-Za-z_][\w.]*(?::.*)?\Z", re.DOTALL)
_PY_CHAIN_LINES = frozenset(
    {
        "During handling of the above exception, another exception occurred:",
        "The above exception was the direct cause of the following exception:",
    }
)
_GO_FIRST = frozenset("pfg")
"""First characters of the lines ``_GO_START`` can match."""
_START_FIRST = _GO_FIRST | {"T"}
"""First characters of the lines that can start a trace."""
_GO_START = re.compile(r"panic: |fatal error: |goroutine \d+ \[")
_GO_CONT = re.compile(
    r"\s|goroutine \d+ \[|created by |\[signal |exit status \d|panic: |\.\.\.additional frames"
    # a function line: pkg.Func(...), pkg.(*T).Method(...), pkg.Map[...](...); written so
    # that no two parts can match the same characters (linear time on any line)
    r"|[\w./-]+(?:\.\(\*?[\w./-]+\)[\w./-]*)?(?:\[\.\.\.\][\w./-]*)?\(.*\)\Z",
    re.DOTALL,
)


def _size(message: str) -> int:
    """UTF-8 size of ``message`` (``isascii`` is O(1) in CPython)."""
    return len(message) if message.isascii() else len(message.encode("utf-8", "surrogatepass"))


class _Pending:
    """The record being built for one stream."""

    __slots__ = ("last_ns", "records", "size", "start", "state", "tentative")

    def __init__(self, record: _record.Record, start: int, state: int, now_ns: int) -> None:
        self.records = [record]
        self.start = start
        """Offset of the first byte of the first line: what a checkpoint must not pass."""
        self.size = _size(record.message)
        self.state = state
        self.tentative = 0
        """Trailing records held without being part of the trace yet (blank lines)."""
        self.last_ns = now_ns


class Multiline:
    """The multiline stage of one file: per-stream pending records."""

    __slots__ = ("_custom", "_go", "_java", "_max_bytes", "_pending", "_python", "_timeout_ns")

    def __init__(self, cfg: config.MultilineConfig, max_record_bytes: int) -> None:
        self._custom = re.compile(cfg.start_pattern) if cfg.start_pattern is not None else None
        rules = set(cfg.rules)
        self._java = "java" in rules
        self._python = "python" in rules
        self._go = "go" in rules
        self._max_bytes = max_record_bytes
        self._timeout_ns = round(cfg.flush_timeout * 1e9)
        self._pending: dict[str, _Pending] = {}

    def oldest_start(self) -> int | None:
        """Start offset of the oldest held line, or ``None`` when nothing is held."""
        if not self._pending:
            return None
        return min(p.start for p in self._pending.values())

    def _start_state(self, message: str) -> int:
        if self._custom is not None:
            return _CUSTOM
        first = message[:1]  # cheap tests first: most lines start no trace at all
        if first == "T" and self._python and message.startswith(_PY_START):
            return _PY_TRACE
        if first in _GO_FIRST and self._go and _GO_START.match(message):
            return _GO
        return _PLAIN

    def _continues(  # noqa: PLR0911, PLR0912 - one state machine reads best in one place
        self, pending: _Pending, message: str
    ) -> bool | None:
        """``True``: part of the record; ``None``: held tentatively; ``False``: a new record.

        Updates the pending state as a side effect.
        """
        state = pending.state
        if state == _CUSTOM:
            return self._custom is not None and self._custom.search(message) is None
        if state == _PY_TRACE:
            if message[:1] in (" ", "\t"):
                return True
            if _PY_ERROR.match(message):
                pending.state = _PY_DONE
                return True
        elif state == _PY_DONE:
            if not message:
                return None
            if message in _PY_CHAIN_LINES:
                pending.state = _PY_CHAIN
                return True
            if message[:1] in (" ", "\t"):
                return True
        elif state == _PY_CHAIN:
            if not message:
                return True
            if message.startswith(_PY_START):
                pending.state = _PY_TRACE
                return True
        elif state == _GO:
            if not message:
                return None
            if _GO_CONT.match(message):
                return True
        first = message[:1]
        if (
            first
            and (first in "CS." or first.isspace())
            and self._java
            and _JAVA_CONT.match(message)
        ):
            pending.state = _PLAIN
            return True
        return False

    def push(
        self, record: _record.Record, start: int, now_ns: int, out: list[_record.Record]
    ) -> None:
        """Take one reassembled record; append to ``out`` the records it completes."""
        stream = record.stream
        pending = self._pending.get(stream)
        message = record.message
        if pending is None:
            self._pending[stream] = _Pending(record, start, self._start_state(message), now_ns)
            return
        first = message[:1]
        # Fast answer for the common case: a plain line after a plain line, with no
        # character that could continue a Java trace (the checks _continues would make).
        if pending.state == _PLAIN and not (first and (first in "CS." or first.isspace())):
            verdict: bool | None = False
        else:
            verdict = self._continues(pending, message)
        if verdict is False:
            records = pending.records
            if len(records) == 1:
                out.append(records[0])
            else:
                self._emit(pending, out, 0)
            # reuse the holder: one object less per line
            pending.records = [record]
            pending.start = start
            pending.size = len(message) if message.isascii() else _size(message)
            pending.state = (
                _PLAIN
                if self._custom is None and first not in _START_FIRST
                else self._start_state(message)
            )
            pending.tentative = 0
            pending.last_ns = now_ns
            return
        size = _size(message)
        if pending.size + 1 + size > self._max_bytes:
            self._emit(pending, out, _record.TRUNCATED)
            state = pending.state if verdict else self._start_state(message)
            self._pending[stream] = _Pending(record, start, state, now_ns)
            return
        pending.records.append(record)
        pending.size += 1 + size
        pending.last_ns = now_ns
        if verdict is None:
            pending.tentative += 1
        else:
            pending.tentative = 0

    def flush(self, now_ns: int, force: bool, out: list[_record.Record]) -> None:
        """Emit the records whose flush timeout passed (all of them when ``force``)."""
        if not self._pending:
            return
        for stream, pending in list(self._pending.items()):
            if force or now_ns - pending.last_ns >= self._timeout_ns:
                del self._pending[stream]
                self._emit(pending, out, 0)

    @staticmethod
    def _emit(pending: _Pending, out: list[_record.Record], extra_flags: int) -> None:
        records = pending.records
        count = len(records) - pending.tentative
        if count == 1:
            first = records[0]
            if extra_flags:
                first.flags |= extra_flags
            out.append(first)
        else:
            joined = records[:count]
            first = joined[0]
            flags = extra_flags | _record.MULTILINE
            raw_needed = False
            for rec in joined:
                flags |= rec.flags
                if rec.raw is not None:
                    raw_needed = True
            raw = None
            if raw_needed:
                raw = b"\n".join(
                    rec.raw if rec.raw is not None else rec.message.encode("utf-8", "replace")
                    for rec in joined
                )
            out.append(
                _record.Record(
                    first.time_ns,
                    first.stream,
                    "\n".join([rec.message for rec in joined]),
                    raw,
                    flags,
                    joined[-1].end_offset,
                )
            )
        if pending.tentative:
            out.extend(records[count:])
