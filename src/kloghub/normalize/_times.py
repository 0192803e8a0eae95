"""Epoch nanoseconds to RFC 3339 text, cached per second (lines come in time order)."""

from __future__ import annotations

import time

__all__ = ["MAX_NS", "NS", "Rfc3339"]

NS = 1_000_000_000
MAX_NS = 2**63 - 1
"""The last instant a ``date_nanos`` field holds (2262-04-11); later times are refused by it."""


class Rfc3339:
    """``ns → "YYYY-MM-DDTHH:MM:SS.fffffffffZ"`` with ``digits`` fraction digits (3, 6 or 9).

    One instance per stream of times: it keeps the text of the last second it formatted.
    """

    __slots__ = ("_div", "_fmt", "_prefix", "_second")

    def __init__(self, digits: int = 9) -> None:
        self._div = 10 ** (9 - digits)
        self._second = -1
        self._prefix = ""
        self._fmt = ""

    def __call__(self, ns: int) -> str:
        second, frac = divmod(ns, NS)
        if second != self._second:
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            digits = len(str(self._div)) - 1
            self._fmt = prefix.replace("%", "%%") + f".%0{9 - digits}dZ"
            self._second = second
        text: str = self._fmt % (frac // self._div)
        return text
