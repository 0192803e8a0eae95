"""The query language: what each form means, and errors that point at the right column."""

from __future__ import annotations

import pytest

from kloghub import search
from kloghub.search import All, And, Exists, Not, Or, Term, Text, TimeRange, Wild, Wildcard

NS = 1_000_000_000
T0 = 1_795_759_200 * NS  # 2026-11-27T06:00:00Z


@pytest.mark.parametrize(
    ("query", "tree"),
    [
        ("", All()),
        ("refused", Text("refused")),
        ("connection refused", And((Text("connection"), Text("refused")))),
        ('"connection refused"', Text("connection refused")),
        ("time*", Text("time", prefix=True)),
        ("level:error", Term("log.level", "error")),
        ("pod:web-*", Wildcard("kubernetes.pod.name", ("web-", Wild.STAR))),
        ("pod:web-?x", Wildcard("kubernetes.pod.name", ("web-", Wild.ONE, "x"))),
        (r"pod:web\*", Term("kubernetes.pod.name", "web*")),
        ('user:"system:anonymous"', Term("user.name", "system:anonymous")),
        ('user:"sa-*"', Term("user.name", "sa-*")),
        (
            "user:system:serviceaccount:*",
            Wildcard("user.name", ("system:serviceaccount:", Wild.STAR)),
        ),
        ("level:*", Exists("log.level")),
        ("message:*", Exists("message")),
        ("msg:refused", Text("refused")),
        ("*", All()),
        ("event.action:get", Term("event.action", "get")),
        ("a OR b c", Or((Text("a"), And((Text("b"), Text("c")))))),
        ("(a OR b) c", And((Or((Text("a"), Text("b"))), Text("c")))),
        ("a AND NOT b", And((Text("a"), Not(Text("b"))))),
        ("-level:debug", Not(Term("log.level", "debug"))),
        ("NOT NOT a", Not(Not(Text("a")))),
        (
            "verb:(get OR list)",
            Or((Term("kubernetes.audit.verb", "get"), Term("kubernetes.audit.verb", "list"))),
        ),
        ("ns:shop and", And((Term("kubernetes.namespace", "shop"), Text("and")))),
        ("10:30", Text("10:30")),
        ("level:-1", Term("log.level", "-1")),
        (
            "@timestamp:[2026-11-27T06:00:00Z TO 2026-11-27T06:10:00.5Z}",
            TimeRange(
                search.Instant(T0),
                search.Instant(T0 + 600 * NS + NS // 2),
                lower_inclusive=True,
                upper_inclusive=False,
            ),
        ),
        (
            "@timestamp:{now-1h TO *]",
            TimeRange(
                search.Instant(offset_ns=-3600 * NS),
                None,
                lower_inclusive=False,
                upper_inclusive=True,
            ),
        ),
        (
            "time:>=2026-11-27T07:00:00+01:00",
            TimeRange(lower=search.Instant(T0), lower_inclusive=True),
        ),
        ("@timestamp:<now-15m", TimeRange(upper=search.Instant(offset_ns=-900 * NS))),
        (
            "@timestamp:>2h",
            TimeRange(lower=search.Instant(offset_ns=-7200 * NS), lower_inclusive=False),
        ),
    ],
)
def test_query_parses_to_its_meaning(query, tree):
    """If this failed, a documented form of the query language would mean something else."""
    assert search.parse(query) == tree


@pytest.mark.parametrize(
    ("query", "column", "words"),
    [
        ("level:error AND (pod:web OR", 27, "ends where a term"),
        ("level:error AND (pod:web", 16, "never closed"),
        ("level:error)", 11, "closes nothing"),
        ('message:"unterminated', 8, "never closed"),
        ("level: error", 6, "right after 'level:'"),
        ("level:", 6, "expected a value"),
        ("AND level:error", 0, "'AND' needs a term"),
        ("a OR OR b", 5, "'OR' needs a term"),
        ("ti*me", 2, "only a trailing *"),
        ("pod:(a OR level:x)", 10, "a field inside the group"),
        ("@timestamp:[now-1h TO]", 11, "a range reads"),
        ("@timestamp:[now-1h UNTIL now]", 19, "a range reads"),
        ("@timestamp:[yesterday TO now]", 12, "is not a time"),
        ("@timestamp:[now-1x TO now]", 12, "is not a duration"),
        ("@timestamp:[2026-02-30 TO now]", 12, "not a valid date"),
        ("@timestamp:2026-11-27", 11, "takes a range"),
        ("level:[a TO b]", 6, "@timestamp only"),
        ("x \\", 2, "backslash at the end"),
        ('""', 0, "no word"),
        ("...", 0, "no word"),
        ("@timestamp:[now-1h TO now", 11, "never closed"),
    ],
)
def test_query_error_points_at_the_offending_column(query, column, words):
    """If this failed, a responder with a typo would not see where in the query it is."""
    with pytest.raises(search.QueryError) as info:
        search.parse(query)
    error = info.value
    assert error.pos == column, error.render()
    assert words in error.message
    rendered = error.render().splitlines()
    assert rendered[1] == "  " + query
    assert rendered[2] == "  " + " " * column + "^"


def test_instants_accept_rfc3339_with_nanoseconds_and_offsets():
    """If this failed, --since/--until and ranges would cut the window at the wrong time."""
    assert search.parse_instant("2026-11-27T06:00:00.000000001Z").ns == T0 + 1
    assert search.parse_instant("2026-11-27T06:00:00Z").ns == T0
    assert search.parse_instant("2026-11-27T08:00:00+02:00").ns == T0
    assert search.parse_instant("2026-11-27 06:00").ns == T0
    assert search.parse_instant("2026-11-27").ns == T0 - 6 * 3600 * NS
    assert search.parse_instant("now-1h30m").offset_ns == -5400 * NS
    assert search.parse_instant("15m", bare_duration_is_ago=True).offset_ns == -900 * NS
    with pytest.raises(ValueError, match="not a time"):
        search.parse_instant("15m")
    assert search.format_ns(T0 + 5) == "2026-11-27T06:00:00.000000005Z"


@pytest.mark.parametrize(
    ("option", "request_", "column"),
    [
        ("--since", search.Request(since="yesterday"), 0),
        ("--until", search.Request(until="2026-13-01"), 0),
        ("--until", search.Request(until="now", follow=True), 0),
        ("--sort", search.Request(sort="asc", follow=True), 0),
        ("--limit", search.Request(limit=0), 0),
        ("query", search.Request(query="level:(a"), 6),
    ],
)
def test_bad_options_are_reported_with_the_option_name(option, request_, column):
    """If this failed, a bad --since or an impossible combination would fail later, unclearly."""
    with pytest.raises(search.QueryError) as info:
        search.plan(request_)
    assert info.value.source == option
    assert info.value.pos == column


def test_plan_adds_shortcuts_and_the_default_window_only_without_a_time_range():
    """If this failed, --namespace/--pod would be ignored, or the default hour would silently
    cut a query that names its own time range."""
    planned = search.plan(search.Request(query="refused", namespace="shop", pod="web-*"))
    assert planned.where == And(
        (
            Text("refused"),
            Term("kubernetes.namespace", "shop"),
            Wildcard("kubernetes.pod.name", ("web-", Wild.STAR)),
            TimeRange(search.Instant(offset_ns=-3600 * NS)),
        )
    )
    own_range = search.plan(search.Request(query="@timestamp:[now-7d TO now]"))
    assert own_range.where == TimeRange(
        search.Instant(offset_ns=-7 * 86400 * NS), search.Instant(offset_ns=0), True, True
    )
    assert search.plan(search.Request(default_since=None)).where == All()
    tail = search.plan(search.Request())
    assert (tail.newest_first, tail.reverse) == (True, True)
    oldest = search.plan(search.Request(sort="asc"))
    assert (oldest.newest_first, oldest.reverse) == (False, False)
