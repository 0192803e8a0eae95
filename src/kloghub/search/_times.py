"""Points in time of the query language: ``now``, ``now-15m``, ``15m`` (ago), RFC 3339.

An :class:`Instant` is resolved against one ``now`` per search, on the client, so that every
backend is asked about exactly the same nanoseconds (and ``--follow`` moves with the clock).
"""

from __future__ import annotations

import calendar
import datetime
import re
import time
from dataclasses import dataclass

__all__ = ["NS", "Instant", "format_ns", "parse_duration", "parse_instant"]

NS = 1_000_000_000

_UNITS = {
    "ms": NS // 1000,
    "s": NS,
    "m": 60 * NS,
    "h": 3600 * NS,
    "d": 86400 * NS,
    "w": 604800 * NS,
}
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w)")
_NOW = re.compile(r"now(?:([+-])(.+))?", re.IGNORECASE)
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))?"
)
_EXAMPLES = "15m, 2h, 7d, now, now-30m or an RFC 3339 time such as 2026-11-27T06:00:00Z"


@dataclass(frozen=True, slots=True)
class Instant:
    """An absolute time (``ns``) or one relative to the search's ``now`` (``offset_ns``)."""

    ns: int | None = None
    offset_ns: int = 0

    def resolve(self, now_ns: int) -> int:
        return self.ns if self.ns is not None else now_ns + self.offset_ns


def parse_duration(text: str) -> int | None:
    """``15m``, ``1h30m``, ``500ms``, ``7d``, ``2w`` → nanoseconds; None if not a duration."""
    total, pos = 0, 0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            return None
        total += int(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    return total if pos == len(text) and text else None


def parse_instant(text: str, *, bare_duration_is_ago: bool = False) -> Instant:
    """``now``, ``now-15m``, ``now+1h``, ``2026-11-27``, ``2026-11-27T06:00:00.5+01:00``
    (a time without a zone is UTC); with ``bare_duration_is_ago`` also ``15m`` = 15 min ago.
    ``ValueError`` with a message that shows the accepted forms."""
    if bare_duration_is_ago and (ago := parse_duration(text)) is not None:
        return Instant(offset_ns=-ago)
    if match := _NOW.fullmatch(text):
        sign, amount = match.groups()
        if sign is None:
            return Instant(offset_ns=0)
        duration = parse_duration(amount)
        if duration is None:
            raise ValueError(f"{amount!r} is not a duration (like 15m, 2h, 1h30m, 7d)")
        return Instant(offset_ns=duration if sign == "+" else -duration)
    if match := _RFC3339.fullmatch(text):
        return Instant(ns=_rfc3339_ns(match, text))
    raise ValueError(f"{text!r} is not a time; use {_EXAMPLES}")


def _rfc3339_ns(match: re.Match[str], text: str) -> int:
    year, month, day, hour, minute, second, frac, zulu, sign, off_h, off_m = match.groups()
    try:
        moment = datetime.datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            min(int(second or 0), 59),  # a leap second counts as :59
            tzinfo=datetime.UTC,
        )
    except ValueError:
        raise ValueError(f"{text!r} is not a valid date or time") from None
    seconds = calendar.timegm(moment.utctimetuple())
    ns = seconds * NS + int((frac or "0").ljust(9, "0"))
    if sign is not None and zulu is None:
        offset = (int(off_h) * 60 + int(off_m)) * 60 * NS
        ns -= offset if sign == "+" else -offset
    return ns


def format_ns(ns: int, digits: int = 9) -> str:
    """``ns`` → ``2026-11-27T06:20:43.123456789Z`` with ``digits`` fraction digits (0..9)."""
    seconds, frac = divmod(ns, NS)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if digits:
        text += "." + f"{frac:09d}"[:digits]
    return text + "Z"
