"""Format detection per file: the first non-empty line decides, and the choice sticks."""

from __future__ import annotations

import pytest

from kloghub import config, parse
from tests.parse._support import Feeder, parse_all

CRI_LINE = b"2024-05-01T12:00:00.1Z stdout F hello"
DOCKER_LINE = b'{"log":"hello\\n","stream":"stdout","time":"2024-05-01T12:00:00.1Z"}'


def test_a_line_starting_with_a_brace_means_docker():
    """If this failed, docker json-file logs would be parsed as CRI and all flagged."""
    parser = parse.Parser("auto", config.ParsersConfig())
    records = Feeder(parser).feed([DOCKER_LINE])
    assert parser.format == "docker"
    assert [(r.message, r.flags) for r in records] == [("hello", 0)]


def test_a_cri_looking_line_means_cri():
    """If this failed, CRI logs in auto mode would not be parsed."""
    parser = parse.Parser("auto", config.ParsersConfig())
    assert parser.format == "auto"
    records = Feeder(parser).feed([CRI_LINE])
    assert parser.format == "cri"
    assert [(r.message, r.flags) for r in records] == [("hello", 0)]


def test_lines_before_the_first_recognisable_one_are_kept_as_parse_errors():
    """If this failed, a file starting with junk would lose those lines or never be detected."""
    parser = parse.Parser("auto", config.ParsersConfig())
    feeder = Feeder(parser)
    records = feeder.feed([b"", b"junk", b"  "])
    assert parser.format == "auto"
    assert [r.flags for r in records] == [parse.PARSE_ERROR] * 3
    assert [r.end_offset for r in records] == [1, 6, 9]
    records = feeder.feed([b"more junk", CRI_LINE, b"2024-05-01T12:00:00.2Z stderr P x"])
    assert parser.format == "cri"
    assert [(r.message, r.flags) for r in records] == [
        ("more junk", parse.PARSE_ERROR),
        ("hello", 0),
    ]
    assert parser.safe_offset(feeder.offset) == feeder.starts[-1]


def test_the_detected_format_sticks():
    """If this failed, one odd line could switch a file's format and misparse the rest."""
    records = parse_all("auto", [CRI_LINE, DOCKER_LINE, CRI_LINE])
    assert [r.flags for r in records] == [0, parse.PARSE_ERROR, 0]
    records = parse_all("auto", [DOCKER_LINE, CRI_LINE])
    assert [r.flags for r in records] == [0, parse.PARSE_ERROR]


def test_an_unknown_format_is_refused_when_the_parser_is_made():
    """If this failed, a typo in a format would only show as a crash on the first line read."""
    with pytest.raises(ValueError, match="unknown log format"):
        parse.Parser("syslog", config.ParsersConfig())  # type: ignore[arg-type]
