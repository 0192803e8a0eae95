"""Query tree → an SQL condition over the embedded store, with every value a parameter.

The text of the condition comes only from this module (column names, fixed SQL); what the
user typed travels in the parameter list — values, wildcard patterns, JSON paths and FTS5
phrases alike. The semantics follow the Elasticsearch translation (``_dsl``):

- a field with a column (``store.FIELD_COLUMNS``) compares the column; any other field is
  looked up in the document's JSON, matching any element of a list (like a keyword field);
  lists on the way fan out as Elasticsearch flattens arrays of objects
  (``kubernetes.audit.requestObject.spec.containers.image`` is every container's image);
- as in Elasticsearch, a key that holds dots is the same field as nested keys: a field
  name with a ``/`` (a Kubernetes label, annotation or ``user.extra`` key,
  ``kubernetes.audit.user.extra.authentication.kubernetes.io/pod-name``) is also looked
  up with its last names joined into one key, from the one holding the ``/`` back to the
  first, so the dotted key the apiserver wrote is found. A document that has the plain
  path costs one lookup; the others are walked;
- free text is an FTS5 phrase over ``message`` (a trailing ``*`` makes the last word a prefix);
- a missing field matches no term, so ``NOT field:x`` keeps documents without the field.
  Leaves are NULL for a missing column; ``NOT`` turns that into "no match" first.
"""

from __future__ import annotations

from typing import Any

from kloghub import store
from kloghub.search import _query

__all__ = ["glob", "json_keys", "json_path", "translate"]

# A JSON value compared as the text Elasticsearch would compare: true/false, numbers as
# written; any element of a list matches.
_VALUE = (
    "(CASE j.type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' "
    "WHEN 'null' THEN NULL ELSE CAST(j.value AS TEXT) END)"
)
_TESTS = {"=": f"{_VALUE} = ?", "GLOB": f"{_VALUE} GLOB ?", "EXISTS": "j.type != 'null'"}
_TEXT = "seq IN (SELECT rowid FROM events_fts WHERE events_fts MATCH ?)"


def _key(name: str) -> str:
    return f'$."{name}"'  # field names never hold a double quote


def json_path(field: str) -> str:
    """``a.b.c`` → ``$."a"."b"."c"``."""
    return "$" + "".join(f'."{key}"' for key in field.split("."))


def json_keys(field: str) -> list[list[str]]:
    """The key sequences ``field`` can stand for: its names, then (for a name with a
    ``/``) the names from the one holding the ``/`` on, and more before it, as one key
    (``a.b.c/d`` → ``[a, b, c/d]``, ``[a, b.c/d]``, ``[a.b.c/d]``)."""
    parts = field.split(".")
    out = [parts]
    slash = next((i for i, part in enumerate(parts) if "/" in part), None)
    if slash is not None:
        out += [
            [*parts[:start], ".".join(parts[start:])]
            for start in range(min(slash, len(parts) - 2), -1, -1)
        ]
    return out


def _walk(keys: list[str]) -> tuple[str, list[str]]:
    """``FROM`` items (and their parameters) that reach every value at ``keys`` as
    Elasticsearch does: a list on the way fans out (``spec.containers.image`` is the image
    of every container); the last key's items are ``j`` (a list there: each element)."""
    items: list[str] = []
    params: list[str] = []
    node = "events.doc"
    for n, key in enumerate(keys[:-1]):
        items.append(
            f"json_each(CASE json_type({node}, ?) WHEN 'array' THEN json_extract({node}, ?) "
            f"ELSE json_array(json_extract({node}, ?)) END) AS s{n}"
        )
        params += [_key(key)] * 3
        node = f"(CASE s{n}.type WHEN 'object' THEN s{n}.value ELSE '{{}}' END)"
    items.append(f"json_each({node}, ?) AS j")
    params.append(_key(keys[-1]))
    return ", ".join(items), params


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
        return self._json(field, op, value)

    def _exists(self, field: str) -> str:
        if field == store.TIME_FIELD:
            return "1"
        column = store.FIELD_COLUMNS.get(field)
        if column is not None:
            return f"{column} IS NOT NULL"
        return self._json(field, "EXISTS", None)

    def _json(self, field: str, op: str, value: str | None) -> str:
        """The test on the document's JSON: at the plain path when it is there (one
        lookup), else through lists and keys that hold dots."""
        test = _TESTS[op]
        values = [] if value is None else [value]
        # The last name, as the document's text holds it at the end of any key it can be
        # (orjson writes these ASCII names as they are): without it there is nothing to walk.
        last = field.rsplit(".", 1)[-1] + '"'
        self.add(json_path(field), json_path(field), *values, last)
        # S608: the SQL text is this module's (_TESTS, _walk); user text is in parameters.
        plain = f"EXISTS (SELECT 1 FROM json_each(events.doc, ?) AS j WHERE {test})"  # noqa: S608
        walks = []
        for keys in json_keys(field):
            items, params = _walk(keys)
            self.add(*params, *values)
            walks.append(f"EXISTS (SELECT 1 FROM {items} WHERE {test})")  # noqa: S608
        return (
            f"(CASE WHEN json_type(events.doc, ?) IS NOT NULL THEN {plain} "
            f"WHEN instr(events.doc, ?) = 0 THEN 0 ELSE ({' OR '.join(walks)}) END)"
        )

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
