"""The query language: one syntax, parsed once, translated for every backend.

Grammar (``OR`` binds loosest, then ``AND`` — explicit or implied by a space — then ``NOT``)::

    query   := or
    or      := and ("OR" and)*
    and     := not (["AND"] not)*
    not     := ("NOT" | "-") not | primary
    primary := "(" or ")" | FIELD ":" value | WORD | "PHRASE"
    value   := WORD | "PHRASE" | "(" values ")" | range | (">" | ">=" | "<" | "<=") WHEN
    range   := ("[" | "{") WHEN "TO" WHEN ("]" | "}")     # [ ] inclusive, { } exclusive

- A bare ``WORD`` or ``"PHRASE"`` is free text: the words of ``message`` (case-insensitive,
  whole words; ``time*`` matches words starting with ``time``).
- ``field:value`` is an exact, case-sensitive match on the field; ``*`` (any characters)
  and ``?`` (one character) are wildcards; ``field:*`` means the field exists;
  ``field:"..."`` is exact with no wildcards. ``message:`` is free text.
- Only ``@timestamp`` takes ranges and comparisons: ``@timestamp:[now-1h TO now]``,
  ``@timestamp:>=2026-11-27T06:00:00Z``; ``*`` leaves a side open; ``15m`` is ``now-15m``.
- ``\\`` escapes the next character (``\\*``, ``\\:``, ``\\(``, ``\\"``, a space).
- ``AND``, ``OR``, ``NOT`` and ``TO`` are operators only in capitals.

Errors are :class:`QueryError` with the column they point at.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field

from kloghub.search import _fields, _times

__all__ = [
    "All",
    "And",
    "Exists",
    "Node",
    "Not",
    "Or",
    "QueryError",
    "Term",
    "Text",
    "TimeRange",
    "Wild",
    "Wildcard",
    "has_time_range",
    "parse",
    "pattern_of",
]


class QueryError(ValueError):
    """A query (or option) that cannot be understood; ``pos`` is its 0-based column."""

    def __init__(self, message: str, pos: int, text: str = "", source: str = "query") -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos
        self.text = text
        self.source = source

    def render(self) -> str:
        """The message, the text on one line, and a caret under the offending column."""
        if not self.text:
            return f"{self.source}: {self.message}"
        line = "".join(" " if c in "\t\r\n" else c for c in self.text)
        caret = " " * min(self.pos, len(line)) + "^"
        return f"{self.source}, column {self.pos + 1}: {self.message}\n  {line}\n  {caret}"


# --------------------------------------------------------------------------- the tree


class Wild(enum.Enum):
    STAR = "*"
    ONE = "?"


Pattern = tuple[str | Wild, ...]


class Node:
    """A node of a parsed query."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class All(Node):
    """Everything."""


@dataclass(frozen=True, slots=True)
class And(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not(Node):
    item: Node


@dataclass(frozen=True, slots=True)
class Text(Node):
    """Free text in ``message``: the words of ``text`` in this order; ``prefix``: the last
    word may continue."""

    text: str
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class Term(Node):
    """``field`` equals ``value`` exactly (case-sensitive; any element of a list)."""

    field: str
    value: str


@dataclass(frozen=True, slots=True)
class Wildcard(Node):
    field: str
    pattern: Pattern


@dataclass(frozen=True, slots=True)
class Exists(Node):
    field: str


@dataclass(frozen=True, slots=True)
class TimeRange(Node):
    """``@timestamp`` between two instants (either may be open)."""

    lower: _times.Instant | None = None
    upper: _times.Instant | None = None
    lower_inclusive: bool = True
    upper_inclusive: bool = False


def has_time_range(node: Node) -> bool:
    if isinstance(node, TimeRange):
        return True
    if isinstance(node, And | Or):
        return any(has_time_range(item) for item in node.items)
    if isinstance(node, Not):
        return has_time_range(node.item)
    return False


# --------------------------------------------------------------------------- tokens


class _Kind(enum.Enum):
    LPAREN = "("
    RPAREN = ")"
    AND = "AND"
    OR = "OR"
    NOT = "NOT"
    WORD = "word"
    PHRASE = "phrase"
    FIELD = "field"
    RANGE = "range"
    COMPARE = "comparison"
    END = "end of the query"


@dataclass(slots=True)
class _Token:
    kind: _Kind
    pos: int
    end: int
    text: str = ""
    chars: list[tuple[str, bool]] = field(default_factory=list)
    """WORD: its characters, each with "was escaped"."""
    bounds: tuple[tuple[str, int], tuple[str, int]] | None = None
    """RANGE: (lower, its column), (upper, its column); COMPARE: ((op, col), (value, col))."""
    inclusive: tuple[bool, bool] = (True, True)


_OPERATORS = {"AND": _Kind.AND, "OR": _Kind.OR, "NOT": _Kind.NOT}
_STOP = frozenset('()"')


class _Lexer:
    def __init__(self, text: str) -> None:
        self.text = text

    def error(self, message: str, pos: int) -> QueryError:
        return QueryError(message, pos, self.text)

    def tokens(self) -> Iterator[_Token]:
        text, n = self.text, len(self.text)
        i = 0
        after_field: _Token | None = None
        while i < n:
            c = text[i]
            if after_field is not None:
                if c.isspace():
                    raise self.error(
                        f"expected a value right after '{after_field.text}:' (no space)", i
                    )
                if c in "[{":
                    token = self._range(i)
                    yield token
                    i, after_field = token.end, None
                    continue
                if c in "<>":
                    token = self._compare(i)
                    yield token
                    i, after_field = token.end, None
                    continue
                if c == ")":
                    raise self.error(f"expected a value after '{after_field.text}:'", i)
            if c.isspace():
                i += 1
                continue
            if c in "()":
                yield _Token(_Kind.LPAREN if c == "(" else _Kind.RPAREN, i, i + 1)
                i, after_field = i + 1, None
                continue
            if c == '"':
                token = self._phrase(i)
                yield token
                i, after_field = token.end, None
                continue
            if c == "-" and after_field is None and i + 1 < n and text[i + 1] not in " \t\n)":
                yield _Token(_Kind.NOT, i, i + 1, "-")
                i += 1
                continue
            token = self._word(i, in_value=after_field is not None)
            yield token
            i = token.end
            after_field = token if token.kind is _Kind.FIELD else None
        if after_field is not None:
            raise self.error(f"expected a value after '{after_field.text}:'", n)
        yield _Token(_Kind.END, n, n)

    def _word(self, start: int, in_value: bool) -> _Token:
        text, n = self.text, len(self.text)
        chars: list[tuple[str, bool]] = []
        i = start
        while i < n:
            c = text[i]
            if c == "\\":
                if i + 1 >= n:
                    raise self.error("a backslash at the end escapes nothing", i)
                chars.append((text[i + 1], True))
                i += 2
                continue
            if c.isspace() or c in _STOP:
                break
            if c == ":" and not in_value and all(not escaped for _, escaped in chars):
                name = "".join(ch for ch, _ in chars)
                if _fields.is_field_name(name):
                    return _Token(_Kind.FIELD, start, i + 1, name)
            chars.append((c, False))
            i += 1
        word = "".join(ch for ch, _ in chars)
        if not in_value and word in _OPERATORS and all(not e for _, e in chars):
            return _Token(_OPERATORS[word], start, i, word)
        return _Token(_Kind.WORD, start, i, word, chars)

    def _phrase(self, start: int) -> _Token:
        text, n = self.text, len(self.text)
        out: list[str] = []
        i = start + 1
        while i < n:
            c = text[i]
            if c == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if c == '"':
                return _Token(_Kind.PHRASE, start, i + 1, "".join(out))
            out.append(c)
            i += 1
        raise self.error('this quote is never closed; add a closing "', start)

    def _range(self, start: int) -> _Token:
        text = self.text
        closers = [p for p in (text.find("]", start), text.find("}", start)) if p >= 0]
        if not closers:
            raise self.error(
                "this range is never closed; add ] (inclusive) or } (exclusive)", start
            )
        close = min(closers)
        parts: list[tuple[str, int]] = []
        i = start + 1
        while i < close:
            if text[i].isspace():
                i += 1
                continue
            j = i
            while j < close and not text[j].isspace():
                j += 1
            parts.append((text[i:j], i))
            i = j
        if len(parts) != 3 or parts[1][0] != "TO":
            pos = parts[1][1] if len(parts) >= 2 and parts[1][0] != "TO" else start
            raise self.error("a range reads [FROM TO UNTIL], e.g. [now-1h TO now]", pos)
        return _Token(
            _Kind.RANGE,
            start,
            close + 1,
            text[start : close + 1],
            bounds=(parts[0], parts[2]),
            inclusive=(text[start] == "[", text[close] == "]"),
        )

    def _compare(self, start: int) -> _Token:
        text, n = self.text, len(self.text)
        op_end = start + 2 if text[start + 1 : start + 2] == "=" else start + 1
        j = op_end
        while j < n and not text[j].isspace() and text[j] != ")":
            j += 1
        if j == op_end:
            raise self.error(f"expected a time after '{text[start:op_end]}'", op_end)
        return _Token(
            _Kind.COMPARE,
            start,
            j,
            text[start:j],
            bounds=((text[start:op_end], start), (text[op_end:j], op_end)),
        )


# --------------------------------------------------------------------------- parser


class _Parser:
    def __init__(self, text: str) -> None:
        self.lexer = _Lexer(text)
        self.tokens = list(self.lexer.tokens())
        self.i = 0

    @property
    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def error(self, message: str, pos: int) -> QueryError:
        return self.lexer.error(message, pos)

    def parse(self) -> Node:
        if self.peek.kind is _Kind.END:
            return All()
        node = self.or_(None)
        token = self.peek
        if token.kind is _Kind.RPAREN:
            raise self.error("this ')' closes nothing", token.pos)
        if token.kind is not _Kind.END:  # pragma: no cover - the loops consume everything
            raise self.error(f"unexpected {token.kind.value}", token.pos)
        return node

    def or_(self, field_name: str | None) -> Node:
        items = [self.and_(field_name)]
        while self.peek.kind is _Kind.OR:
            self.take()
            items.append(self.and_(field_name))
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_(self, field_name: str | None) -> Node:
        items = [self.not_(field_name)]
        while self.peek.kind not in (_Kind.OR, _Kind.RPAREN, _Kind.END):
            if self.peek.kind is _Kind.AND:
                self.take()
            items.append(self.not_(field_name))
        return items[0] if len(items) == 1 else And(tuple(items))

    def not_(self, field_name: str | None) -> Node:
        if self.peek.kind is _Kind.NOT:
            self.take()
            return Not(self.not_(field_name))
        return self.primary(field_name)

    def primary(self, field_name: str | None) -> Node:
        token = self.take()
        kind = token.kind
        if kind is _Kind.LPAREN:
            node = self.or_(field_name)
            if self.peek.kind is not _Kind.RPAREN:
                raise self.error("this '(' is never closed; add a ')'", token.pos)
            self.take()
            return node
        if kind is _Kind.FIELD:
            if field_name is not None:
                raise self.error(
                    f"a field inside the group of '{field_name}:'; close the group first",
                    token.pos,
                )
            return self.value(token)
        if kind in (_Kind.WORD, _Kind.PHRASE):
            return _leaf(self.lexer, field_name, token)
        if kind is _Kind.END:
            raise self.error("the query ends where a term was expected", token.pos)
        if kind is _Kind.RPAREN:
            raise self.error("expected a term before this ')'", token.pos)
        raise self.error(f"'{token.text}' needs a term before it", token.pos)

    def value(self, field_token: _Token) -> Node:
        name = _fields.resolve(field_token.text)
        token = self.peek
        if token.kind is _Kind.LPAREN:
            self.take()
            node = self.or_(name)
            if self.peek.kind is not _Kind.RPAREN:
                raise self.error("this '(' is never closed; add a ')'", token.pos)
            self.take()
            return node
        if token.kind in (_Kind.WORD, _Kind.PHRASE, _Kind.RANGE, _Kind.COMPARE):
            self.take()
            return _leaf(self.lexer, name, token, field_token)
        raise self.error(f"expected a value after '{field_token.text}:'", field_token.end)


def pattern_of(chars: list[tuple[str, bool]]) -> Pattern:
    """Characters (with "was escaped") → literal runs and wildcards."""
    parts: list[str | Wild] = []
    run: list[str] = []
    for c, escaped in chars:
        if not escaped and c in "*?":
            if run:
                parts.append("".join(run))
                run = []
            parts.append(Wild.STAR if c == "*" else Wild.ONE)
        else:
            run.append(c)
    if run:
        parts.append("".join(run))
    return tuple(parts)


def _leaf(
    lexer: _Lexer, name: str | None, token: _Token, field_token: _Token | None = None
) -> Node:
    at = token.pos
    shown = field_token.text if field_token is not None else name
    if name == _fields.TIME_FIELD:
        return _time_leaf(lexer, token)
    if token.kind in (_Kind.RANGE, _Kind.COMPARE):
        raise lexer.error(
            f"ranges and comparisons work on @timestamp only, not on '{shown}'",
            token.pos,
        )
    if name is None or name == _fields.TEXT_FIELD:
        return _text_leaf(lexer, token, exists_ok=name is not None)
    if token.kind is _Kind.PHRASE:
        return Term(name, token.text)
    pattern = pattern_of(token.chars)
    if pattern == (Wild.STAR,):
        return Exists(name)
    if all(isinstance(part, str) for part in pattern):
        return Term(name, "".join(part for part in pattern if isinstance(part, str)))
    if not pattern:  # pragma: no cover - a WORD has at least one character
        raise lexer.error("empty value", at)
    return Wildcard(name, pattern)


def _text_leaf(lexer: _Lexer, token: _Token, exists_ok: bool) -> Node:
    if token.kind is _Kind.PHRASE:
        if not any(c.isalnum() for c in token.text):
            raise lexer.error("this phrase has no word to look for", token.pos)
        return Text(token.text)
    pattern = pattern_of(token.chars)
    if pattern == (Wild.STAR,):
        return Exists(_fields.TEXT_FIELD) if exists_ok else All()
    prefix = pattern[-1] is Wild.STAR
    body = pattern[:-1] if prefix else pattern
    for part in body:
        if isinstance(part, Wild):
            offset = _wild_offset(token)
            raise lexer.error(
                "in free text only a trailing * works (words starting with ...); "
                "use field:pattern for wildcards in exact fields",
                offset,
            )
    text = "".join(part for part in body if isinstance(part, str))
    if not any(c.isalnum() for c in text):
        raise lexer.error(
            f"'{token.text}' has no word to look for; quote it or escape it", token.pos
        )
    return Text(text, prefix)


def _wild_offset(token: _Token) -> int:
    """Column of the first wildcard that is not the trailing ``*``."""
    pos = token.pos
    last = len(token.chars) - 1
    for i, (c, escaped) in enumerate(token.chars):
        if not escaped and c in "*?" and not (i == last and c == "*"):
            return pos
        pos += 2 if escaped else 1
    return token.pos


def _time_leaf(lexer: _Lexer, token: _Token) -> Node:
    if token.kind is _Kind.RANGE:
        assert token.bounds is not None
        (low, low_at), (high, high_at) = token.bounds
        return TimeRange(
            _instant(lexer, low, low_at),
            _instant(lexer, high, high_at),
            lower_inclusive=token.inclusive[0],
            upper_inclusive=token.inclusive[1],
        )
    if token.kind is _Kind.COMPARE:
        assert token.bounds is not None
        (op, _), (value, value_at) = token.bounds
        instant = _instant(lexer, value, value_at)
        if instant is None:
            raise lexer.error(f"'{op}' needs a time, not *", value_at)
        if op.startswith(">"):
            return TimeRange(lower=instant, lower_inclusive=op == ">=")
        return TimeRange(upper=instant, upper_inclusive=op == "<=")
    if token.kind is _Kind.WORD and token.text == "*":
        return Exists(_fields.TIME_FIELD)
    raise lexer.error(
        "@timestamp takes a range or a comparison, e.g. @timestamp:[now-1h TO now] or "
        "@timestamp:>=2026-11-27T06:00:00Z",
        token.pos,
    )


def _instant(lexer: _Lexer, text: str, pos: int) -> _times.Instant | None:
    if text == "*":
        return None
    try:
        return _times.parse_instant(text, bare_duration_is_ago=True)
    except ValueError as exc:
        raise lexer.error(str(exc), pos) from None


def parse(text: str) -> Node:
    """Parse ``text``; :class:`QueryError` points at what is wrong. Empty means everything."""
    return _Parser(text).parse()
