"""Output formats: ``table`` for a terminal, ``json``, ``ndjson`` and ``csv`` for tools.

``table`` shows time, namespace, pod, container, level and message, one document a line;
on a terminal it is cut to the terminal's width and coloured (unless ``NO_COLOR`` is set).
Control characters in log text are shown escaped (``\\x1b``), so a log line cannot move
the cursor or recolour the responder's terminal. Audit events have no message: the table
shows who did what instead (``user verb URI (code)``).

``json`` is one array, ``ndjson`` one document a line — the stored ECS documents unchanged.
``csv`` has a header and the main fields; cells that a spreadsheet would run as a formula
(starting with ``= + - @``) are prefixed with ``'``.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TextIO

import orjson

from kloghub.search import _times
from kloghub.search._backends import Hit

__all__ = ["FORMATS", "Formatter", "make_formatter", "summary"]

FORMATS = ("table", "json", "ndjson", "csv")

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_CSV_FIELDS = (
    ("@timestamp", None),
    ("kubernetes.namespace", ("kubernetes", "namespace")),
    ("kubernetes.pod.name", ("kubernetes", "pod", "name")),
    ("kubernetes.container.name", ("kubernetes", "container", "name")),
    ("kubernetes.node.name", ("kubernetes", "node", "name")),
    ("log.level", ("log", "level")),
    ("stream", ("stream",)),
    ("user.name", ("user", "name")),
    ("data_stream.dataset", ("data_stream", "dataset")),
    ("message", None),
    ("_id", None),
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

_RESET = "\x1b[0m"
_DIM = "\x1b[2m"
_BOLD = "\x1b[1m"
_RED = "\x1b[31m"
_YELLOW = "\x1b[33m"
_CYAN = "\x1b[36m"
_LEVEL_COLOURS = {
    "error": _RED,
    "err": _RED,
    "fatal": _RED,
    "critical": _RED,
    "crit": _RED,
    "alert": _RED,
    "emerg": _RED,
    "panic": _RED,
    "warn": _YELLOW,
    "warning": _YELLOW,
    "debug": _DIM,
    "trace": _DIM,
}


class Formatter(Protocol):
    def start(self) -> None: ...

    def write(self, hits: Sequence[Hit]) -> None: ...

    def finish(self) -> None: ...


def _get(doc: Mapping[str, Any], *path: str) -> Any:
    value: Any = doc
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    if value is None:
        value = doc.get(".".join(path))
    return value


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value).decode()


def summary(doc: Mapping[str, Any]) -> str:
    """The message, or for an audit event ``user verb URI (code)``."""
    message = _get(doc, "message")
    if message is not None:
        return _text(message)
    audit = _get(doc, "kubernetes", "audit")
    if isinstance(audit, Mapping):
        user = _get(doc, "user", "name") or _get(audit, "user", "username") or "?"
        verb = audit.get("verb") or _get(doc, "event", "action") or "?"
        target = audit.get("requestURI") or ""
        code = _get(audit, "responseStatus", "code")
        return f"{_text(user)} {_text(verb)} {_text(target)}" + (
            f" ({_text(code)})" if code is not None else ""
        )
    return _text(_get(doc, "event", "original"))


def _visible(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\n", " ⏎ ").replace("\t", " ")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _cut(text: str, width: int) -> str:
    if width <= 0:
        return ""
    return text if len(text) <= width else text[: width - 1] + "…"


class TableFormatter:
    """Aligned columns; message cut to ``width`` (None: never cut)."""

    _HEADERS = ("TIME", "NAMESPACE", "POD", "CONTAINER", "LEVEL", "MESSAGE")
    _CAPS = (24, 24, 40, 24, 7)

    def __init__(self, out: TextIO, width: int | None, colour: bool) -> None:
        self.out = out
        self.width = width
        self.colour = colour
        self.widths: list[int] | None = None

    def start(self) -> None:
        pass

    def _cells(self, hit: Hit) -> list[str]:
        doc = hit.doc
        namespace = _get(doc, "kubernetes", "namespace") or _get(doc, "orchestrator", "namespace")
        container = _get(doc, "kubernetes", "container", "name") or _get(doc, "container", "name")
        return [
            _times.format_ns(hit.time_ns, 3),
            _visible(_text(namespace)),
            _visible(_text(_get(doc, "kubernetes", "pod", "name"))),
            _visible(_text(container)),
            _visible(_text(_get(doc, "log", "level"))),
            _visible(summary(doc)),
        ]

    def write(self, hits: Sequence[Hit]) -> None:
        rows = [self._cells(hit) for hit in hits]
        if self.widths is None:
            if not rows:
                return
            self.widths = [
                min(cap, max(len(header), *(len(row[i]) for row in rows)))
                for i, (header, cap) in enumerate(zip(self._HEADERS, self._CAPS, strict=False))
            ]
            self._line(list(self._HEADERS), header=True)
        for row in rows:
            self._line(row)
        self.out.flush()

    def _line(self, cells: list[str], header: bool = False) -> None:
        assert self.widths is not None
        fixed = [_cut(cell, w).ljust(w) for cell, w in zip(cells, self.widths, strict=False)]
        used = sum(self.widths) + 2 * len(self.widths)
        message = cells[-1] if self.width is None else _cut(cells[-1], self.width - used)
        if not self.colour:
            self.out.write("  ".join([*fixed, message]).rstrip() + "\n")
            return
        if header:
            self.out.write(_BOLD + "  ".join([*fixed, message]).rstrip() + _RESET + "\n")
            return
        level = _LEVEL_COLOURS.get(cells[4].strip().lower(), "")
        parts = [
            _DIM + fixed[0] + _RESET,
            _CYAN + fixed[1] + _RESET,
            fixed[2],
            fixed[3],
            (level + fixed[4] + _RESET) if level else fixed[4],
            (level + message + _RESET) if level == _RED else message,
        ]
        self.out.write("  ".join(parts) + "\n")

    def finish(self) -> None:
        self.out.flush()


class JsonFormatter:
    """One JSON array (closed by :meth:`finish`, also after an interrupted ``--follow``)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.count = 0

    def start(self) -> None:
        self.out.write("[")

    def write(self, hits: Sequence[Hit]) -> None:
        for hit in hits:
            text = orjson.dumps(hit.doc, option=orjson.OPT_INDENT_2).decode()
            self.out.write(("," if self.count else "") + "\n" + text)
            self.count += 1
        self.out.flush()

    def finish(self) -> None:
        self.out.write("\n]\n" if self.count else "]\n")
        self.out.flush()


class NdjsonFormatter:
    def __init__(self, out: TextIO) -> None:
        self.out = out

    def start(self) -> None:
        pass

    def write(self, hits: Sequence[Hit]) -> None:
        for hit in hits:
            self.out.write(orjson.dumps(hit.doc).decode() + "\n")
        self.out.flush()

    def finish(self) -> None:
        self.out.flush()


class CsvFormatter:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.writer = csv.writer(out)

    def start(self) -> None:
        self.writer.writerow([name for name, _ in _CSV_FIELDS])

    def write(self, hits: Sequence[Hit]) -> None:
        for hit in hits:
            row = [_times.format_ns(hit.time_ns)]
            for name, path in _CSV_FIELDS[1:]:
                if name == "message":
                    row.append(summary(hit.doc))
                elif name == "_id":
                    row.append(hit.id)
                else:
                    assert path is not None
                    row.append(_text(_get(hit.doc, *path)))
            self.writer.writerow([_defuse(cell) for cell in row])
        self.out.flush()

    def finish(self) -> None:
        self.out.flush()


def _defuse(cell: str) -> str:
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


def make_formatter(
    name: str, out: TextIO, *, width: int | None = None, colour: bool = False
) -> Formatter:
    """The formatter called ``name`` (one of :data:`FORMATS`) writing to ``out``."""
    if name == "table":
        return TableFormatter(out, width, colour)
    if name == "json":
        return JsonFormatter(out)
    if name == "ndjson":
        return NdjsonFormatter(out)
    if name == "csv":
        return CsvFormatter(out)
    raise ValueError(f"unknown format {name!r}; expected one of {', '.join(FORMATS)}")
