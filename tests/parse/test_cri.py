"""CRI lines: fields, partial joining per stream, the joined-size cap, offsets, bad input."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kloghub import config, parse, runtime
from tests.parse._support import FIXTURES, READ_NS, Feeder, ends_of, parse_all, parsers_config

T0 = 1_714_564_800 * 10**9  # 2024-05-01T12:00:00Z


def cri(second: int, frac: str, stream: str, tag: str, message: str) -> bytes:
    return f"2024-05-01T12:00:{second:02d}{frac}Z {stream} {tag} {message}".encode()


def parse_errors(fmt: str) -> float:
    value = runtime.metrics.REGISTRY.get_sample_value("kloghub_parse_errors_total", {"format": fmt})
    return value or 0.0


def test_full_lines_give_one_record_each_with_exact_time_stream_and_offset():
    """If this failed, ordinary container lines would be misread."""
    lines = [
        cri(0, ".123456789", "stdout", "F", "hello world"),
        cri(1, ".5", "stderr", "F", "oops: it  has  spaces "),
        cri(2, "", "stdout", "F", '{"level":"info"}'),
    ]
    records = parse_all("cri", lines)
    ends = ends_of(lines)
    assert [(r.time_ns, r.stream, r.message, r.end_offset) for r in records] == [
        (T0 + 123_456_789, "stdout", "hello world", ends[0]),
        (T0 + 1_500_000_000, "stderr", "oops: it  has  spaces ", ends[1]),
        (T0 + 2_000_000_000, "stdout", '{"level":"info"}', ends[2]),
    ]
    assert all(r.flags == 0 and r.raw is None for r in records)


def test_numeric_offsets_in_cri_timestamps_are_applied():
    """If this failed, runtimes that write local time with an offset would be hours off."""
    line = b"2024-05-01T14:00:00.000000001+02:00 stdout F x"
    assert parse_all("cri", [line])[0].time_ns == T0 + 1


def test_extra_tags_are_ignored_and_only_the_first_decides():
    """If this failed, a runtime adding tags (F:x) would break parsing or joining."""
    lines = [
        cri(0, ".1", "stdout", "P:foo", "a"),
        cri(0, ".2", "stdout", "F:foo:bar", "b"),
        cri(0, ".3", "stdout", "F:", "c"),
    ]
    assert [r.message for r in parse_all("cri", lines)] == ["ab", "c"]


def test_empty_messages_are_records_too():
    """If this failed, empty log lines (with or without the trailing space) would be lost."""
    lines = [cri(0, ".1", "stdout", "F", ""), b"2024-05-01T12:00:00.2Z stdout F"]
    records = parse_all("cri", lines)
    assert [(r.message, r.flags) for r in records] == [("", 0), ("", 0)]


def test_tagless_lines_of_early_runtimes_keep_the_whole_message():
    """If this failed, the first word of tagless CRI lines would be eaten as a tag."""
    records = parse_all("cri", [b"2024-05-01T12:00:00Z stdout hello there"])
    assert [(r.message, r.flags) for r in records] == [("hello there", 0)]


def test_partials_are_joined_per_stream_when_streams_interleave():
    """If this failed, P parts of stdout and stderr would be glued to each other."""
    lines = [
        cri(0, ".1", "stdout", "P", "out-1 "),
        cri(0, ".2", "stderr", "P", "err-1 "),
        cri(0, ".3", "stdout", "P", "out-2 "),
        cri(0, ".4", "stderr", "F", "err-2"),
        cri(0, ".5", "stdout", "F", "out-3"),
        cri(0, ".6", "stderr", "F", "alone"),
    ]
    ends = ends_of(lines)
    records = parse_all("cri", lines)
    got = [(r.stream, r.message, r.time_ns, r.end_offset, r.flags) for r in records]
    assert got == [
        ("stderr", "err-1 err-2", T0 + 200_000_000, ends[3], parse.PARTIAL_JOINED),
        ("stdout", "out-1 out-2 out-3", T0 + 100_000_000, ends[4], parse.PARTIAL_JOINED),
        ("stderr", "alone", T0 + 600_000_000, ends[5], 0),
    ]


def test_a_group_split_across_feeds_is_joined_and_its_start_is_held():
    """If this failed, a checkpoint could pass a held P part and a crash would lose it."""
    parser = parse.Parser("cri", config.ParsersConfig())
    feeder = Feeder(parser)
    first = [cri(0, ".1", "stdout", "F", "before"), cri(0, ".2", "stdout", "P", "part-1 ")]
    assert [r.message for r in feeder.feed(first)] == ["before"]
    p_start = feeder.starts[1]
    assert parser.safe_offset(feeder.offset) == p_start
    second = [cri(0, ".3", "stderr", "F", "other stream"), cri(0, ".4", "stdout", "P", "part-2 ")]
    assert [r.message for r in feeder.feed(second)] == ["other stream"]
    assert parser.safe_offset(feeder.offset) == p_start
    records = feeder.feed([cri(0, ".5", "stdout", "F", "end")])
    assert [(r.message, r.time_ns) for r in records] == [("part-1 part-2 end", T0 + 200_000_000)]
    assert records[0].end_offset == feeder.offset
    assert parser.safe_offset(feeder.offset) == feeder.offset


def test_safe_offset_is_the_oldest_held_part_across_streams():
    """If this failed, a checkpoint could skip the older of two held groups."""
    parser = parse.Parser("cri", config.ParsersConfig())
    feeder = Feeder(parser)
    feeder.feed([cri(0, ".1", "stderr", "P", "e"), cri(0, ".2", "stdout", "P", "o")])
    assert parser.safe_offset(feeder.offset) == 0
    feeder.feed([cri(0, ".3", "stderr", "F", "e")])
    assert parser.safe_offset(feeder.offset) == feeder.starts[1]


def test_a_joined_record_is_capped_and_the_rest_of_its_group_discarded():
    """If this failed, a runaway P stream would grow a record without bound."""
    cfg = config.ParsersConfig(max_record_bytes=10)
    lines = [
        cri(0, ".1", "stdout", "P", "aaaaaa"),
        cri(0, ".2", "stdout", "P", "bbbbbb"),
        cri(0, ".3", "stdout", "P", "cccccc"),
        cri(0, ".4", "stdout", "F", "dd"),
        cri(0, ".5", "stdout", "F", "next"),
    ]
    records = parse_all("cri", lines, cfg)
    assert [(r.message, r.flags) for r in records] == [
        ("aaaaaabbbb", parse.PARTIAL_JOINED | parse.TRUNCATED),
        ("next", 0),
    ]
    assert records[0].end_offset == ends_of(lines)[3]


def test_the_cap_never_splits_a_utf8_character():
    """If this failed, a cap inside a multi-byte character would flag valid text as invalid."""
    cfg = config.ParsersConfig(max_record_bytes=4)
    lines = [cri(0, ".1", "stdout", "P", "ab"), cri(0, ".2", "stdout", "F", "cé")]
    (record,) = parse_all("cri", lines, cfg)
    assert record.message == "abc"
    assert record.flags == parse.PARTIAL_JOINED | parse.TRUNCATED


def test_held_parts_are_released_by_the_flush_timeout():
    """If this failed, the last line of a container that died mid-group would never ship."""
    parser = parse.Parser("cri", parsers_config(flush_timeout=2.0))
    feeder = Feeder(parser)
    assert feeder.feed([cri(0, ".1", "stdout", "P", "half")], now_ns=1_000) == []
    assert parser.flush(1_000 + 1_999_999_999) == []
    records = parser.flush(1_000 + 2_000_000_000)
    assert [(r.message, r.flags) for r in records] == [("half", parse.PARTIAL_JOINED)]
    assert parser.safe_offset(feeder.offset) == feeder.offset


def test_forced_flush_releases_every_held_group():
    """If this failed, a rotated-away file would lose its unfinished groups."""
    parser = parse.Parser("cri", config.ParsersConfig())
    feeder = Feeder(parser)
    feeder.feed([cri(0, ".1", "stdout", "P", "o"), cri(0, ".2", "stderr", "P", "e")])
    records = parser.flush(0, force=True)
    assert sorted(r.message for r in records) == ["e", "o"]
    assert parser.flush(0, force=True) == []


@pytest.mark.parametrize(
    "line",
    [
        b"not a cri line at all",
        b"",
        b"2024-05-01T12:00:00Z stdin F wrong stream",
        b"2024-05-01T25:00:00Z stdout F bad hour",
        b"2024-05-01T12:00:00.12x4Z stdout F bad fraction",
        b"2024-05-01T12:00:00Z",
    ],
)
def test_lines_that_are_not_cri_are_kept_as_flagged_text_and_counted(line: bytes):
    """If this failed, unparsable lines would be dropped silently or crash the tailer."""
    before = parse_errors("cri")
    (record,) = parse_all("cri", [line])
    assert record.message == line.decode()
    assert record.flags == parse.PARSE_ERROR
    assert (record.time_ns, record.stream, record.end_offset) == (READ_NS, "", len(line) + 1)
    assert parse_errors("cri") == before + 1


def test_invalid_utf8_is_replaced_and_the_raw_bytes_kept():
    """If this failed, non-UTF-8 output would crash the pipeline or lose its bytes."""
    payload = b"caf\xe9 \xff end"
    records = parse_all(
        "cri",
        [
            b"2024-05-01T12:00:00.1Z stdout F " + payload,
            b"2024-05-01T12:00:00.2Z stderr P \xf0\x9f",
            b"2024-05-01T12:00:00.3Z stderr F \x98\x80 ok",
            b"2024-05-01T12:00:00.4Z stdout F \xff garbage \xfe" + b" x",
        ],
    )
    assert records[0].message == "caf\ufffd \ufffd end"
    assert records[0].raw == payload
    assert records[0].flags == parse.INVALID_UTF8
    # a character split across two P parts is whole again once joined
    assert (records[1].message, records[1].raw, records[1].flags) == (
        "\U0001f600 ok",
        None,
        parse.PARTIAL_JOINED,
    )
    assert records[2].flags == parse.INVALID_UTF8


def test_lines_cut_by_the_tailer_are_flagged_truncated():
    """If this failed, a line shortened at max_line_bytes would look complete downstream."""
    parser = parse.Parser("cri", config.ParsersConfig())
    feeder = Feeder(parser)
    cut = cri(0, ".1", "stdout", "F", "aaaa\u00e9".encode().decode())[:-1]  # cut inside é
    lines = [cut, cri(0, ".2", "stdout", "F", "whole")]
    records = feeder.feed(lines, truncated={0}, lengths=[len(cut) + 1000, len(lines[1])])
    assert [(r.message, r.flags) for r in records] == [
        ("aaaa", parse.TRUNCATED),
        ("whole", 0),
    ]
    assert records[0].end_offset == len(cut) + 1001


def test_a_truncated_part_marks_its_joined_record():
    """If this failed, a joined record built from a cut part would not say it was cut."""
    parser = parse.Parser("cri", config.ParsersConfig())
    feeder = Feeder(parser)
    lines = [cri(0, ".1", "stdout", "P", "cut"), cri(0, ".2", "stdout", "F", "tail")]
    (record,) = feeder.feed(lines, truncated={0}, lengths=[len(lines[0]) + 50, len(lines[1])])
    assert record.flags == parse.PARTIAL_JOINED | parse.TRUNCATED
    assert record.message == "cuttail"


def test_start_of_a_held_first_line_comes_from_the_previous_feed():
    """If this failed, a held line cut by the tailer could get a start past its first byte."""
    parser = parse.Parser("cri", config.ParsersConfig())
    parser.feed([cri(0, ".1", "stdout", "F", "x")], [100], 0)
    line = cri(0, ".2", "stdout", "P", "held")
    parser.feed([line], [100 + len(line) + 1 + 5000], 0, {0})  # the line was 5000 bytes longer
    assert parser.safe_offset(10**6) == 100


def test_the_real_runtime_sample_parses_with_exact_times():
    """If this failed, real containerd output (8- and 9-digit fractions) would be misread."""
    text = orjson.loads((FIXTURES / "fluent-bit" / "avro_multiline.json").read_bytes())[0]["log"]
    lines = [line.encode() for line in text.split("\n") if line]
    records = parse_all("auto", lines)
    assert len(records) == len(lines) == 19
    assert all(r.stream == "stderr" and r.flags == 0 for r in records)
    assert records[0].time_ns == 1_597_871_184_337_499_838
    assert records[1].time_ns == 1_597_871_184_337_540_770  # 8 digits: ...33754077Z
    assert records[2].message == "\tat org.apache.hadoop.ipc.Client.call(Client.java:1475)"


_streams = st.sampled_from(["stdout", "stderr"])
_fractions = st.one_of(
    st.integers(0, 9).flatmap(
        lambda n: st.text("0123456789", min_size=n, max_size=n).map(lambda d: "." + d if d else "")
    ),
    st.sampled_from([".", ".+1", ".-1", ". 1", ".1_0", ".\u0661", ".1234567890"]),
)
_zones = st.sampled_from(["Z", "z", "+00:00", "-03:30", "+0100"])
_messages = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"), max_size=40
)


@given(
    st.lists(
        st.tuples(
            st.integers(0, 59), _fractions, _zones, _streams, st.sampled_from("FFFP"), _messages
        ),
        max_size=30,
    )
)
def test_fast_and_general_paths_agree(rows: list[tuple[int, str, str, str, str, str]]):
    """If this failed, the inlined hot loop would read some lines differently."""
    lines = [
        f"2024-05-01T12:00:{sec:02d}{frac}{zone} {stream} {tag} {msg}".encode()
        for sec, frac, zone, stream, tag, msg in rows
    ]
    ends = ends_of(lines)
    fast = parse.Parser("cri", config.ParsersConfig())
    general = parse.Parser("cri", config.ParsersConfig())
    got_fast = fast.feed(lines, ends, 0) + fast.flush(0, force=True)
    # an out-of-range truncated index sends the batch through the general per-line path
    got_general = general.feed(lines, ends, 0, {len(lines) + 1}) + general.flush(0, force=True)
    assert got_fast == got_general
