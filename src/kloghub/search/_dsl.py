"""Query tree → Elasticsearch / OpenSearch query DSL, built clause by clause.

Nothing the user typed is ever parsed by the server as query syntax (no ``query_string``):
values go into ``term``, ``wildcard`` (escaped), ``match_phrase``, ``prefix`` and ``range``
clauses. Everything is in filter context: results are sorted by time, not scored.

Semantics, shared with the embedded store (``_sql``):

- ``field:value`` → ``term`` (exact, case-sensitive on keyword fields);
- ``field:pat*`` → ``wildcard``; ``field:*`` → ``exists``;
- free text → ``match_phrase`` on ``message``; a trailing ``*`` → ``prefix`` (one word, lower
  case, as the standard analyzer indexes it) or ``match_phrase_prefix`` (several words);
- time → ``range`` on ``@timestamp`` in nanoseconds (``strict_date_optional_time_nanos``).
"""

from __future__ import annotations

import re
from typing import Any

from kloghub.search import _fields, _query, _times

__all__ = ["NANOS_FORMAT", "translate", "wildcard"]

NANOS_FORMAT = "strict_date_optional_time_nanos"
_ONE_WORD = re.compile(r"\w+")
_PHRASE_PREFIX_EXPANSIONS = 1000
"""How many words a multi-word prefix may expand to (Elasticsearch's default is 50)."""


def wildcard(pattern: _query.Pattern) -> str:
    """A wildcard pattern in Lucene's syntax: literal ``* ? \\`` escaped with ``\\``."""
    out: list[str] = []
    for part in pattern:
        if isinstance(part, _query.Wild):
            out.append(part.value)
        else:
            out.append("".join(f"\\{c}" if c in "*?\\" else c for c in part))
    return "".join(out)


def _text(node: _query.Text) -> dict[str, Any]:
    field = _fields.TEXT_FIELD
    if not node.prefix:
        return {"match_phrase": {field: {"query": node.text}}}
    if _ONE_WORD.fullmatch(node.text):
        return {"prefix": {field: {"value": node.text.lower()}}}
    return {
        "match_phrase_prefix": {
            field: {"query": node.text, "max_expansions": _PHRASE_PREFIX_EXPANSIONS}
        }
    }


def time_range(node: _query.TimeRange, now_ns: int) -> dict[str, Any]:
    bounds: dict[str, Any] = {"format": NANOS_FORMAT}
    if node.lower is not None:
        key = "gte" if node.lower_inclusive else "gt"
        bounds[key] = _times.format_ns(node.lower.resolve(now_ns))
    if node.upper is not None:
        key = "lte" if node.upper_inclusive else "lt"
        bounds[key] = _times.format_ns(node.upper.resolve(now_ns))
    return {"range": {_fields.TIME_FIELD: bounds}}


def translate(node: _query.Node, now_ns: int) -> dict[str, Any]:  # noqa: PLR0911
    """The ``query`` object of a search request."""
    if isinstance(node, _query.All):
        return {"match_all": {}}
    if isinstance(node, _query.And):
        return {"bool": {"filter": [translate(item, now_ns) for item in node.items]}}
    if isinstance(node, _query.Or):
        return {
            "bool": {
                "should": [translate(item, now_ns) for item in node.items],
                "minimum_should_match": 1,
            }
        }
    if isinstance(node, _query.Not):
        return {"bool": {"must_not": [translate(node.item, now_ns)]}}
    if isinstance(node, _query.Text):
        return _text(node)
    if isinstance(node, _query.Term):
        return {"term": {node.field: {"value": node.value}}}
    if isinstance(node, _query.Wildcard):
        return {"wildcard": {node.field: {"value": wildcard(node.pattern)}}}
    if isinstance(node, _query.Exists):
        return {"exists": {"field": node.field}}
    if isinstance(node, _query.TimeRange):
        return time_range(node, now_ns)
    raise TypeError(f"unknown query node {node!r}")
