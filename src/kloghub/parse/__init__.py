"""Line parsers of the tailing engine: CRI, docker json-file, text, JSON; partials; multiline.

One :class:`Parser` per tailed file turns complete lines into :class:`Record` objects.
"""

from kloghub.parse._parser import FORMATS, Format, Parser
from kloghub.parse._record import (
    FLAG_NAMES,
    INVALID_UTF8,
    MULTILINE,
    PARSE_ERROR,
    PARTIAL_JOINED,
    TRUNCATED,
    Record,
    flag_names,
)
from kloghub.parse._timestamps import parse_rfc3339

__all__ = [
    "FLAG_NAMES",
    "FORMATS",
    "INVALID_UTF8",
    "MULTILINE",
    "PARSE_ERROR",
    "PARTIAL_JOINED",
    "TRUNCATED",
    "Format",
    "Parser",
    "Record",
    "flag_names",
    "parse_rfc3339",
]
