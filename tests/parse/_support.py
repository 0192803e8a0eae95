"""Helpers for the parser tests: feed lines the way the tailer does and read the results."""

from __future__ import annotations

from pathlib import Path

from kloghub import config, parse

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

READ_NS = 1_800_000_000_000_000_000
"""A read time far from every timestamp in the tests, so that a fallback to it shows."""


def parsers_config(**multiline: object) -> config.ParsersConfig:
    """A ParsersConfig; keyword arguments go to its MultilineConfig."""
    return config.ParsersConfig(multiline=config.MultilineConfig(**multiline))


def ends_of(lines: list[bytes], start: int = 0) -> list[int]:
    """The end offsets the tailer computes: each line plus its newline."""
    ends = []
    offset = start
    for line in lines:
        offset += len(line) + 1
        ends.append(offset)
    return ends


class Feeder:
    """Feeds one parser line batches as consecutive parts of one file."""

    def __init__(self, parser: parse.Parser) -> None:
        self.parser = parser
        self.offset = 0
        self.starts: list[int] = []
        """Start offset of every line fed so far, in order."""

    def feed(
        self,
        lines: list[bytes],
        now_ns: int = READ_NS,
        truncated: set[int] | None = None,
        lengths: list[int] | None = None,
    ) -> list[parse.Record]:
        """``lengths``: the lines' lengths in the file, when the tailer cut them."""
        ends = []
        for index, line in enumerate(lines):
            self.starts.append(self.offset)
            self.offset += (lengths[index] if lengths else len(line)) + 1
            ends.append(self.offset)
        return self.parser.feed(lines, ends, now_ns, truncated)


def parse_all(
    fmt: parse.Format,
    lines: list[bytes],
    cfg: config.ParsersConfig | None = None,
    now_ns: int = READ_NS,
) -> list[parse.Record]:
    """Everything ``lines`` give, including what a forced flush releases."""
    parser = parse.Parser(fmt, cfg or config.ParsersConfig())
    records = parser.feed(lines, ends_of(lines), now_ns)
    return records + parser.flush(now_ns, force=True)
