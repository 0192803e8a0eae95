"""Kubernetes label selectors: ``app=web,tier!=cache,env in (prod,staging),!canary``.

The syntax and meaning of ``kubectl -l`` / ``labelSelector`` (apimachinery's
``labels.Parse``): requirements joined by commas, all of which must hold.

==================  =========================================================
``k``               the label exists
``!k``              the label does not exist
``k=v``, ``k==v``   the label exists and equals ``v``
``k!=v``            the label does not exist, or differs from ``v``
``k in (a,b)``      the label exists and is one of the values
``k notin (a,b)``   the label does not exist, or is none of the values
==================  =========================================================

Keys are ``[prefix/]name`` (prefix a DNS subdomain, name up to 63 characters of
``[A-Za-z0-9._-]`` starting and ending alphanumeric); values are empty or like names.
The numeric ``<``/``>`` operators of the internal parser are not part of the API's
selectors and are refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["LabelSelector"]

_TOKEN = re.compile(r"\s*(!=|==|=|!|,|\(|\)|[^\s!=,()]+)")
_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_PREFIX = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_OPERATORS = frozenset({"!=", "==", "=", "!", ",", "(", ")"})


def _check_key(key: str) -> str:
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _PREFIX.fullmatch(prefix)):
        raise ValueError(f"invalid label key prefix in {key!r}")
    if len(name) > 63 or not _NAME.fullmatch(name):
        raise ValueError(f"invalid label key {key!r}")
    return key


def _check_value(value: str) -> str:
    if value and (len(value) > 63 or not _NAME.fullmatch(value)):
        raise ValueError(f"invalid label value {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class _Requirement:
    key: str
    op: str
    """``exists``, ``!exists``, ``=``, ``!=``, ``in``, ``notin``."""
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        op = self.op
        if op == "exists":
            return value is not None
        if op == "!exists":
            return value is None
        if op in ("=", "in"):
            return value is not None and value in self.values
        return value is None or value not in self.values  # != and notin


class LabelSelector:
    """A parsed label selector; ``matches(labels)`` is a few dict lookups."""

    __slots__ = ("requirements", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.requirements = _parse(text)

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    def __repr__(self) -> str:
        return f"LabelSelector({self.text!r})"


def _tokens(text: str) -> list[str]:
    out = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:  # pragma: no cover - the token class accepts any non-space
            raise ValueError(f"unexpected character at {pos}")
        out.append(match.group(1))
        pos = match.end()
    return out


class _Parser:
    """Recursive descent over the tokens of one selector."""

    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.i = 0

    def take(self) -> str | None:
        if self.i >= len(self.tokens):
            return None
        self.i += 1
        return self.tokens[self.i - 1]

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def identifier(self, what: str) -> str:
        tok = self.take()
        if tok is None or tok in _OPERATORS:
            raise ValueError(f"expected {what}, found {tok or 'the end'}")
        return tok

    def values(self, op: str) -> frozenset[str]:
        if self.take() != "(":
            raise ValueError(f"expected ( after {op}")
        values: set[str] = set()
        while True:
            tok = self.take()
            if tok is None or tok in _OPERATORS:
                raise ValueError(f"expected a value in {op} (...)")
            values.add(_check_value(tok))
            sep = self.take()
            if sep == ")":
                return frozenset(values)
            if sep != ",":
                raise ValueError(f"expected , or ) in {op} (...)")

    def requirement(self) -> _Requirement:
        if self.peek() == "!":
            self.take()
            return _Requirement(_check_key(self.identifier("a label key")), "!exists")
        key = _check_key(self.identifier("a label key"))
        op = self.peek()
        if op is None or op == ",":
            return _Requirement(key, "exists")
        self.take()
        if op in ("=", "==", "!="):
            nxt = self.peek()
            value = "" if nxt is None or nxt == "," else self.identifier("a value")
            return _Requirement(key, "!=" if op == "!=" else "=", frozenset({_check_value(value)}))
        if op in ("in", "notin"):
            return _Requirement(key, op, self.values(op))
        raise ValueError(f"unknown operator {op!r} after {key!r}")

    def parse(self) -> tuple[_Requirement, ...]:
        requirements: list[_Requirement] = []
        while self.i < len(self.tokens):
            requirements.append(self.requirement())
            sep = self.take()
            if sep is None:
                break
            if sep != ",":
                raise ValueError(f"expected , between requirements, found {sep!r}")
            if self.i >= len(self.tokens):
                raise ValueError("a selector cannot end with ,")
        return tuple(requirements)


def _parse(text: str) -> tuple[_Requirement, ...]:
    return _Parser(text).parse()
