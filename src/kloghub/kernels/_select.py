"""Which implementation :class:`FileEncoder` is.

Until the compiled kernel (``kloghub._native``) exists, this is always the reference.
"""

from __future__ import annotations

from kloghub.kernels import _reference

__all__ = ["FileEncoder", "native_available"]


def native_available() -> bool:
    """Whether ``FileEncoder`` is the compiled kernel (built, and not turned off)."""
    return False


FileEncoder = _reference.ReferenceFileEncoder
