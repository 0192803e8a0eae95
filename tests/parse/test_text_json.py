"""Plain text (node logs) and JSON lines (audit logs)."""

from __future__ import annotations

import orjson

from kloghub import parse, runtime
from tests.parse._support import READ_NS, ends_of, parse_all, parsers_config

AUDIT = {
    "kind": "Event",
    "apiVersion": "audit.k8s.io/v1",
    "level": "Metadata",
    "auditID": "9a1c4f4e-1111-2222-3333-444455556666",
    "stage": "ResponseComplete",
    "requestURI": "/api/v1/namespaces/default/pods/web-0",
    "verb": "get",
    "user": {
        "username": "system:serviceaccount:kube-system:ctrl",
        "groups": ["system:authenticated"],
    },
    "sourceIPs": ["10.0.0.7"],
    "objectRef": {"resource": "pods", "namespace": "default", "name": "web-0", "apiVersion": "v1"},
    "responseStatus": {"metadata": {}, "code": 200},
    "requestReceivedTimestamp": "2024-05-01T12:00:00.123456Z",
    "stageTimestamp": "2024-05-01T12:00:00.130001Z",
}


def test_text_lines_are_records_with_the_read_time_and_no_stream():
    """If this failed, node log lines would be lost, merged or misdated."""
    lines = [b"Jan  2 15:04:05 node kubelet[1]: started", b"", b"I0102 15:04:05.123 x.go:1] ok"]
    records = parse_all("text", lines)
    assert [(r.message, r.stream, r.time_ns, r.flags) for r in records] == [
        (lines[0].decode(), "", READ_NS, 0),
        ("", "", READ_NS, 0),
        (lines[2].decode(), "", READ_NS, 0),
    ]
    assert [r.end_offset for r in records] == ends_of(lines)


def test_text_lines_starting_with_an_rfc3339_time_carry_it():
    """If this failed, rsyslog high-precision lines would be dated at read time."""
    lines = [
        b"2024-05-01T14:00:00.250000+02:00 node systemd[1]: Started x.",
        b"2024-05-01 12:00:00,123 INFO not rfc3339",
        b"2024-05-01T12:00:00Z",
    ]
    records = parse_all("text", lines)
    assert [r.time_ns for r in records] == [
        1_714_564_800_250_000_000,
        READ_NS,
        1_714_564_800_000_000_000,
    ]


def test_invalid_utf8_text_keeps_its_raw_bytes():
    """If this failed, a node log line with a stray byte would lose its original bytes."""
    (record,) = parse_all("text", [b"bad \xff byte"])
    assert (record.message, record.raw, record.flags) == (
        "bad \ufffd byte",
        b"bad \xff byte",
        parse.INVALID_UTF8,
    )


def test_audit_lines_keep_raw_bytes_and_take_the_stage_time():
    """If this failed, audit events would lose event.original or their time."""
    line = orjson.dumps(AUDIT)
    (record,) = parse_all("json", [line])
    assert (record.message, record.raw, record.stream, record.flags) == (line.decode(), line, "", 0)
    assert record.time_ns == 1_714_564_800_130_001_000


def test_audit_time_falls_back_to_the_request_time_then_the_read_time():
    """If this failed, audit lines without stageTimestamp would be misdated."""
    no_stage = {k: v for k, v in AUDIT.items() if k != "stageTimestamp"}
    neither = {k: v for k, v in no_stage.items() if k != "requestReceivedTimestamp"}
    records = parse_all("json", [orjson.dumps(no_stage), orjson.dumps(neither), b"[1]"])
    assert [r.time_ns for r in records] == [1_714_564_800_123_456_000, READ_NS, READ_NS]
    assert [r.flags for r in records] == [0, 0, 0]


def test_a_non_json_audit_line_is_a_flagged_text_record_with_raw_bytes():
    """If this failed, a torn audit line would be dropped or crash the agent."""
    before = runtime.metrics.REGISTRY.get_sample_value(
        "kloghub_parse_errors_total", {"format": "json"}
    )
    line = b'{"kind":"Event","auditID":"trunc'
    (record,) = parse_all("json", [line])
    assert (record.message, record.raw, record.flags, record.time_ns) == (
        line.decode(),
        line,
        parse.PARSE_ERROR,
        READ_NS,
    )
    after = runtime.metrics.REGISTRY.get_sample_value(
        "kloghub_parse_errors_total", {"format": "json"}
    )
    assert after == (before or 0) + 1


def test_an_audit_line_with_invalid_utf8_still_parses():
    """If this failed, one bad byte in a user agent would turn an audit event into an error."""
    line = orjson.dumps(AUDIT).replace(b"web-0", b"web-\xff")
    (record,) = parse_all("json", [line])
    assert record.flags == parse.INVALID_UTF8
    assert record.raw == line
    assert record.time_ns == 1_714_564_800_130_001_000


def test_multiline_never_applies_to_json_files():
    """If this failed, audit events would be glued together by a multiline rule."""
    cfg = parsers_config(enabled=True, start_pattern="^NEVER")
    records = parse_all("json", [b"{}", b"{}"], cfg)
    assert len(records) == 2
