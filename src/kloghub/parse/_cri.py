"""CRI log lines: ``<timestamp> <stream> <tags> <message>`` as the kubelet's runtime writes them.

The hot loop lives in the parser (it inlines the common ``F`` case); this module is the
complete, slower reading of one line that everything unusual falls back to.
"""

from __future__ import annotations

from kloghub.parse import _timestamps

__all__ = ["STREAMS", "split_cri"]

STREAMS: dict[bytes, str] = {b"stdout": "stdout", b"stderr": "stderr"}


def split_cri(line: bytes) -> tuple[int, str, bool, bytes] | None:
    """``(time_ns, stream, partial, payload)`` of a CRI line, or ``None`` if it is not one.

    Tags are split on ``:``; the first is ``P`` (partial) or ``F`` (full) and the others
    are ignored. A line whose third field is no tag at all is read as the tagless format
    of early CRI runtimes: everything after the stream is the message.
    """
    parts = line.split(b" ", 3)
    if len(parts) < 3:
        return None
    stream = STREAMS.get(parts[1])
    if stream is None:
        return None
    time_ns = _timestamps.parse_rfc3339(parts[0])
    if time_ns is None:
        return None
    tag = parts[2].split(b":", 1)[0]
    if tag in {b"F", b"P"}:
        return time_ns, stream, tag == b"P", parts[3] if len(parts) == 4 else b""
    return time_ns, stream, False, b" ".join(parts[2:])
