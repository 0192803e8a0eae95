"""The compiled frame checksum gives zlib.crc32's value (the disk buffer's segment format
does not depend on whether the kernels are built)."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kloghub.buffer import _checksum
from tests.kernels._support import require_compiled


@pytest.fixture(autouse=True)
def _compiled() -> None:
    require_compiled()


@given(st.binary(max_size=200_000), st.integers(0, 2**32 - 1), st.integers(0, 64))
def test_the_compiled_crc32_is_zlibs_for_any_bytes_start_value_and_slice(
    data: bytes, start: int, cut: int
) -> None:
    """If this failed, segments written with the compiled checksum would read as corrupt
    where the kernels are not built (and the other way round), and lose their records."""
    from kloghub import _native

    assert _native.crc32(data, start) == zlib.crc32(data, start)
    view = memoryview(data)[cut:]
    assert _native.crc32(view, 0) == zlib.crc32(view)
    assert _checksum.crc32(bytearray(data), start) == zlib.crc32(data, start)


def test_a_crc32_continued_over_pieces_equals_the_crc32_of_the_whole():
    """If this failed, a chunk frame's checksum (its head, then its entries) would not match
    the one the reader computes over the whole payload."""
    from kloghub import _native

    head, entries = b"\x00\x07header", bytes(range(256)) * 1000
    assert _native.crc32(entries, _native.crc32(head, 0)) == zlib.crc32(head + entries)


def test_a_buffer_that_is_not_contiguous_is_refused():
    """If this failed, a strided view would be checksummed as the bytes under it."""
    from kloghub import _native

    with pytest.raises((ValueError, BufferError, TypeError)):
        _native.crc32(memoryview(b"abcdef")[::2], 0)
