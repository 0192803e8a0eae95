"""Which implementation a :class:`FileEncoder` uses, per file, and saying so.

The compiled kernel when it is built and covers the file's configuration, unless
``KLOGHUB_KERNELS=python`` asks for the reference; otherwise the reference — never
silently: a missing extension is logged once (a warning), and every file the compiled
kernel does not cover is counted in ``kloghub_kernel_fallbacks{reason}`` and its reason
logged once per process.
"""

from __future__ import annotations

import logging
import os

from kloghub import config, parse, runtime
from kloghub.kernels import _compiled, _encoded, _entries, _reference

__all__ = ["FileEncoder", "native_available"]

_log = logging.getLogger(__name__)
_said: set[str] = set()


def native_available() -> bool:
    """Whether file encoders use the compiled kernel: built, and not turned off by
    ``KLOGHUB_KERNELS=python``."""
    return _compiled.NATIVE is not None and os.environ.get("KLOGHUB_KERNELS") != "python"


def _say_once(reason: str, message: str, level: int) -> None:
    runtime.metrics.KERNEL_FALLBACKS.labels(reason=reason).inc()
    if reason not in _said:
        _said.add(reason)
        _log.log(level, message, extra={"reason": reason})


class FileEncoder:
    """One tailed file's bytes → :class:`Encoded` entries (kernels/__init__ docstring).

    ``feed`` takes bytes read from the file, contiguous from ``offset``; ``flush`` emits
    held records whose timeout passed (all of them with ``force``: at EOF, on drain);
    ``safe_offset`` is how far a checkpoint may go (every byte before it is in an entry
    already returned).
    """

    __slots__ = ("_impl",)

    def __init__(
        self,
        fmt: str,
        parsers: config.ParsersConfig,
        multiline: config.MultilineConfig | None,
        ctx: _entries.EntryContext,
        offset: int,
    ) -> None:
        if fmt not in parse.FORMATS:
            raise ValueError(
                f"unknown log format {fmt!r}; expected one of {', '.join(parse.FORMATS)}"
            )
        impl: _compiled.CompiledFileEncoder | _reference.ReferenceFileEncoder | None = None
        if _compiled.NATIVE is None:
            _say_once(
                "not_built",
                "the compiled kernels (kloghub._native) are not built: files are encoded by "
                "the Python reference, several times slower; reinstall with a Rust toolchain",
                logging.WARNING,
            )
        elif os.environ.get("KLOGHUB_KERNELS") == "python":
            _say_once(
                "forced",
                "KLOGHUB_KERNELS=python: files are encoded by the Python reference",
                logging.INFO,
            )
        else:
            reason = _compiled.uncovered(fmt, parsers, multiline)
            if reason is None:
                impl = _compiled.CompiledFileEncoder(fmt, parsers, multiline, ctx, offset)
            else:
                _say_once(
                    reason,
                    "the compiled kernel does not cover this file's configuration yet; "
                    "files so configured are encoded by the Python reference",
                    logging.INFO,
                )
        self._impl = impl or _reference.ReferenceFileEncoder(fmt, parsers, multiline, ctx, offset)

    @property
    def native(self) -> bool:
        """Whether this file is encoded by the compiled kernel."""
        return self._impl.native

    @property
    def format(self) -> str:
        """The file's format (``auto`` until the first line decided it)."""
        return self._impl.format

    @property
    def read_offset(self) -> int:
        """Offset after the last byte fed."""
        return self._impl.read_offset

    def feed(self, data: bytes, now_ns: int) -> _encoded.Encoded:
        return self._impl.feed(data, now_ns)

    def flush(self, now_ns: int, force: bool = False) -> _encoded.Encoded:
        return self._impl.flush(now_ns, force)

    def safe_offset(self) -> int:
        return self._impl.safe_offset()

    def set_context(self, ctx: _entries.EntryContext) -> None:
        self._impl.set_context(ctx)
