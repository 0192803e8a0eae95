"""Query tree → an SQL condition over the embedded store, with every value a parameter.

The text of the condition comes only from this module (column names, fixed SQL); what the
user typed travels in the parameter list — values, wildcard patterns, JSON paths and FTS5
phrases alike. The semantics follow the Elasticsearch translation (``_dsl``):

- a field with a column (``store.FIELD_COLUMNS``) compares the column; any other field is
  looked up in the document's JSON, matching any element of a list (like a keyword field);
- as in Elasticsearch, a key that holds dots is the same field as nested keys: a field
  name with a ``/`` (a Kubernetes label, annotation or ``user.extra`` key,
  ``kubernetes.audit.user.extra.authentication.kubernetes.io/pod-name``) is also looked
  up with its last names joined into one key, from the one holding the ``/`` back to the
  first, so the dotted key the apiserver wrote is found;
- free text is an FTS5 phrase over ``message`` (a trailing ``*`` makes the last word a prefix);
- a missing field matches no term, so ``NOT field:x`` keeps documents without the field.
  Leaves are NULL for a missing column; ``NOT`` turns that into "no match" first.
"""

from __future__ import annotations

from typing import Any

from kloghub import store
from kloghub.search import _query

__all__ = ["glob", "json_path", "json_paths", "translate"]

# A JSON value compared as the text Elasticsearch would compare: true/false, numbers as
# written; any element of a list matches.
_JSON_EQUALS = (
    "EXISTS (SELECT 1 FROM json_each(events.doc, ?) AS j WHERE "
    "(CASE j.type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' "
    "WHEN 'null' THEN NULL ELSE CAST(j.value AS TEXT) END) = ?)"
)
_JSON_GLOB = (
    "EXISTS (SELECT 1 FROM json_each(events.doc, ?) AS j WHERE "
    "(CASE j.type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' "
    "WHEN 'null' THEN NULL ELSE CAST(j.value AS TEXT) END) GLOB ?)"
)
_JSON_COMPARE = {"=": _JSON_EQUALS, "GLOB": _JSON_GLOB}
_JSON_EXISTS = "EXISTS (SELECT 1 FROM json_each(events.doc, ?) AS j WHERE j.type != 'null')"
_TEXT = "seq IN (SELECT rowid FROM events_fts WHERE events_fts MATCH ?)"


def json_path(field: str) -> str:
    """``a.b.c`` → ``$."a"."b"."c"`` (field names never hold a double quote)."""
    return "$" + "".join(f'."{key}"' for key in field.split("."))


def json_paths(field: str) -> list[str]:
    """The JSON paths of ``field``: the plain one, then (for a name with a ``/``) the ones
    where the names from the one holding the ``/`` on, and more before it, are one key
    (``a.b.c/d`` → ``$."a"."b"."c/d"``, ``$."a"."b.c/d"``, ``$."a.b.c/d"``)."""
    parts = field.split(".")
    slash = next((i for i, part in enumerate(parts) if "/" in part), None)
    if slash is None:
        return [json_path(field)]
    paths = [json_path(field)]
    for start in range(slash, -1, -1):
        key = ".".join(parts[start:])
        if start == len(parts) - 1:
            continue  # that is the plain path
        paths.append("$" + "".join(f'."{name}"' for name in [*parts[:start], key]))
    return paths


def glob(pattern: _query.Pattern) -> str:
    """A wildcard pattern as a GLOB pattern: literal ``* ? [`` bracketed."""
    out: list[str] = []
    for part in pattern:
        if isinstance(part, _query.Wild):
            out.append(part.value)
        else:
            out.append("".join(f"[{c}]" if c in "*?[" else c for c in part))
    return "".join(out)


def _fts_phrase(text: str, prefix: bool) -> str:
    return '"' + text.replace('"', '""') + '"' + (" *" if prefix else "")


def _any(test: str, times: int) -> str:
    return test if times == 1 else "(" + " OR ".join([test] * times) + ")"


class _Builder:
    def __init__(self, now_ns: int) -> None:
        self.now_ns = now_ns
        self.params: list[Any] = []

    def add(self, *values: Any) -> None:
        self.params.extend(values)

    def build(self, node: _query.Node) -> str:  # noqa: PLR0911 - one branch per node type
        if isinstance(node, _query.All):
            return "1"
        if isinstance(node, _query.And):
            return "(" + " AND ".join(self.build(item) for item in node.items) + ")"
        if isinstance(node, _query.Or):
            return "(" + " OR ".join(self.build(item) for item in node.items) + ")"
        if isinstance(node, _query.Not):
            return f"NOT IFNULL({self.build(node.item)}, 0)"
        if isinstance(node, _query.Text):
            self.add(_fts_phrase(node.text, node.prefix))
            return _TEXT
        if isinstance(node, _query.Term):
            return self._compare(node.field, "=", node.value)
        if isinstance(node, _query.Wildcard):
            return self._compare(node.field, "GLOB", glob(node.pattern))
        if isinstance(node, _query.Exists):
            return self._exists(node.field)
        if isinstance(node, _query.TimeRange):
            return self._time(node)
        raise TypeError(f"unknown query node {node!r}")

    def _compare(self, field: str, op: str, value: str) -> str:
        column = store.FIELD_COLUMNS.get(field)
        if column is not None:
            self.add(value)
            return f"{column} {op} ?"
        paths = json_paths(field)
        for path in paths:
            self.add(path, value)
        return _any(_JSON_COMPARE[op], len(paths))

    def _exists(self, field: str) -> str:
        if field == store.TIME_FIELD:
            return "1"
        column = store.FIELD_COLUMNS.get(field)
        if column is not None:
            return f"{column} IS NOT NULL"
        paths = json_paths(field)
        self.add(*paths)
        return _any(_JSON_EXISTS, len(paths))

    def _time(self, node: _query.TimeRange) -> str:
        terms: list[str] = []
        if node.lower is not None:
            terms.append("time_ns >= ?" if node.lower_inclusive else "time_ns > ?")
            self.add(node.lower.resolve(self.now_ns))
        if node.upper is not None:
            terms.append("time_ns <= ?" if node.upper_inclusive else "time_ns < ?")
            self.add(node.upper.resolve(self.now_ns))
        return "(" + " AND ".join(terms) + ")" if terms else "1"


def translate(node: _query.Node, now_ns: int) -> tuple[str, list[Any]]:
    """The condition and its parameters, for :meth:`kloghub.store.Store.select`."""
    builder = _Builder(now_ns)
    return builder.build(node), builder.params
