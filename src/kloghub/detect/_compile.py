"""kloghub's Sigma backend: a rule's condition tree → a predicate over an ECS document.

pySigma parses the rule, applies the processing pipeline and expands modifiers; what
reaches this module is the condition tree (``and``/``or``/``not`` of "field equals
value" leaves, with ``1 of``/``all of``, lists and ``|all`` already expanded). Each leaf
compiles once, at load, to a plain closure; the per-event work is dictionary lookups and
string comparisons.

Semantics, as Sigma defines them and the SIEM backends implement them:

- strings compare case-insensitively (``|cased`` makes them exact); ``*`` and ``?`` are
  wildcards; numbers and booleans compare with the field's value or its text;
- a field holding a list matches when one of its items does (ECS arrays);
- ``|re`` searches (not anchored) with the rule's flags; ``|cidr`` matches an IP address
  inside the network; ``|exists`` tests presence; ``null`` matches a missing or null field;
  ``|lt``/``|lte``/``|gt``/``|gte`` compare numbers.

Refused (:class:`UnsupportedError`): keywords without a field (full-text search has no
meaning on one document here), field references (``|fieldref``), placeholders
(``|expand``), value expansions (``|windash``, ``|base64offset``) and query expressions.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from sigma import conditions as sc
from sigma import types as st

__all__ = ["Matcher", "UnsupportedError", "compile_condition", "lookup", "required", "values"]

Matcher = Callable[[Mapping[str, Any]], bool]

_MISSING = object()


class UnsupportedError(ValueError):
    """A construct this backend does not evaluate; the message says which."""


def lookup(doc: Mapping[str, Any], path: str) -> Any:
    """The value at the dotted ``path`` of ``doc`` (``_MISSING`` when absent).

    Lists on the way fan out (the result is then the list of what each item holds), and a
    key that itself holds dots (``app.kubernetes.io/name``) is found when the plain walk
    misses.
    """
    return _walk(doc, path.split("."), 0)


def _walk(node: Any, parts: list[str], i: int) -> Any:
    while i < len(parts):
        if isinstance(node, Mapping):
            child = node.get(parts[i], _MISSING)
            if child is _MISSING:
                for j in range(i + 2, len(parts) + 1):
                    child = node.get(".".join(parts[i:j]), _MISSING)
                    if child is not _MISSING:
                        return _walk(child, parts, j)
                return _MISSING
            node = child
            i += 1
        elif isinstance(node, list):
            found = [v for v in (_walk(item, parts, i) for item in node) if v is not _MISSING]
            return _flatten(found) if found else _MISSING
        else:
            return _MISSING
    return node


def _flatten(items: list[Any]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if isinstance(item, list):
            out.extend(item)
        else:
            out.append(item)
    return out


def values(value: Any) -> Iterator[Any]:
    """The scalar values a looked-up value stands for (a list's items, else itself)."""
    if value is _MISSING or value is None:
        return
    if isinstance(value, list):
        for item in value:
            if item is not None:
                yield item
    else:
        yield value


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return str(value)


def _getter(field: str) -> Callable[[Mapping[str, Any]], Any]:
    """``lookup(doc, field)`` with the path split once; plain dicts all the way down (the
    normalizer's documents) take the fast walk, anything else the general one."""
    parts = field.split(".")
    # Keys holding dots that the rest of the path could be, from each position.
    dotted = [
        [(".".join(parts[i:j]), j) for j in range(i + 2, len(parts) + 1)] for i in range(len(parts))
    ]

    def get(doc: Mapping[str, Any]) -> Any:
        node: Any = doc
        for i, part in enumerate(parts):
            if type(node) is not dict:
                return _walk(node, parts, i)
            child = node.get(part, _MISSING)
            if child is _MISSING:
                for key, j in dotted[i]:
                    child = node.get(key, _MISSING)
                    if child is not _MISSING:
                        return _walk(child, parts, j)
                return _MISSING
            node = child
        return node

    return get


def _any(field: str, test: Callable[[Any], bool]) -> Matcher:
    get = _getter(field)

    def match(doc: Mapping[str, Any]) -> bool:
        value = get(doc)
        if type(value) is list:
            return any(test(v) for v in value if v is not None)
        return value is not _MISSING and value is not None and test(value)

    return match


class _Equals:
    """``field`` equals one of ``wanted`` (strings, lower-cased unless ``cased``): the leaf
    Sigma's value lists expand to, kept as a set so that an ``or`` of them on one field
    costs one lookup (:func:`_or` merges them)."""

    __slots__ = ("cased", "field", "get", "wanted")

    def __init__(self, field: str, wanted: frozenset[str], cased: bool) -> None:
        self.field, self.wanted, self.cased = field, wanted, cased
        self.get = _getter(field)

    def __call__(self, doc: Mapping[str, Any]) -> bool:
        value = self.get(doc)
        wanted, cased = self.wanted, self.cased
        if type(value) is str:
            return (value if cased else value.lower()) in wanted
        for v in values(value):
            text = _text(v)
            if (text if cased else text.lower()) in wanted:
                return True
        return False


def _string(field: str, value: st.SigmaString) -> Matcher:
    cased = isinstance(value, st.SigmaCasedString)
    if value.contains_placeholder():
        raise UnsupportedError(f"{field}: placeholders (|expand) are not supported")
    if not value.contains_special():
        plain = "".join(p for p in value.s if isinstance(p, str))  # to_plain re-escapes
        return _Equals(field, frozenset([plain if cased else plain.lower()]), cased)
    parts = list(value.s)
    wild = st.SpecialChars.WILDCARD_MULTI
    inner = parts[1:-1]
    simple = all(isinstance(p, str) for p in inner)
    if simple and len(parts) >= 2 and parts[0] == wild and parts[-1] == wild and inner:
        needle = "".join(inner)  # type: ignore[arg-type]
        return _pick(field, needle, cased, lambda t, n: n in t)
    if simple and len(parts) >= 2 and parts[-1] == wild and isinstance(parts[0], str):
        needle = "".join(parts[:-1])  # type: ignore[arg-type]
        return _pick(field, needle, cased, str.startswith)
    if simple and len(parts) >= 2 and parts[0] == wild and isinstance(parts[-1], str):
        needle = "".join(parts[1:])  # type: ignore[arg-type]
        return _pick(field, needle, cased, str.endswith)
    pattern = "".join(
        ".*"
        if p == wild
        else "."
        if p == st.SpecialChars.WILDCARD_SINGLE
        else re.escape(p)
        if isinstance(p, str)
        else ""
        for p in parts
    )
    compiled = re.compile(pattern, re.DOTALL | (0 if cased else re.IGNORECASE))
    return _any(field, lambda v: compiled.fullmatch(_text(v)) is not None)


def _pick(field: str, needle: str, cased: bool, op: Callable[[str, str], bool]) -> Matcher:
    if cased:
        return _any(field, lambda v: op(_text(v), needle))
    lowered = needle.lower()
    return _any(field, lambda v: op(_text(v).lower(), lowered))


def _number(field: str, value: st.SigmaNumber) -> Matcher:
    number = value.number
    text = str(number)

    def test(v: Any) -> bool:
        if isinstance(v, bool):
            return False
        if isinstance(v, int | float):
            return v == number
        return _text(v) == text

    return _any(field, test)


def _compare(field: str, value: st.SigmaCompareExpression) -> Matcher:
    number = value.number.number
    ops: dict[Any, Callable[[float, float], bool]] = {
        st.CompareOperators.LT: lambda a, b: a < b,
        st.CompareOperators.LTE: lambda a, b: a <= b,
        st.CompareOperators.GT: lambda a, b: a > b,
        st.CompareOperators.GTE: lambda a, b: a >= b,
    }
    op = ops.get(value.op)
    if op is None:
        raise UnsupportedError(f"{field}: comparison {value.op} is not supported")

    def test(v: Any) -> bool:
        if isinstance(v, bool):
            return False
        try:
            return op(float(v), float(number))
        except (TypeError, ValueError):
            return False

    return _any(field, test)


def _regex(field: str, value: st.SigmaRegularExpression) -> Matcher:
    flags = 0
    for flag in value.flags:
        flags |= {
            st.SigmaRegularExpressionFlag.IGNORECASE: re.IGNORECASE,
            st.SigmaRegularExpressionFlag.MULTILINE: re.MULTILINE,
            st.SigmaRegularExpressionFlag.DOTALL: re.DOTALL,
        }[flag]
    try:
        compiled = re.compile(value.regexp.to_plain(), flags)
    except re.error as exc:
        raise UnsupportedError(f"{field}: invalid regular expression: {exc}") from exc
    return _any(field, lambda v: compiled.search(_text(v)) is not None)


def _cidr(field: str, value: st.SigmaCIDRExpression) -> Matcher:
    network = value.network

    def test(v: Any) -> bool:
        try:
            return ipaddress.ip_address(_text(v)) in network
        except ValueError:
            return False

    return _any(field, test)


def _exists(field: str, value: st.SigmaExists) -> Matcher:
    wanted = value.exists
    get = _getter(field)

    def match(doc: Mapping[str, Any]) -> bool:
        found = get(doc)
        return (found is not _MISSING and found is not None) == wanted

    return match


def _null(field: str) -> Matcher:
    get = _getter(field)

    def match(doc: Mapping[str, Any]) -> bool:
        found = get(doc)
        return found is _MISSING or found is None

    return match


def _bool(field: str, value: st.SigmaBool) -> Matcher:
    wanted = value.boolean
    text = "true" if wanted else "false"
    return _any(field, lambda v: v is wanted or (isinstance(v, str) and v.lower() == text))


def _leaf(field: str, value: st.SigmaType) -> Matcher:  # noqa: PLR0911  (one return per Sigma type)
    if isinstance(value, st.SigmaString):
        return _string(field, value)
    if isinstance(value, st.SigmaBool):
        return _bool(field, value)
    if isinstance(value, st.SigmaNumber):
        return _number(field, value)
    if isinstance(value, st.SigmaCompareExpression):
        return _compare(field, value)
    if isinstance(value, st.SigmaRegularExpression):
        return _regex(field, value)
    if isinstance(value, st.SigmaCIDRExpression):
        return _cidr(field, value)
    if isinstance(value, st.SigmaExists):
        return _exists(field, value)
    if isinstance(value, st.SigmaNull):
        return _null(field)
    reason = {
        st.SigmaFieldReference: "field references (|fieldref)",
        st.SigmaExpansion: "value expansions (|windash, |base64offset)",
        st.SigmaQueryExpression: "query expressions",
    }.get(type(value), f"values of type {type(value).__name__}")
    raise UnsupportedError(f"{field}: {reason} are not supported")


class _Combined:
    """The ``and`` (``answer`` False) or the ``or`` (``answer`` True) of matchers: they are
    asked in order until one answers ``answer``, which is then the whole one's answer, else
    its opposite is. Matchers answer True or False, never a mere truthy value. Kept
    inspectable: :func:`required` reads it."""

    __slots__ = ("answer", "matchers")

    def __init__(self, matchers: list[Matcher], *, answer: bool) -> None:
        self.matchers = tuple(matchers)
        self.answer = answer

    def __call__(self, doc: Mapping[str, Any]) -> bool:
        answer = self.answer
        for m in self.matchers:  # a loop: half the cost of all()/any() of a genexpr
            if m(doc) is answer:
                return answer
        return not answer


def _combined(matchers: list[Matcher], *, answer: bool) -> Matcher:
    if len(matchers) == 1:
        return matchers[0]
    return _Combined(matchers, answer=answer)


def _all(matchers: list[Matcher]) -> Matcher:
    return _combined(matchers, answer=False)


def required(matcher: Matcher, field: str) -> frozenset[str] | None:
    """The values ``field`` must hold (lower-cased) for ``matcher`` to hold, when its
    condition says so at the top (``field: value`` or ``field: [values]`` and-ed with the
    rest); None when it does not. Lets a caller skip the rules a document cannot match."""
    if isinstance(matcher, _Equals):
        return matcher.wanted if matcher.field == field and not matcher.cased else None
    if isinstance(matcher, _Combined) and not matcher.answer:
        for m in matcher.matchers:
            found = required(m, field)
            if found is not None:
                return found
    return None


def _or(matchers: list[Matcher]) -> Matcher:
    merged: dict[tuple[str, bool], _Equals] = {}
    rest: list[Matcher] = []
    for m in matchers:
        if isinstance(m, _Equals):
            key = (m.field, m.cased)
            known = merged.get(key)
            merged[key] = m if known is None else _Equals(m.field, known.wanted | m.wanted, m.cased)
        else:
            rest.append(m)
    return _combined([*merged.values(), *rest], answer=True)


def compile_condition(node: Any) -> Matcher:
    """The predicate of a postprocessed pySigma condition tree (``UnsupportedError`` if not)."""
    if isinstance(node, sc.ConditionAND):
        return _all([compile_condition(arg) for arg in node.args])
    if isinstance(node, sc.ConditionOR):
        return _or([compile_condition(arg) for arg in node.args])
    if isinstance(node, sc.ConditionNOT):
        inner = compile_condition(node.args[0])
        return lambda doc: not inner(doc)
    if isinstance(node, sc.ConditionFieldEqualsValueExpression):
        return _leaf(node.field, node.value)
    if isinstance(node, sc.ConditionValueExpression):
        raise UnsupportedError(f"keyword {node.value}: values without a field are not supported")
    raise UnsupportedError(f"condition element {type(node).__name__} is not supported")
