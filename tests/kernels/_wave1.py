"""The wave-1 per-line path, frozen as the oracle of the reference file encoder.

Until the data plane moved to chunks (issue 12), the agent cut lines in
``tail.TailedFile.read_chunk`` and built one event dict per record in
``sources._logs.LogSource._events``. Both are gone from the package; this is their logic
as of commit 92c23e8, reduced to what the kernel tests compare: the reference encoder
(``kloghub.kernels``) must give the same lines, offsets and event records for any split
of the same bytes. Nothing here is used by the product.
"""

from __future__ import annotations

from itertools import accumulate
from typing import IO, Any

from kloghub import parse


class LineCutter:
    """``TailedFile.read_chunk``: read up to N bytes, cut complete lines, cap their size."""

    def __init__(self, handle: IO[bytes], max_line_bytes: int) -> None:
        self.handle = handle
        self.max_line_bytes = max_line_bytes
        self.pos = 0
        self.leftover = b""
        self.skipping = False

    def read_chunk(self, max_bytes: int) -> tuple[list[bytes], list[int], set[int]] | None:
        data = self.handle.read(max_bytes)
        if not data:
            return None
        start = self.pos - len(self.leftover)
        self.pos += len(data)
        if self.skipping:
            cut = data.find(b"\n")
            if cut < 0:
                return [], [], set()
            start += len(self.leftover) + cut + 1
            data = data[cut + 1 :]
            self.leftover = b""
            self.skipping = False
        buf = self.leftover + data if self.leftover else data
        last = buf.rfind(b"\n")
        if last < 0:
            self.leftover = buf
            return self._maybe_cut_long_line()
        self.leftover = buf[last + 1 :]
        lines = buf[:last].split(b"\n")
        ends = [start + n + i for i, n in enumerate(accumulate(len(x) for x in lines), 1)]
        truncated: set[int] = set()
        limit = self.max_line_bytes
        if max(map(len, lines)) > limit:
            for i, line in enumerate(lines):
                if len(line) > limit:
                    lines[i] = line[:limit]
                    truncated.add(i)
        if len(self.leftover) > limit:
            extra = self._maybe_cut_long_line()
            if extra is not None and extra[0]:
                lines.extend(extra[0])
                ends.extend(extra[1])
                truncated.add(len(lines) - 1)
        return lines, ends, truncated

    def _maybe_cut_long_line(self) -> tuple[list[bytes], list[int], set[int]]:
        if len(self.leftover) <= self.max_line_bytes:
            return [], [], set()
        head = self.leftover[: self.max_line_bytes]
        self.leftover = b""
        self.skipping = True
        return [head], [self.pos], {0}


def events(
    path: str,
    file_id: str,
    records: list[parse.Record],
    kubernetes: dict[str, Any] | None,
    owner: dict[str, str] | None,
    parser_hint: str | None,
) -> list[tuple[int, dict[str, Any]]]:
    """``LogSource._events``: the (time, record) pairs the agent shipped for these records."""
    out = []
    for r in records:
        kloghub: dict[str, Any] = {"file": path, "file_id": file_id, "offset": r.end_offset}
        record: dict[str, Any] = {"log": r.message, "stream": r.stream}
        if kubernetes is not None:
            record["kubernetes"] = kubernetes
            if owner is not None:
                kloghub["owner"] = owner
        record["kloghub"] = kloghub
        if r.flags:
            kloghub["flags"] = parse.flag_names(r.flags)
            if r.raw is not None and r.flags & parse.INVALID_UTF8:
                kloghub["raw"] = r.raw
        if parser_hint is not None:
            kloghub["parser"] = parser_hint
        out.append((r.time_ns, record))
    return out
