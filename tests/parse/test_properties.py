"""Properties over arbitrary input: nothing raises, and every line lands in exactly one record."""

from __future__ import annotations

import itertools
import re

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kloghub import config, parse
from tests.parse._support import Feeder

_junk_bytes = st.binary(max_size=60).map(lambda b: b.replace(b"\n", b""))
_multiline = st.one_of(
    st.just(config.MultilineConfig()),
    st.builds(
        config.MultilineConfig,
        enabled=st.just(True),
        rules=st.lists(st.sampled_from(["java", "python", "go"]), unique=True),
        start_pattern=st.sampled_from([None, "^A", r"^\d"]),
        flush_timeout=st.sampled_from([0.0, 0.5, 5.0]),
    ),
)


@st.composite
def cri_like(draw: st.DrawFn) -> bytes:
    stamp = draw(st.sampled_from([b"2024-05-01T12:00:00.1Z", b"2024-02-30T00:00:00Z", b"x"]))
    stream = draw(st.sampled_from([b"stdout", b"stderr", b"stdin"]))
    tag = draw(st.sampled_from([b"F", b"P", b"P:x", b""]))
    return b" ".join([stamp, stream, tag, draw(_junk_bytes)])


_any_line = st.one_of(_junk_bytes, cri_like(), st.sampled_from([b"", b"{", b'{"log":"x"}']))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    fmt=st.sampled_from(["auto", "cri", "docker", "text", "json"]),
    multiline=_multiline,
    max_record=st.sampled_from([4, 64, 1 << 20]),
    batches=st.lists(
        st.tuples(st.lists(_any_line, max_size=12), st.sets(st.integers(0, 11)), st.booleans()),
        max_size=5,
    ),
)
def test_any_bytes_never_raise_and_nothing_stays_held_after_a_forced_flush(
    fmt: parse.Format,
    multiline: config.MultilineConfig,
    max_record: int,
    batches: list[tuple[list[bytes], set[int], bool]],
):
    """If this failed, some input would crash the tailer or stay stuck in the parser."""
    cfg = config.ParsersConfig(max_record_bytes=max_record, multiline=multiline)
    parser = parse.Parser(fmt, cfg)
    feeder = Feeder(parser)
    boundaries: set[int] = set()
    records: list[parse.Record] = []
    now = 0
    for lines, truncated, flush in batches:
        now += 700_000_000
        cut = {i for i in truncated if i < len(lines)}
        records += feeder.feed(lines, now_ns=now, truncated=cut)
        boundaries.update(feeder.starts[-len(lines) :] if lines else [])
        if flush:
            records += parser.flush(now)
    records += parser.flush(now, force=True)
    assert parser.safe_offset(feeder.offset) == feeder.offset
    line_ends = boundaries | {feeder.offset}  # every line's end is the next one's start
    for record in records:
        assert isinstance(record.message, str)
        record.message.encode("utf-8")  # never a lone surrogate
        assert record.stream in ("stdout", "stderr", "")
        assert record.raw is None or isinstance(record.raw, bytes)
        assert isinstance(record.time_ns, int)
        assert record.end_offset in line_ends
    assert len({r.end_offset for r in records}) == len(records)


_safe_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r<>"), max_size=20
)
_marker_free_junk = _junk_bytes.map(lambda b: b.replace(b"<", b"").replace(b">", b""))


@st.composite
def marked_line(draw: st.DrawFn, fmt: str, index: int) -> bytes:
    """A line of ``fmt`` (or junk) whose content ends with the marker ``<index>``."""
    marker = f"<{index}>"
    kind = draw(st.sampled_from(["good", "good", "good", "junk"]))
    if kind == "junk" or fmt == "text":
        return draw(_marker_free_junk) + marker.encode()
    body = draw(st.sampled_from(["", "A ", "\tat x.Y(Z.java:1) ", "Traceback ", "panic: "]))
    body += draw(_safe_text) + marker
    stream = draw(st.sampled_from(["stdout", "stderr"]))
    partial = draw(st.booleans())
    if fmt == "cri":
        tag = "P" if partial else "F"
        return f"2024-05-01T12:00:00.{index:09d}Z {stream} {tag} {body}".encode()
    log = body if partial else body + "\n"
    return orjson.dumps({"log": log, "stream": stream, "time": "2024-05-01T12:00:00Z"})


@st.composite
def marked_file(draw: st.DrawFn) -> tuple[str, list[bytes]]:
    fmt = draw(st.sampled_from(["cri", "docker", "text"]))
    count = draw(st.integers(0, 40))
    return fmt, [draw(marked_line(fmt, i)) for i in range(count)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    file=marked_file(),
    multiline=_multiline,
    cuts=st.lists(st.integers(0, 40), max_size=6),
    flushes=st.lists(st.booleans(), min_size=7, max_size=7),
)
def test_every_line_ends_up_in_exactly_one_record_and_held_lines_are_never_passed(
    file: tuple[str, list[bytes]],
    multiline: config.MultilineConfig,
    cuts: list[int],
    flushes: list[bool],
):
    """If this failed, some line would be lost, duplicated, or skippable by a checkpoint."""
    fmt, lines = file
    parser = parse.Parser(fmt, config.ParsersConfig(multiline=multiline))  # type: ignore[arg-type]
    feeder = Feeder(parser)
    bounds = sorted({0, len(lines), *(c for c in cuts if c < len(lines))})
    seen: list[int] = []
    now = 0
    for step, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        now += 400_000_000
        out = feeder.feed(lines[lo:hi], now_ns=now)
        if flushes[step % len(flushes)]:
            out += parser.flush(now)
        for record in out:
            seen += [int(m) for m in re.findall(r"<(\d+)>", record.message)]
        pending = set(range(hi)) - set(seen)
        safe = parser.safe_offset(feeder.offset)
        assert all(feeder.starts[i] >= safe for i in pending)
    for record in parser.flush(now, force=True):
        seen += [int(m) for m in re.findall(r"<(\d+)>", record.message)]
    assert sorted(seen) == list(range(len(lines)))
