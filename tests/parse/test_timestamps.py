"""RFC 3339 timestamps become exact integer nanoseconds."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kloghub import parse
from kloghub.parse import _timestamps

BASE = 1_714_564_800 * 10**9  # 2024-05-01T12:00:00Z


@pytest.mark.parametrize(
    ("fraction", "nanos"),
    [
        ("", 0),
        (".", 0),
        (".1", 100_000_000),
        (".12", 120_000_000),
        (".123", 123_000_000),
        (".1234", 123_400_000),
        (".12345", 123_450_000),
        (".123456", 123_456_000),
        (".1234567", 123_456_700),
        (".12345678", 123_456_780),
        (".123456789", 123_456_789),
        (".000000001", 1),
        (".999999999", 999_999_999),
    ],
)
def test_every_fraction_length_gives_exact_nanoseconds(fraction: str, nanos: int):
    """If this failed, timestamps with 0 to 9 fraction digits would be off by float rounding."""
    assert parse.parse_rfc3339(f"2024-05-01T12:00:00{fraction}Z".encode()) == BASE + nanos


@pytest.mark.parametrize(
    ("zone", "shift_s"),
    [
        ("Z", 0),
        ("z", 0),
        ("+00:00", 0),
        ("-00:00", 0),
        ("+02:00", -7200),
        ("-07:00", 25200),
        ("+05:30", -19800),
        ("-0930", 34200),
        ("+01", -3600),
    ],
)
def test_zone_offsets_are_applied(zone: str, shift_s: int):
    """If this failed, lines written with a numeric offset would be shifted by hours."""
    ts = f"2024-05-01T12:00:00.000000007{zone}".encode()
    assert parse.parse_rfc3339(ts) == BASE + 7 + shift_s * 10**9


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2024-05-01",
        "2024-05-01T12:00:00",  # no zone
        "2024-05-01T12:00:00.123",  # no zone
        "2024-13-01T12:00:00Z",
        "2024-02-30T12:00:00Z",
        "2023-02-29T12:00:00Z",  # not a leap year
        "2024-05-01T24:00:00Z",
        "2024-05-01T12:60:00Z",
        "2024-05-01T12:00:61Z",
        "2024-05-01T12:00:00+24:00",
        "2024-05-01T12:00:00+01:60",
        "2024-05-01T12:00:00.12aZ",
        "2024-05-01T12:00:00Zjunk",
        "2024/05/01T12:00:00Z",
        "abcd-ef-ghTij:kl:mnZ",
    ],
)
def test_invalid_timestamps_are_refused(text: str):
    """If this failed, garbage would be read as a time instead of flagged as a parse error."""
    assert parse.parse_rfc3339(text.encode()) is None


def test_leap_day_and_leap_second_are_accepted():
    """If this failed, Feb 29 of leap years or a :60 leap second would be parse errors."""
    assert parse.parse_rfc3339(b"2024-02-29T00:00:00Z") == 1_709_164_800 * 10**9
    assert parse.parse_rfc3339(b"2000-02-29T00:00:00Z") == 951_782_400 * 10**9
    assert parse.parse_rfc3339(b"2016-12-31T23:59:60Z") == 1_483_228_800 * 10**9


def test_more_than_nine_fraction_digits_are_cut_not_rounded():
    """If this failed, a picosecond-precision time would round up into the next second."""
    assert parse.parse_rfc3339(b"2024-05-01T12:00:00.9999999999Z") == BASE + 999_999_999


def test_dates_before_the_epoch_are_negative():
    """If this failed, old dates would wrap or be refused."""
    assert parse.parse_rfc3339(b"1969-12-31T23:59:59.5Z") == -500_000_000


@given(
    st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30)),
    st.integers(0, 999_999_999),
    st.integers(0, 9),
    st.integers(-23 * 60 - 59, 23 * 60 + 59),
)
def test_agrees_with_calendar_arithmetic(
    when: dt.datetime, nanos: int, digits: int, offset_min: int
):
    """If this failed, some dates (centuries, leap years, offsets) would get a wrong time."""
    kept = int(f"{nanos:09d}"[:digits] or 0) * 10 ** (9 - digits)
    fraction = f".{nanos:09d}"[: digits + 1] if digits else ""
    sign = "+" if offset_min >= 0 else "-"
    hours, minutes = divmod(abs(offset_min), 60)
    text = f"{when.year:04d}-{when:%m-%dT%H:%M:%S}{fraction}{sign}{hours:02d}:{minutes:02d}"
    epoch = dt.datetime(1970, 1, 1)
    seconds = (when.replace(microsecond=0) - epoch) // dt.timedelta(seconds=1)
    expected = (seconds - offset_min * 60) * 10**9 + kept
    assert parse.parse_rfc3339(text.encode()) == expected


def test_the_second_cache_stays_bounded():
    """If this failed, a file with ever-new seconds would grow the cache without limit."""
    for second in range(_timestamps._CACHE_MAX + 10):
        minute, sec = divmod(second, 60)
        hour, minute = divmod(minute, 60)
        day, hour = divmod(hour, 24)
        text = f"2020-01-{day + 1:02d}T{hour:02d}:{minute:02d}:{sec:02d}Z"
        assert parse.parse_rfc3339(text.encode()) is not None
    assert len(_timestamps.SECONDS_CACHE) <= _timestamps._CACHE_MAX
