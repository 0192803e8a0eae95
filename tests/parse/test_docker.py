"""Docker json-file lines: fields, partial joining, real samples, corrupted lines."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from kloghub import config, parse
from tests.parse._support import FIXTURES, READ_NS, Feeder, ends_of, parse_all, parsers_config


def docker(log: str, stream: str = "stdout", time: str | None = "2016-03-02T22:58:51.338462311Z"):
    obj: dict[str, str] = {"log": log, "stream": stream}
    if time is not None:
        obj["time"] = time
    return orjson.dumps(obj)


def fixture_lines(*parts: str) -> list[bytes]:
    return FIXTURES.joinpath(*parts).read_bytes().splitlines()


def test_a_line_gives_its_log_without_the_newline_and_its_exact_time():
    """If this failed, docker records would keep a stray newline or lose precision."""
    (record,) = parse_all("docker", fixture_lines("fluent-bit", "core_base_fluent-bit.log"))
    assert (record.message, record.stream, record.flags) == ("Fluent Bit is logging", "stdout", 0)
    assert record.time_ns == 1_554_141_513_598_656_444
    # Fluent Bit's expected output has the same time (to the microsecond it prints) and log
    expected = orjson.loads(
        FIXTURES.joinpath("fluent-bit", "core_base_fluent-bit.out").read_bytes()
    )
    assert expected[1]["log"] == record.message + "\n"
    assert round(expected[0] * 1e6) == record.time_ns // 1000


def test_escaped_json_inside_the_log_is_preserved_exactly():
    """If this failed, application JSON inside docker logs would be unescaped or mangled."""
    (record,) = parse_all("docker", fixture_lines("fluent-bit", "core_unescaping_json.log"))
    expected = orjson.loads(
        FIXTURES.joinpath("fluent-bit", "core_unescaping_json.out").read_bytes()
    )
    assert record.message + "\n" == expected[1]["log"]
    assert orjson.loads(record.message)["text"].startswith('quoted "text')


def test_a_log_that_is_a_json_object_stays_text():
    """If this failed, a JSON application log would not reach the normalizer as the line."""
    (record,) = parse_all(
        "docker", fixture_lines("fluent-bit", "options_merge-log-enabled_json.log")
    )
    assert record.message == '{"text":"Simple text"}'


def test_partials_are_joined_then_grouped_by_a_start_pattern_as_fluent_bit_expects():
    """If this failed, docker's split long lines would reach the output in pieces."""
    lines = fixture_lines("fluent-bit", "dockermode_splitted_multiple_lines.log")
    cfg = parsers_config(enabled=True, start_pattern=r"^\d{4}-\d{2}-\d{2}")
    records = parse_all("auto", lines, cfg)
    expected = [
        orjson.loads(line)["log"]
        for line in fixture_lines("fluent-bit", "dockermode_splitted_multiple_lines.out")
    ]
    assert [r.message + "\n" for r in records] == expected
    assert records[0].flags == parse.PARTIAL_JOINED | parse.MULTILINE
    assert records[1].flags == 0
    assert all(r.time_ns == READ_NS and r.stream == "stdout" for r in records)  # no time, stream


def test_partials_without_multiline_become_one_record_per_complete_log():
    """If this failed, docker partial joining would depend on multiline being enabled."""
    lines = fixture_lines("fluent-bit", "dockermode_splitted_multiple_lines.log")
    records = parse_all("docker", lines)
    assert [r.message for r in records] == [
        "2020-03-24 Multiple lines: ",
        "first bullet point",
        "second bullet point",
        "third bullet point",
        "fourth bullet point",
        "2020-03-24 Single line",
    ]
    assert records[3].flags == parse.PARTIAL_JOINED
    assert records[3].end_offset == ends_of(lines)[5]


def test_partials_are_joined_per_stream_with_the_first_parts_time_and_held_offset():
    """If this failed, interleaved stdout/stderr partials would mix or be checkpointed early."""
    parser = parse.Parser("docker", config.ParsersConfig())
    feeder = Feeder(parser)
    first = [
        docker("out-1 ", "stdout", "2024-05-01T12:00:00.1Z"),
        docker("err-1\n", "stderr", "2024-05-01T12:00:00.2Z"),
    ]
    assert [r.message for r in feeder.feed(first)] == ["err-1"]
    assert parser.safe_offset(feeder.offset) == 0
    records = feeder.feed([docker("out-2\n", "stdout", "2024-05-01T12:00:00.3Z")])
    assert [(r.message, r.time_ns, r.flags) for r in records] == [
        ("out-1 out-2", 1_714_564_800_100_000_000, parse.PARTIAL_JOINED)
    ]
    assert parser.safe_offset(feeder.offset) == feeder.offset


def test_docker_joins_respect_the_cap():
    """If this failed, docker partials of a huge line would be joined without bound."""
    cfg = config.ParsersConfig(max_record_bytes=7)  # the cap falls inside the first "é"
    lines = [docker("aaaaa"), docker("bébé"), docker("ccc"), docker("end\n"), docker("x\n")]
    records = parse_all("docker", lines, cfg)
    assert [(r.message, r.flags) for r in records] == [
        ("aaaaab", parse.PARTIAL_JOINED | parse.TRUNCATED),
        ("x", 0),
    ]


def test_corrupted_lines_are_flagged_and_the_rest_parsed():
    """If this failed, one corrupted docker line would crash the parser or drop its neighbours."""
    lines = fixture_lines("beats", "docker_corrupted.log")
    assert len(lines) == 21
    records = parse_all("auto", lines)
    assert len(records) == 21
    bad = [r for r in records if r.flags & parse.PARSE_ERROR]
    assert len(bad) == 1
    assert bad[0].message == lines[6].decode()
    assert bad[0].end_offset == ends_of(lines)[6]
    good = [r for r in records if not r.flags]
    assert good[0].message == "Fetching main repository github.com/elastic/beats..."
    assert good[-1].time_ns == 1_456_959_615_140_397_826  # 2016-03-02T23:00:15.140397826Z


def test_missing_or_unknown_fields_fall_back_instead_of_failing():
    """If this failed, docker lines without time or with odd fields would be lost."""
    lines = [
        b'{"log":"no time\\n","stream":"stderr"}',
        b'{"log":"bad time\\n","stream":"stdout","time":"yesterday"}',
        b'{"log":"odd stream\\n","stream":"console","time":"2016-03-02T22:58:51Z"}',
        b'{"log":"offset\\n","stream":"stdout","time":"2016-03-02T23:58:51.5+01:00"}',
    ]
    records = parse_all("docker", lines)
    assert [(r.message, r.stream, r.time_ns, r.flags) for r in records] == [
        ("no time", "stderr", READ_NS, 0),
        ("bad time", "stdout", READ_NS, 0),
        ("odd stream", "stdout", 1_456_959_531_000_000_000, 0),
        ("offset", "stdout", 1_456_959_531_500_000_000, 0),
    ]


def test_json_that_is_not_a_docker_record_is_a_parse_error():
    """If this failed, JSON lines without a string log would be dropped or crash."""
    lines = [b"[1,2]", b'{"log": 5}', b'{"msg":"x"}', b"{", b'"log"']
    records = parse_all("docker", lines)
    assert [r.flags for r in records] == [parse.PARSE_ERROR] * 5
    assert [r.message for r in records] == [line.decode() for line in lines]


def test_invalid_utf8_in_a_docker_line_keeps_the_line_as_raw():
    """If this failed, a corrupted byte in a docker line would lose the whole record."""
    line = b'{"log":"caf\xe9\\n","stream":"stdout","time":"2016-03-02T22:58:51Z"}'
    (record,) = parse_all("docker", [line])
    assert (record.message, record.raw, record.flags) == ("caf\ufffd", line, parse.INVALID_UTF8)


@given(
    st.lists(
        st.tuples(
            st.text(st.characters(blacklist_categories=("Cs",)), max_size=20),
            st.booleans(),
            st.sampled_from(["stdout", "stderr", "other", None]),
            st.sampled_from(
                [
                    "2016-03-02T22:58:51.338462311Z",
                    "2016-03-02T22:58:51.5Z",
                    "2016-03-02T22:58:51Z",
                    "2016-03-02T22:58:51.Z",
                    "2016-03-02T22:58:51.1_0Z",
                    "2016-03-02T22:58:51.\u0661Z",
                    "2016-03-02T22:58:51.5+01:00",
                    "2016-02-30T22:58:51.5Z",
                    None,
                ]
            ),
        ),
        max_size=20,
    )
)
def test_fast_and_general_docker_paths_agree(rows: list[tuple[str, bool, str | None, str | None]]):
    """If this failed, the inlined docker loop would read some lines differently."""
    lines = []
    for log, full, stream, time in rows:
        obj: dict[str, str] = {"log": log + "\n" if full else log}
        if stream is not None:
            obj["stream"] = stream
        if time is not None:
            obj["time"] = time
        lines.append(orjson.dumps(obj))
    ends = ends_of(lines)
    fast = parse.Parser("docker", config.ParsersConfig())
    general = parse.Parser("docker", config.ParsersConfig())
    got_fast = fast.feed(lines, ends, READ_NS) + fast.flush(0, force=True)
    # an out-of-range truncated index sends the batch through the general per-line path
    got_general = general.feed(lines, ends, READ_NS, {len(lines) + 1})
    assert got_fast == got_general + general.flush(0, force=True)
