"""RFC 3339 timestamps to exact integer nanoseconds, lenient and cached per second.

Container runtimes write ``time.RFC3339Nano`` (Go trims trailing zeros, so the fraction
has 0 to 9 digits) with ``Z`` or a numeric offset. No float ever touches the value: the
``YYYY-MM-DDTHH:MM:SS`` prefix maps to epoch nanoseconds through a cache (many lines
share a second) and the fraction is added as an integer.
"""

from __future__ import annotations

import re

__all__ = ["FRACTION_SCALE", "SECONDS_CACHE", "parse_rfc3339", "prefix_ns"]

NS = 1_000_000_000

SECONDS_CACHE: dict[bytes, int] = {}
"""``b"YYYY-MM-DDTHH:MM:SS"`` → epoch nanoseconds; shared by every parser, bounded."""
_CACHE_MAX = 16384

FRACTION_SCALE: tuple[int, ...] = tuple(10 ** (9 - n) for n in range(10))
"""Multiplier of an ``n``-digit fraction (index ``n``) to nanoseconds."""

_PREFIX = re.compile(rb"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)")
_TAIL = re.compile(rb"(?:[.,](\d*))?(?:([Zz])|([+-])(\d\d)(?::?(\d\d))?)")
_DAYS_IN_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def prefix_ns(prefix: bytes) -> int | None:
    """Epoch nanoseconds of a 19-byte ``YYYY-MM-DDTHH:MM:SS`` prefix (UTC), or ``None``.

    Valid values are cached. A leap second (``:60``) counts as the next minute's ``:00``.
    """
    cached = SECONDS_CACHE.get(prefix)
    if cached is not None:
        return cached
    match = _PREFIX.fullmatch(prefix)
    if match is None:
        return None
    year, month, day, hour, minute, second = map(int, match.groups())
    if not 1 <= month <= 12 or not 1 <= day <= _DAYS_IN_MONTH[month]:
        return None
    if month == 2 and day == 29 and not (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)):
        return None
    if hour > 23 or minute > 59 or second > 60:
        return None
    value = (_days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second) * NS
    if len(SECONDS_CACHE) >= _CACHE_MAX:
        SECONDS_CACHE.clear()
    SECONDS_CACHE[prefix] = value
    return value


def parse_rfc3339(ts: bytes) -> int | None:
    """Epoch nanoseconds of an RFC 3339 timestamp, or ``None`` when it is not one.

    Lenient: ``T`` or ``t``; a fraction of 0 to 9 digits after ``.`` (or ``,``), further
    digits ignored; ``Z``, ``z``, ``±hh:mm``, ``±hhmm`` or ``±hh``. A zone is required.
    """
    base = prefix_ns(ts[:19])
    if base is None:
        return None
    match = _TAIL.fullmatch(ts, 19)
    if match is None:
        return None
    digits, zulu, sign, off_h, off_m = match.groups()
    value = base
    if digits:
        digits = digits[:9]
        value += int(digits) * FRACTION_SCALE[len(digits)]
    if zulu is None:
        hours = int(off_h)
        minutes = int(off_m) if off_m else 0
        if hours > 23 or minutes > 59:
            return None
        offset = (hours * 3600 + minutes * 60) * NS
        value = value - offset if sign == b"+" else value + offset
    return value
