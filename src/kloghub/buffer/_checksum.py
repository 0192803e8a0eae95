"""The CRC-32 of segment frames: ``zlib.crc32``'s value, computed by the compiled kernels
(``kloghub._native.crc32``: the ``crc32fast`` crate, SIMD; native/src/checksum.rs) when
they are built, else by ``zlib.crc32`` itself (the reference). Both give the same value for
the same bytes, so the segment format is the same whichever wrote or reads it.

``zlib.crc32`` ran at ~2.4 GB/s here and was 7 % of the agent's samples (written once,
checked once on read); the compiled one is several times faster even for 300-byte events.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

__all__ = ["crc32"]

_Crc = Callable[[bytes | bytearray | memoryview, int], int]

crc32: _Crc
"""``crc32(data, value)``: as ``zlib.crc32(data, value)`` (``value=0`` to start)."""

try:
    from kloghub import _native
except ImportError:  # pragma: no cover - where the extension is not built
    crc32 = zlib.crc32
else:
    crc32 = _native.crc32
