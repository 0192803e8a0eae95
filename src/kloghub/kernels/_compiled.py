"""The compiled file encoder (``kloghub._native``, native/src/encoder.rs), seen as the
reference is: same constructor, same :class:`Encoded` results, same metrics.

It covers the formats ``auto``, ``cri``, ``docker`` and ``text`` without multiline rules,
and ``json`` (which never has them); :func:`uncovered` says why a file's configuration is
not covered (the caller then uses the reference for it). JSON lines that serde_json
refuses are re-read by the reference (``parse_docker``, ``load_json``: orjson's exact
grammar), called from the kernel — broken lines are rare.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import TYPE_CHECKING

from kloghub import config, runtime
from kloghub.kernels import _encoded, _entries
from kloghub.parse import _docker, _text

if TYPE_CHECKING:
    from kloghub import _native

__all__ = ["NATIVE", "CompiledFileEncoder", "bulk_documents_class", "uncovered"]

NATIVE: ModuleType | None
"""The extension module, or ``None`` when it was not built."""
try:
    from kloghub import _native as NATIVE  # noqa: N812 - a module, named as the constant it is
except ImportError:  # pragma: no cover - exercised where the extension is not built
    NATIVE = None


def bulk_documents_class() -> type[_native.BulkDocuments] | None:
    """The collector's request kernel (``native/src/documents.rs``; its specification is
    ``collector._fastpath``), or None when not built or ``KLOGHUB_KERNELS=python``."""
    if NATIVE is None or os.environ.get("KLOGHUB_KERNELS") == "python":
        return None
    cls: type[_native.BulkDocuments] = NATIVE.BulkDocuments
    return cls


_COVERED_FORMATS = frozenset({"auto", "cri", "docker", "text", "json"})
_Encoded = _encoded.Encoded
_ERRORS = runtime.metrics.PARSE_ERRORS


def _multiline(
    parsers: config.ParsersConfig, multiline: config.MultilineConfig | None
) -> config.MultilineConfig:
    """The multiline settings the reference parser would use (``parse.Parser``'s rule)."""
    return multiline if multiline is not None else parsers.multiline


def uncovered(
    fmt: str, parsers: config.ParsersConfig, multiline: config.MultilineConfig | None
) -> str | None:
    """Why the compiled kernel cannot encode a file so configured (``None``: it can)."""
    if fmt not in _COVERED_FORMATS:
        return f"format_{fmt}"
    if fmt != "json" and _multiline(parsers, multiline).enabled:  # never applies to json
        return "multiline"
    return None


def _load_json(line: bytes) -> tuple[int | None, bool] | None:
    """The reference's reading of a JSON line: ``(time_ns, invalid_utf8)``, ``None`` if it
    is not JSON (``parse/_text.py``)."""
    loaded = _text.load_json(line)
    if loaded is None:
        return None
    obj, invalid = loaded
    return _text.json_time(obj), invalid


def _pieces(ctx: _entries.EntryContext) -> tuple[int, bytes, bytes, bytes, int]:
    return (
        ctx.record_head[0],
        ctx.kubernetes_piece,
        ctx.file_piece,
        ctx.tail_piece,
        ctx.kloghub_size,
    )


class CompiledFileEncoder:
    """One tailed file's bytes → entries, in Rust (see the module docstring)."""

    __slots__ = ("_auto_errors", "_errors", "_fmt", "_kernel")

    def __init__(
        self,
        fmt: str,
        parsers: config.ParsersConfig,
        multiline: config.MultilineConfig | None,
        ctx: _entries.EntryContext,
        offset: int,
    ) -> None:
        if NATIVE is None:
            raise RuntimeError("the compiled kernels (kloghub._native) are not built")
        reason = uncovered(fmt, parsers, multiline)
        if reason is not None:
            raise ValueError(f"the compiled kernel does not cover this file ({reason})")
        timeout_ns = round(_multiline(parsers, multiline).flush_timeout * 1e9)
        self._kernel: _native.FileEncoder = NATIVE.FileEncoder(
            fmt,
            int(parsers.max_line_bytes),
            int(parsers.max_record_bytes),
            timeout_ns,
            *_pieces(ctx),
            offset,
            _docker.parse_docker,
            _load_json,
        )
        self._fmt = fmt
        self._auto_errors = _ERRORS.labels(format="auto")
        self._errors = _ERRORS.labels(format=fmt)

    @property
    def format(self) -> str:
        return self._kernel.format

    @property
    def read_offset(self) -> int:
        return self._kernel.read_offset

    @property
    def native(self) -> bool:
        return True

    def set_context(self, ctx: _entries.EntryContext) -> None:
        self._kernel.set_context(*_pieces(ctx))

    def safe_offset(self) -> int:
        return self._kernel.safe_offset()

    def feed(self, data: bytes, now_ns: int) -> _encoded.Encoded:
        return self._result(self._kernel.feed(data, now_ns))

    def flush(self, now_ns: int, force: bool = False) -> _encoded.Encoded:
        return self._result(self._kernel.flush(now_ns, force))

    def _result(self, produced: tuple[bytes, int, int, int, int, int, int, int]) -> _Encoded:
        entries, count, lines, end, truncated, invalid, auto_errors, errors = produced
        if auto_errors:
            self._auto_errors.inc(auto_errors)
        if errors:
            fmt = self._kernel.format
            if fmt != self._fmt:  # auto resolved
                self._fmt = fmt
                self._errors = _ERRORS.labels(format=fmt)
            self._errors.inc(errors)
        if not count and not lines:
            return _encoded.EMPTY
        return _Encoded(entries, count, lines, end, truncated, invalid)
