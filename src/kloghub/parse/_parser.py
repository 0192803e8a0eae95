"""The per-file parser: lines in, records out, with partial joining and multiline.

The tailer reads a file in large chunks, cuts them into complete lines and calls
:meth:`Parser.feed` once per chunk. The parser turns each line into a record in the file's
format, joins runtime partials (CRI ``P`` parts, docker logs without a newline) per stream,
then — when enabled — joins stack traces per stream. Whatever it holds back is visible
through :meth:`Parser.safe_offset`, so a checkpoint never skips a held line.

Speed: the common CRI case (an ``F`` line with an RFC3339Nano ``Z`` timestamp, valid
UTF-8, no partial pending) is handled inline in one loop, and so is a complete docker line;
everything else falls back to the complete per-line reading (``_cri_line``, ``_docker_line``).
``bench/parse_bench.py`` measures it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

import orjson

from kloghub import config, runtime
from kloghub.parse import _cri, _docker, _multiline, _record, _text, _timestamps

__all__ = ["FORMATS", "Format", "Parser"]

Format = Literal["auto", "cri", "docker", "text", "json"]
FORMATS: tuple[str, ...] = get_args(Format)

_Record = _record.Record
_TRUNCATED = _record.TRUNCATED
_PARTIAL_JOINED = _record.PARTIAL_JOINED
_PARSE_ERROR = _record.PARSE_ERROR
_INVALID_UTF8 = _record.INVALID_UTF8

_LineParser = Callable[[bytes, int, int, int, int, list[_record.Record]], None]
"""``(line, start, end, now_ns, flags, out)``: parse one line, append what it completes."""


def _trim_incomplete(data: bytes) -> bytes:
    """``data`` without a UTF-8 sequence cut short at its end (as a byte cap leaves it)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0x80:
            continue
        if byte < 0xC0:
            return data
        need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
        return data[:-back] if back < need else data
    return data


def _decode(data: bytes, flags: int) -> tuple[str, bytes | None, int]:
    """``(message, raw, flags)``: raw bytes are kept only when they were not UTF-8."""
    try:
        return data.decode("utf-8"), None, flags
    except UnicodeDecodeError:
        pass
    if flags & _TRUNCATED:
        trimmed = _trim_incomplete(data)
        if len(trimmed) != len(data):
            try:
                return trimmed.decode("utf-8"), None, flags
            except UnicodeDecodeError:
                pass
    return data.decode("utf-8", "replace"), data, flags | _INVALID_UTF8


class _Join:
    """Runtime partials of one stream waiting for their last piece."""

    __slots__ = (
        "capped",
        "end",
        "flags",
        "last_ns",
        "parts",
        "raws",
        "size",
        "start",
        "texts",
        "time_ns",
    )

    def __init__(self, time_ns: int, start: int, now_ns: int, text: bool = False) -> None:
        self.time_ns = time_ns
        """Time of the first part: the time of the joined record."""
        self.start = start
        """Offset of the first part's first byte."""
        self.parts: list[bytes] = []
        """CRI: the payloads, decoded once joined."""
        self.texts: list[str] = []
        """Docker: the decoded ``log`` values."""
        self.raws: list[bytes] | None = [] if text else None
        """Docker: the original lines, the ``raw`` of the record if one was not UTF-8."""
        self.size = 0
        self.capped = False
        """The cap was reached: further parts only extend the offset until the last one."""
        self.flags = _PARTIAL_JOINED
        self.end = start
        self.last_ns = now_ns


class Parser:
    """Parses the lines of one tailed file; stateful, not thread-safe.

    ``fmt`` is the file's format, or ``auto``: the first non-empty line decides (``{`` →
    docker, a CRI line → cri) and the choice sticks. ``multiline`` defaults to
    ``cfg.multiline``; it never applies to ``json`` files.
    """

    __slots__ = (
        "_base",
        "_base_text",
        "_errors",
        "_fmt",
        "_joins",
        "_line_parsers",
        "_max_record",
        "_ml",
        "_prefix",
        "_prev_end",
        "_text_prefix",
        "_timeout_ns",
    )

    def __init__(
        self,
        fmt: Format,
        cfg: config.ParsersConfig,
        multiline: config.MultilineConfig | None = None,
    ) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown log format {fmt!r}; expected one of {', '.join(FORMATS)}")
        self._fmt: str = fmt
        self._max_record = int(cfg.max_record_bytes)
        ml_cfg = multiline if multiline is not None else cfg.multiline
        self._timeout_ns = round(ml_cfg.flush_timeout * 1e9)
        self._ml = (
            _multiline.Multiline(ml_cfg, self._max_record)
            if ml_cfg.enabled and fmt != "json"
            else None
        )
        self._joins: dict[str, _Join] = {}
        self._prev_end: int | None = None
        self._prefix = b"-"
        """Last ``YYYY-MM-DDTHH:MM:SS`` seen by the fast path, and its epoch nanoseconds."""
        self._base = 0
        self._text_prefix = "-"
        """The same for docker's ``time`` strings."""
        self._base_text = 0
        self._errors = runtime.metrics.PARSE_ERRORS.labels(format=fmt)
        self._line_parsers: dict[str, _LineParser] = {
            "cri": self._cri_line,
            "docker": self._docker_line,
            "text": self._text_line,
            "json": self._json_line,
        }

    @property
    def format(self) -> str:
        """The file's format: ``cri``, ``docker``, ``text``, ``json``, or ``auto`` until known."""
        return self._fmt

    # ------------------------------------------------------------------ public API

    def feed(
        self,
        lines: list[bytes],
        end_offsets: list[int],
        read_time_ns: int,
        truncated: set[int] | None = None,
        start_offset: int | None = None,
    ) -> list[_record.Record]:
        """Parse complete lines (without their ``\\n``); return the records they complete.

        ``end_offsets[i]`` is the offset just past line ``i``'s newline; ``truncated``
        holds the indexes of lines the tailer cut at ``max_line_bytes``. ``start_offset``
        (optional) is the offset of ``lines[0]``'s first byte; without it, it is taken
        from the previous call or from the line's length. Records come in file order per
        stream; a record held for joining comes out of a later ``feed`` or ``flush``.
        """
        out: list[_record.Record] = []
        if not lines:
            return out
        first_end = end_offsets[0]
        if start_offset is None:
            start_offset = first_end - len(lines[0]) - 1
            prev = self._prev_end
            if prev is not None and prev <= start_offset:
                start_offset = prev
        self._prev_end = end_offsets[-1]
        if self._fmt == "auto":
            skip = self._detect(lines, end_offsets, read_time_ns, truncated, out)
            if skip == len(lines):
                return out
            if skip:
                start_offset = end_offsets[skip - 1]
                lines = lines[skip:]
                end_offsets = end_offsets[skip:]
                if truncated:
                    truncated = {i - skip for i in truncated if i >= skip}
        if truncated:
            parse_line = self._line_parsers[self._fmt]
            self._each(parse_line, lines, end_offsets, start_offset, read_time_ns, truncated, out)
        elif self._fmt == "cri":
            self._fast_cri(lines, end_offsets, read_time_ns, out)
        elif self._fmt == "docker":
            self._fast_docker(lines, end_offsets, read_time_ns, out)
        else:
            parse_line = self._line_parsers[self._fmt]
            self._each(parse_line, lines, end_offsets, start_offset, read_time_ns, truncated, out)
        return out

    def flush(self, now_ns: int, force: bool = False) -> list[_record.Record]:
        """Emit held records whose flush timeout has passed; all of them when ``force``.

        Call it periodically (held records otherwise wait for the next line of their
        stream) and with ``force=True`` when the file is closed or rotated away.
        """
        out: list[_record.Record] = []
        joins = self._joins
        if joins:
            timeout = self._timeout_ns
            for stream, join in list(joins.items()):
                if force or now_ns - join.last_ns >= timeout:
                    del joins[stream]
                    self._sink(self._finish(join, stream), join.start, join.last_ns, out)
        if self._ml is not None:
            self._ml.flush(now_ns, force, out)
        return out

    def safe_offset(self, read_offset: int) -> int:
        """The offset a checkpoint may reach: the start of the oldest held line, else
        ``read_offset``."""
        safe = read_offset
        for join in self._joins.values():
            safe = min(safe, join.start)
        if self._ml is not None:
            held = self._ml.oldest_start()
            if held is not None:
                safe = min(safe, held)
        return safe

    # ------------------------------------------------------------------ plumbing

    def _each(  # noqa: PLR0917 - hot path, positional on purpose
        self,
        parse_line: _LineParser,
        lines: list[bytes],
        end_offsets: list[int],
        start: int,
        now_ns: int,
        truncated: set[int] | None,
        out: list[_record.Record],
    ) -> None:
        if truncated:
            for index, (line, end) in enumerate(zip(lines, end_offsets, strict=False)):
                parse_line(line, start, end, now_ns, _TRUNCATED if index in truncated else 0, out)
                start = end
        else:
            for line, end in zip(lines, end_offsets, strict=False):
                parse_line(line, start, end, now_ns, 0, out)
                start = end

    def _sink(
        self, record: _record.Record, start: int, now_ns: int, out: list[_record.Record]
    ) -> None:
        """Hand a reassembled record to the multiline stage, or straight out."""
        if self._ml is None:
            out.append(record)
        else:
            self._ml.push(record, start, now_ns, out)

    def _error(
        self, line: bytes, end: int, now_ns: int, flags: int, out: list[_record.Record]
    ) -> None:
        """A line that parses as nothing: passed on as text, flagged and counted."""
        message, raw, flags = _decode(line, flags | _PARSE_ERROR)
        if self._fmt == "json":
            raw = line
        out.append(_Record(now_ns, "", message, raw, flags, end))
        self._errors.inc()

    def _set_format(self, fmt: str) -> None:
        self._fmt = fmt
        self._errors = runtime.metrics.PARSE_ERRORS.labels(format=fmt)

    def _detect(
        self,
        lines: list[bytes],
        end_offsets: list[int],
        now_ns: int,
        truncated: set[int] | None,
        out: list[_record.Record],
    ) -> int:
        """Find the format; returns the index of the first line to parse in it."""
        for index, line in enumerate(lines):
            head = line.lstrip()
            if head.startswith(b"{"):
                self._set_format("docker")
                return index
            if head and _cri.split_cri(line) is not None:
                self._set_format("cri")
                return index
            flags = _TRUNCATED if truncated and index in truncated else 0
            self._error(line, end_offsets[index], now_ns, flags, out)
        return len(lines)

    # ------------------------------------------------------------------ CRI

    def _fast_cri(  # noqa: PLR0912, PLR0915 - the hot loop is inlined on purpose
        self, lines: list[bytes], end_offsets: list[int], now_ns: int, out: list[_record.Record]
    ) -> None:
        """The hot loop: plain ``F`` lines inline, anything else through ``_cri_line``.

        Only used without truncated lines, so a line's start is ``end - len(line) - 1``.
        Measured choices (bench/parse_bench.py): fixed positions and ``startswith`` instead
        of ``split``; the epoch of the ``YYYY-MM-DDTHH:MM:SS.`` prefix kept while it
        repeats; records built with ``object.__new__`` and slot stores, which costs less
        than a call to ``Record.__init__``.
        """
        append = out.append
        joins = self._joins
        ml = self._ml
        scale = _timestamps.FRACTION_SCALE
        prefix_ns = _timestamps.prefix_ns
        slow = self._cri_line
        new = object.__new__
        record = _Record
        prefix = self._prefix
        base = self._base
        for line, end in zip(lines, end_offsets, strict=False):
            # n: index of the "Z" that ends the timestamp; 29 for 9 fraction digits
            if line.startswith(b"Z stdout F ", 29):
                name = "stdout"
                n = 29
            elif line.startswith(b"Z stderr F ", 29):
                name = "stderr"
                n = 29
            else:
                n = line.find(32, 21, 31) - 1
                if n >= 20 and line.startswith(b"Z stdout F ", n):
                    name = "stdout"
                elif n >= 20 and line.startswith(b"Z stderr F ", n):
                    name = "stderr"
                else:
                    slow(line, end - len(line) - 1, end, now_ns, 0, out)
                    continue
            if joins or not line.startswith(prefix):
                value = None if joins or line[19] != 46 else prefix_ns(line[:19])
                if value is None:
                    slow(line, end - len(line) - 1, end, now_ns, 0, out)
                    continue
                prefix = line[:20]
                base = value
            fraction = line[20:n]
            if not fraction.isdigit():  # int() alone would take "+1", " 1" or "1_0"
                slow(line, end - len(line) - 1, end, now_ns, 0, out)
                continue
            try:
                message = line[n + 11 :].decode()
            except UnicodeDecodeError:
                slow(line, end - len(line) - 1, end, now_ns, 0, out)
                continue
            rec = new(record)
            rec.time_ns = base + int(fraction) * scale[n - 20]
            rec.stream = name
            rec.message = message
            rec.raw = None
            rec.flags = 0
            rec.end_offset = end
            if ml is None:
                append(rec)
            else:
                ml.push(rec, end - len(line) - 1, now_ns, out)
        self._prefix = prefix
        self._base = base

    def _cri_line(  # noqa: PLR0917 - hot path, positional on purpose
        self, line: bytes, start: int, end: int, now_ns: int, flags: int, out: list[_record.Record]
    ) -> None:
        parsed = _cri.split_cri(line)
        if parsed is None:
            self._error(line, end, now_ns, flags, out)
            return
        time_ns, stream, partial, payload = parsed
        join = self._joins.get(stream)
        if join is None:
            if partial:
                join = self._joins[stream] = _Join(time_ns, start, now_ns)
                self._add_bytes(join, payload, flags, end, now_ns)
                return
            message, raw, flags = _decode(payload, flags)
            self._sink(_Record(time_ns, stream, message, raw, flags, end), start, now_ns, out)
            return
        self._add_bytes(join, payload, flags, end, now_ns)
        if not partial:
            del self._joins[stream]
            self._sink(self._finish(join, stream), join.start, now_ns, out)

    def _account(self, join: _Join, size: int, flags: int, end: int, now_ns: int) -> int:
        """Count one partial of ``size`` bytes into its group, honouring ``max_record_bytes``.

        Returns how many of its bytes to keep: ``-1`` for all of them.
        """
        join.end = end
        join.last_ns = now_ns
        join.flags |= flags
        if join.capped:
            return 0
        room = self._max_record - join.size
        if size > room:
            join.capped = True
            join.flags |= _TRUNCATED
            join.size = self._max_record
            return room
        join.size += size
        return -1

    def _add_bytes(self, join: _Join, part: bytes, flags: int, end: int, now_ns: int) -> None:
        keep = self._account(join, len(part), flags, end, now_ns)
        if keep < 0:
            join.parts.append(part)
        elif keep:
            join.parts.append(part[:keep])

    def _finish(self, join: _Join, stream: str) -> _record.Record:
        """The record of a partial group (complete, or flushed by timeout)."""
        if join.raws is not None:  # docker: text parts
            raw = b"\n".join(join.raws) if join.flags & _INVALID_UTF8 else None
            return _Record(join.time_ns, stream, "".join(join.texts), raw, join.flags, join.end)
        message, raw, flags = _decode(b"".join(join.parts), join.flags)
        return _Record(join.time_ns, stream, message, raw, flags, join.end)

    # ------------------------------------------------------------------ docker

    def _fast_docker(
        self, lines: list[bytes], end_offsets: list[int], now_ns: int, out: list[_record.Record]
    ) -> None:
        """Complete lines with a ``Z`` time inline, anything else through ``_docker_line``."""
        loads = orjson.loads
        joins = self._joins
        ml = self._ml
        append = out.append
        scale = _timestamps.FRACTION_SCALE
        prefix_ns = _timestamps.prefix_ns
        slow = self._docker_line
        streams = _docker.STREAMS
        record = _Record
        prefix = self._text_prefix
        base = self._base_text
        for line, end in zip(lines, end_offsets, strict=False):
            rec = None
            try:
                obj = loads(line)
                log = obj["log"]
                stream = streams[obj["stream"]]
                when = obj["time"]
                n = len(when) - 1
                if log.endswith("\n") and not joins and 19 < n < 30 and when[n] == "Z":
                    if not when.startswith(prefix) and when[19] == "." and when.isascii():
                        value = prefix_ns(when[:19].encode())
                        if value is not None:
                            prefix = when[:20]
                            base = value
                    fraction = when[20:n]
                    if when.startswith(prefix) and fraction.isdigit() and fraction.isascii():
                        time_ns = base + int(fraction) * scale[n - 20]
                        rec = record(time_ns, stream, log[:-1], None, 0, end)
            except (ValueError, KeyError, TypeError, AttributeError, IndexError):
                pass
            if rec is None:
                slow(line, end - len(line) - 1, end, now_ns, 0, out)
            elif ml is None:
                append(rec)
            else:
                ml.push(rec, end - len(line) - 1, now_ns, out)
        self._text_prefix = prefix
        self._base_text = base

    def _docker_line(  # noqa: PLR0917 - hot path, positional on purpose
        self, line: bytes, start: int, end: int, now_ns: int, flags: int, out: list[_record.Record]
    ) -> None:
        parsed = _docker.parse_docker(line)
        if parsed is None:
            self._error(line, end, now_ns, flags, out)
            return
        time_ns, stream, log, invalid = parsed
        if time_ns is None:
            time_ns = now_ns
        raw = None
        if invalid:
            flags |= _INVALID_UTF8
            raw = line
        partial = not log.endswith("\n")
        if not partial:
            log = log[:-1]
        join = self._joins.get(stream)
        if join is None:
            if not partial:
                self._sink(_Record(time_ns, stream, log, raw, flags, end), start, now_ns, out)
                return
            join = self._joins[stream] = _Join(time_ns, start, now_ns, text=True)
        if join.raws is not None:
            join.raws.append(line)
        size = len(log) if log.isascii() else len(log.encode())
        keep = self._account(join, size, flags, end, now_ns)
        if keep < 0:
            join.texts.append(log)
        elif keep:
            join.texts.append(log.encode()[:keep].decode("utf-8", "ignore"))
        if not partial:
            del self._joins[stream]
            self._sink(self._finish(join, stream), join.start, now_ns, out)

    # ------------------------------------------------------------------ text and JSON

    def _text_line(  # noqa: PLR0917 - hot path, positional on purpose
        self, line: bytes, start: int, end: int, now_ns: int, flags: int, out: list[_record.Record]
    ) -> None:
        message, raw, flags = _decode(line, flags)
        time_ns = _text.leading_time(line) if line[:1].isdigit() else None
        self._sink(
            _Record(now_ns if time_ns is None else time_ns, "", message, raw, flags, end),
            start,
            now_ns,
            out,
        )

    def _json_line(  # noqa: PLR0917 - hot path, positional on purpose
        self, line: bytes, start: int, end: int, now_ns: int, flags: int, out: list[_record.Record]
    ) -> None:
        loaded = _text.load_json(line)
        if loaded is None:
            self._error(line, end, now_ns, flags, out)
            return
        obj, invalid = loaded
        if invalid:
            message = line.decode("utf-8", "replace")
            flags |= _INVALID_UTF8
        else:
            message = line.decode("utf-8")
        time_ns = _text.json_time(obj)
        self._sink(
            _Record(now_ns if time_ns is None else time_ns, "", message, line, flags, end),
            start,
            now_ns,
            out,
        )
