"""The reference file encoder is wave 1's tailer line cutting + parser + event record, moved."""

from __future__ import annotations

import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kloghub import config, kernels, parse
from tests.kernels import _wave1

_NOW = 1_800_000_000_000_000_000
_K8S = {"pod_name": "p", "namespace_name": "ns"}

_line = st.one_of(
    st.sampled_from(
        [
            b"2024-05-01T12:00:00.123456789Z stdout F hello",
            b"2024-05-01T12:00:00.1Z stderr P part-",
            b"2024-05-01T12:00:00.2Z stderr F end",
            b"2024-05-01T12:00:01Z stdout P \xff\xfe",
            b'{"log":"docker line\\n","stream":"stdout","time":"2024-05-01T12:00:00.5Z"}',
            b'{"log":"part","stream":"stderr","time":"2024-05-01T12:00:00Z"}',
            b"garbage",
            b"",
            b"x" * 70,
        ]
    ),
    st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")),
)


def _today(data: bytes, splits: list[int], fmt: str, cfg: config.ParsersConfig, flushes):
    """What wave 1's TailedFile.read_chunk + Parser + LogSource._events gave for the reads."""
    cutter = _wave1.LineCutter(io.BytesIO(data), int(cfg.max_line_bytes))
    parser = parse.Parser(fmt, cfg)  # type: ignore[arg-type]
    out = []
    for size, flush in zip(splits, flushes, strict=True):
        chunk = cutter.read_chunk(size)
        if chunk is not None and chunk[0]:
            lines, ends, truncated = chunk
            records = parser.feed(lines, ends, _NOW, truncated or None)
            out.append(("feed", _events(records), len(lines)))
        else:
            out.append(("feed", [], 0))
        if flush is not None:
            out.append(("flush", _events(parser.flush(_NOW, flush)), 0))
        out.append(("safe", parser.safe_offset(cutter.pos - len(cutter.leftover))))
    return out


def _events(records):
    return _wave1.events("/logs/a.log", "f", records, _K8S, None, None)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    fmt=st.sampled_from(["auto", "cri", "docker", "text"]),
    lines=st.lists(_line, max_size=12),
    tail_bytes=st.binary(max_size=10).map(lambda b: b.replace(b"\n", b"")),
    cuts=st.lists(st.integers(1, 40), min_size=1, max_size=12),
    flushes=st.lists(st.sampled_from([None, False, True]), min_size=12, max_size=12),
    max_line=st.sampled_from([16, 64, 1 << 20]),
    max_record=st.sampled_from([8, 1 << 20]),
)
def test_reference_encoder_gives_todays_events_for_any_split(
    fmt, lines, tail_bytes, cuts, flushes, max_line, max_record
):
    """Moving line cutting out of the tailer would have changed what is shipped if it failed."""
    data = b"".join(line + b"\n" for line in lines) + tail_bytes
    splits = [*cuts, len(data) + 1]
    flushes = flushes[: len(splits)] + [None] * (len(splits) - len(flushes))
    cfg = config.ParsersConfig(max_line_bytes=max_line, max_record_bytes=max_record)
    expected = _today(data, splits, fmt, cfg, flushes)

    ctx = kernels.EntryContext("/logs/a.log", "f", _K8S, None, None)
    enc = kernels.ReferenceFileEncoder(fmt, cfg, None, ctx, 0)
    got = []
    pos = 0
    for size, flush in zip(splits, flushes, strict=True):
        piece = data[pos : pos + size]
        pos += len(piece)
        result = enc.feed(piece, _NOW)
        got.append(("feed", kernels.decode_entries(result.entries), result.lines))
        assert result.count == len(got[-1][1])
        if flush is not None:
            got.append(("flush", kernels.decode_entries(enc.flush(_NOW, flush).entries), 0))
        got.append(("safe", enc.safe_offset()))
    assert got == expected
    assert enc.read_offset == len(data)


def test_counters_say_what_was_cut_and_what_was_not_utf8():
    """The tailer's truncated / invalid-UTF-8 metrics would be wrong if it failed."""
    cfg = config.ParsersConfig(max_line_bytes=40)
    ctx = kernels.EntryContext("/logs/a.log", "f", None, None, None)
    enc = kernels.ReferenceFileEncoder("cri", cfg, None, ctx, 100)
    data = (
        b"2024-05-01T12:00:00Z stdout F " + b"y" * 50 + b"\n"
        b"2024-05-01T12:00:00Z stdout F \xff\n"
        b"2024-05-01T12:00:00Z stdout P held"
    )
    result = enc.feed(data, _NOW)
    assert (result.count, result.lines, result.truncated, result.invalid_utf8) == (2, 2, 1, 1)
    assert result.end_offset == 100 + data.rindex(b"\n") + 1
    assert enc.read_offset == 100 + len(data)
    assert enc.safe_offset() == 100 + data.rindex(b"\n") + 1
    assert enc.format == "cri"
