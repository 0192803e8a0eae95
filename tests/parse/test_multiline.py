"""Multiline: Java, Python and Go stack traces and a custom start pattern, per stream."""

from __future__ import annotations

import orjson

from kloghub import config, parse
from tests.parse._support import FIXTURES, Feeder, ends_of, parse_all, parsers_config

JAVA = [
    'Exception in thread "main" java.lang.IllegalStateException: boom',
    "\tat com.example.App.run(App.java:42)",
    "\tat com.example.App.main(App.java:7)",
    "Caused by: java.io.IOException: disk",
    "    at com.example.Disk.read(Disk.java:9)",
    "\t... 2 more",
]
PYTHON = [
    "Traceback (most recent call last):",
    '  File "/app/main.py", line 3, in <module>',
    "    main()",
    '  File "/app/main.py", line 2, in main',
    "    1 / 0",
    "    ~~^~~",
    "ZeroDivisionError: division by zero",
]
PYTHON_CHAINED = [
    "Traceback (most recent call last):",
    '  File "<stdin>", line 2, in <module>',
    "KeyError: 'x'",
    "",
    "During handling of the above exception, another exception occurred:",
    "",
    "Traceback (most recent call last):",
    '  File "<stdin>", line 4, in <module>',
    "app.errors.ConfigError: missing key",
]
GO = [
    "panic: runtime error: index out of range [5] with length 3",
    "",
    "goroutine 1 [running]:",
    "main.(*Server).handle(0xc000010000, {0x4b8f20, 0x5})",
    "\t/src/server.go:18 +0x1d",
    "main.main()",
    "\t/src/main.go:8 +0x25",
    "",
    "goroutine 18 [chan receive, 2 minutes]:",
    "net/http.(*conn).serve(...)",
    "\t/usr/local/go/src/net/http/server.go:1995 +0x612",
    "created by net/http.(*Server).Serve in goroutine 1",
    "\t/usr/local/go/src/net/http/server.go:3089 +0x5ed",
    "exit status 2",
]


def enabled(**kwargs: object) -> config.ParsersConfig:
    return parsers_config(enabled=True, **kwargs)


def text_lines(*groups: list[str]) -> list[bytes]:
    return [line.encode() for group in groups for line in group]


def messages(records: list[parse.Record]) -> list[str]:
    return [r.message for r in records]


def test_java_stack_trace_becomes_one_record():
    """If this failed, every frame of a Java exception would be a separate event."""
    lines = text_lines(["12:00 starting"], JAVA, ["12:01 next"])
    records = parse_all("text", lines, enabled())
    assert messages(records) == ["12:00 starting", "\n".join(JAVA), "12:01 next"]
    assert [r.flags for r in records] == [0, parse.MULTILINE, 0]
    assert records[1].end_offset == ends_of(lines)[len(JAVA)]


def test_the_real_hadoop_trace_is_joined_from_cri_lines():
    """If this failed, a real Java trace in CRI lines would not be grouped after reassembly."""
    text = orjson.loads((FIXTURES / "fluent-bit" / "avro_multiline.json").read_bytes())[0]["log"]
    lines = [line.encode() for line in text.split("\n") if line]
    records = parse_all("cri", lines, enabled(rules=["java"]))
    assert len(records) == 2
    assert records[0].message.startswith("hdfsExists: invokeMethod")
    assert records[1].message.startswith("org.apache.hadoop.ipc.RemoteException")
    assert records[1].message.count("\n\tat ") == 17
    assert records[1].time_ns == 1_597_871_184_337_540_770  # the first line's time
    assert records[1].stream == "stderr"
    assert records[1].end_offset == ends_of(lines)[-1]


def test_python_traceback_becomes_one_record_ending_at_the_error_line():
    """If this failed, Python tracebacks would be split or swallow the following line."""
    lines = text_lines(PYTHON, ["INFO after"])
    records = parse_all("text", lines, enabled())
    assert messages(records) == ["\n".join(PYTHON), "INFO after"]


def test_chained_python_exceptions_stay_together():
    """If this failed, 'During handling of the above exception' chains would be split."""
    records = parse_all("text", text_lines(PYTHON_CHAINED, ["next"]), enabled())
    assert messages(records) == ["\n".join(PYTHON_CHAINED), "next"]


def test_a_blank_line_after_a_trace_is_not_glued_to_it():
    """If this failed, blank lines after a traceback would silently vanish into it."""
    records = parse_all("text", text_lines(PYTHON, ["", "next"]), enabled())
    assert messages(records) == ["\n".join(PYTHON), "", "next"]
    records = parse_all("text", text_lines(GO[:7], ["", "", "after"]), enabled())
    assert messages(records) == ["\n".join(GO[:7]), "", "", "after"]


def test_go_panic_with_goroutines_becomes_one_record():
    """If this failed, a Go panic would arrive as dozens of events."""
    records = parse_all("text", text_lines(["boot"], GO, ["restarted"]), enabled())
    assert messages(records) == ["boot", "\n".join(GO), "restarted"]


def test_custom_start_pattern_groups_lines_until_the_next_start():
    """If this failed, applications with their own continuation style could not be grouped."""
    lines = text_lines(
        [
            "orphan continuation",
            "[2024-05-01] first",
            "  detail a",
            "detail b",
            "[2024-05-02] second",
        ]
    )
    records = parse_all("text", lines, enabled(start_pattern=r"^\[\d{4}-"))
    assert messages(records) == [
        "orphan continuation",
        "[2024-05-01] first\n  detail a\ndetail b",
        "[2024-05-02] second",
    ]


def test_only_the_configured_rules_apply():
    """If this failed, disabling a rule would not stop it from joining lines."""
    lines = text_lines(PYTHON)
    assert len(parse_all("text", lines, enabled(rules=["java", "go"]))) == len(PYTHON)
    assert len(parse_all("text", lines, config.ParsersConfig())) == len(PYTHON)


def test_streams_are_grouped_separately():
    """If this failed, a stderr trace would swallow interleaved stdout lines."""
    lines = [
        b"2024-05-01T12:00:00.1Z stderr F Exception in thread main java.lang.Error: x",
        b"2024-05-01T12:00:00.2Z stdout F     at not.a.Frame(of stdout)",
        b"2024-05-01T12:00:00.3Z stderr F \tat com.example.A.b(A.java:1)",
        b"2024-05-01T12:00:00.4Z stdout F plain",
    ]
    records = parse_all("cri", lines, enabled())
    by_stream = {(r.stream, r.message) for r in records}
    assert by_stream == {
        ("stderr", "Exception in thread main java.lang.Error: x\n\tat com.example.A.b(A.java:1)"),
        ("stdout", "    at not.a.Frame(of stdout)"),
        ("stdout", "plain"),
    }


def test_multiline_runs_after_partial_reassembly():
    """If this failed, a CRI P/F pair inside a trace would break the trace apart."""
    lines = [
        b"2024-05-01T12:00:00.1Z stdout F java.lang.RuntimeException: x",
        b"2024-05-01T12:00:00.2Z stdout P \tat com.example.Very",
        b"2024-05-01T12:00:00.3Z stdout F Long.frame(A.java:1)",
        b"2024-05-01T12:00:00.4Z stdout F done",
    ]
    records = parse_all("cri", lines, enabled())
    assert messages(records) == [
        "java.lang.RuntimeException: x\n\tat com.example.VeryLong.frame(A.java:1)",
        "done",
    ]
    assert records[0].flags == parse.MULTILINE | parse.PARTIAL_JOINED


def test_held_record_is_released_by_the_flush_timeout_and_holds_the_checkpoint():
    """If this failed, the last trace of a quiet container would wait forever or be skipped."""
    parser = parse.Parser("text", enabled(flush_timeout=1.5))
    feeder = Feeder(parser)
    assert messages(feeder.feed(text_lines(["first"], JAVA[:2]), now_ns=10)) == ["first"]
    assert parser.safe_offset(feeder.offset) == feeder.starts[1]
    assert parser.flush(10 + 1_499_999_999) == []
    records = parser.flush(10 + 1_500_000_000)
    assert messages(records) == ["\n".join(JAVA[:2])]
    assert parser.safe_offset(feeder.offset) == feeder.offset


def test_a_line_arriving_later_restarts_the_timeout():
    """If this failed, a trace written slowly would be cut by the flush timeout."""
    parser = parse.Parser("text", enabled(flush_timeout=1.0))
    feeder = Feeder(parser)
    feeder.feed(text_lines(JAVA[:2]), now_ns=0)
    feeder.feed(text_lines(JAVA[2:3]), now_ns=900_000_000)
    assert parser.flush(1_500_000_000) == []
    assert messages(parser.flush(1_900_000_000)) == ["\n".join(JAVA[:3])]


def test_joined_records_respect_the_cap_without_losing_lines():
    """If this failed, a huge trace would grow without bound or lose its tail."""
    cfg = config.ParsersConfig(max_record_bytes=80, multiline=config.MultilineConfig(enabled=True))
    lines = text_lines(JAVA)
    records = parse_all("text", lines, cfg)
    assert "\n".join(messages(records)) == "\n".join(JAVA)
    assert len(records) == 4
    assert all(len(r.message.encode()) <= 80 for r in records[1:])  # the first line is 64 alone
    assert [r.flags & parse.TRUNCATED for r in records] == [parse.TRUNCATED] * 3 + [0]
    assert records[-1].end_offset == ends_of(lines)[-1]


def test_joined_lines_with_invalid_utf8_keep_raw_bytes():
    """If this failed, the original bytes of a bad line would be lost once it is joined."""
    lines = [b"java.lang.Error: \xff", b"\tat a.B.c(B.java:1)"]
    (record,) = parse_all("text", lines, enabled())
    assert record.raw == b"java.lang.Error: \xff\n\tat a.B.c(B.java:1)"
    assert record.flags == parse.MULTILINE | parse.INVALID_UTF8


def test_long_lines_inside_a_trace_take_linear_time():
    """If this failed, one long line after a panic or traceback would hang the agent (regex
    backtracking)."""
    long_line = "a." * 100_000 + " (x"
    for first in ("panic: x", "Traceback (most recent call last):", "java.lang.Error: x"):
        records = parse_all("text", [first.encode(), long_line.encode()], enabled())
        assert [r.message for r in records] == [first, long_line]
