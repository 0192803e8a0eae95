"""Secret redaction in messages: the secret is replaced with ``[REDACTED]``, its context kept.

Built-in kinds (``RedactionConfig.builtin``), each written to catch real secrets and not
the words around them:

``bearer_token``
    ``Bearer <token>`` (a token of 8+ characters with a digit, or 20+), and
    ``Authorization: Basic <base64>``. "bearer token expired" stays.
``jwt``
    ``eyJ<header>.eyJ<payload>.<signature>`` (the signature may be empty).
``aws_access_key``
    Access key ids: ``AKIA``/``ASIA``/``ABIA``/``ACCA``/``A3T?`` and 16 base32 characters.
``url_password``
    ``scheme://user:<password>@host``: only the password goes.
``key_value_secret``
    ``password=``, ``passwd=``, ``secret=``, ``token=``, ``api_key=``, ``access_key=``,
    ``private_key=``, ``credentials=`` (also any key ending so: ``db_password``,
    ``client_secret``, ``X-Api-Key``), as ``key=value``, ``key="value"``, JSON
    ``"key": "value"`` and ``key: "value"``. ``key: value`` without quotes counts only
    when the value looks like a secret (8+ characters, letters and digits): "failed to
    refresh token: connection refused" stays, and so does "password reset email sent".

Custom ``patterns`` redact their whole match, or their first group when they have one.

Only ``record["log"]`` changes (and ``kloghub.raw``, the original bytes of a line that was
not UTF-8): offsets in ``kloghub`` are never touched. Each redaction is counted in
``kloghub_redactions{kind}``.

Speed (the per-event call is on the hot path): each kind's pattern starts with a literal
(its hints); the hints are found with ``str.find`` and the pattern is only tried there,
anchored. The case-insensitive kinds look at the lower-cased message (same indexes when
lower-casing keeps the length, else a slower case-insensitive scan). A message without a
hint costs one ``lower()`` and a few ``find`` calls. ``bench/enrich_bench.py`` measures it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kloghub import core
from kloghub.runtime import metrics

__all__ = ["BUILTIN", "REDACTED", "Redactor"]

REDACTED = "[REDACTED]"

_KEYS = (
    r"(?:passw(?:or)?d|secret|token|credentials?"
    r"|(?:(?<=api)|(?<=api[_-])|(?<=access)|(?<=access[_-])|(?<=private)|(?<=private[_-]))key)"
)
_UNQUOTED = r"[^\s&,;\"'<>{}\[\]()]+"
_SECRETLIKE = r"(?=[^\s,;]*[0-9])(?=[^\s,;]*[a-z])[^\s,;\"'{}\[\]]{8,}"
_WORD = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


@dataclass(frozen=True)
class _Kind:
    name: str
    pattern: str
    """Groups ``v``..``z`` hold the part replaced (the whole match when there is none)."""
    lower: bool
    """Matched against the lower-cased message (the pattern is written in lower case)."""
    hints: tuple[str, ...]
    """Where a match can start: the pattern is only tried at these substrings."""
    word_start: bool = True
    """The match must not continue a word to its left."""
    hint_pattern: str | None = None
    """Used instead of ``hints`` when one regex is cheaper than several ``find`` loops."""


_KINDS = (
    _Kind(
        "bearer_token",
        r"bearer\s+(?P<v>(?=[a-z0-9._~+/-]*[0-9])[a-z0-9._~+/-]{8,}=*|[a-z0-9._~+/-]{20,}=*)",
        lower=True,
        hints=("bearer",),
    ),
    _Kind(
        "bearer_token",
        r"authorization[\"']?\s*[:=]\s*[\"']?basic\s+(?P<v>[a-z0-9+/]{8,}={0,2})",
        lower=True,
        hints=("authorization",),
    ),
    _Kind(
        "jwt",
        r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*",
        lower=False,
        hints=("eyJ",),
    ),
    _Kind(
        "aws_access_key",
        r"(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}(?![A-Za-z0-9])",
        lower=False,
        hints=("AKIA", "ASIA", "A3T", "ABIA", "ACCA"),
        hint_pattern="A(?:KIA|SIA|3T|BIA|CCA)",
    ),
    _Kind(
        "url_password",
        r"://[^\s/:@?#]+:(?P<v>[^\s/@?#]+)@",
        lower=False,
        hints=("://",),
        word_start=False,
    ),
    _Kind(
        "key_value_secret",
        rf"{_KEYS}[\"']?\s*(?:=\s*(?:\"(?P<v>[^\"]*)\"|'(?P<w>[^']*)'|(?P<x>{_UNQUOTED}))"
        rf"|:\s*(?:\"(?P<y>(?:[^\"\\]|\\.)*)\"|'(?P<z>[^']*)'|(?P<u>{_SECRETLIKE})))",
        lower=True,
        hints=("passw", "secret", "token", "key", "credential"),
        word_start=False,
    ),
)
BUILTIN: dict[str, str] = {k.name: k.pattern for k in _KINDS}
"""The built-in kinds by name (``bearer_token`` has two patterns: the Basic one is not shown)."""

_GROUPS = ("v", "w", "x", "y", "z", "u")


class _Compiled:
    """One kind, compiled: ``apply(text, low) -> text`` (the same object when unchanged).

    The pattern is tried (``match``, anchored) only where one of its hints occurs, found
    with ``str.find``: a regex scan from every position of every message would cost
    several microseconds per message.
    """

    __slots__ = (
        "_counter",
        "_groups",
        "_hint_finditer",
        "_match",
        "_pattern_ci",
        "_word",
        "hint_search",
        "hints",
        "lower",
    )

    def __init__(self, kind: _Kind) -> None:
        pattern = re.compile(kind.pattern)
        self._match = pattern.match
        self._pattern_ci = re.compile(kind.pattern, re.IGNORECASE) if kind.lower else None
        hint_re = re.compile(kind.hint_pattern) if kind.hint_pattern else None
        self._hint_finditer = hint_re.finditer if hint_re is not None else None
        self.hint_search = hint_re.search if hint_re is not None else None
        self.hints = kind.hints
        self.lower = kind.lower
        self._word = kind.word_start
        self._groups = tuple(g for g in _GROUPS if g in pattern.groupindex)
        self._counter = metrics.REDACTIONS.labels(kind.name)

    def _starts(self, hay: str) -> list[int]:
        if self._hint_finditer is not None:
            return [m.start() for m in self._hint_finditer(hay)]
        starts: list[int] = []
        for hint in self.hints:
            if hint not in hay:  # ``in`` costs less than a ``find`` call when absent
                continue
            at = hay.find(hint)
            while at >= 0:
                starts.append(at)
                at = hay.find(hint, at + 1)
        if len(starts) > 1:
            starts.sort()
        return starts

    def apply(self, text: str, low: str) -> str:
        """Replace this kind's secrets (the caller saw one of its hints)."""
        hay = low if self.lower else text
        starts = self._starts(hay)
        if not starts:
            return text
        if self.lower and len(low) != len(text):  # lower-casing moved indexes: scan exactly
            assert self._pattern_ci is not None
            return self._substitute(text, list(self._pattern_ci.finditer(text)))
        matches = []
        end = 0
        for at in starts:
            if at < end:
                continue  # inside the previous match
            m = self._match(hay, at)
            if m is not None:
                matches.append(m)
                end = m.end()
        return self._substitute(text, matches) if matches else text

    def _substitute(self, text: str, matches: list[re.Match[str]]) -> str:
        out: list[str] = []
        pos = 0
        for m in matches:
            start = m.start()
            if self._word and start > 0 and text[start - 1] in _WORD:
                continue
            s, e = m.span()
            for g in self._groups:
                if m.group(g) is not None:
                    s, e = m.span(g)
                    break
            out.append(text[pos:s])
            out.append(REDACTED)
            pos = e
            self._counter.inc()
        if not out:
            return text
        out.append(text[pos:])
        return "".join(out)


class Redactor:
    """``(event) -> event``: replaces secrets in ``record["log"]``; built once."""

    __slots__ = ("_custom", "_custom_counter", "_kinds", "_needs_lower")

    def __init__(self, builtin: Sequence[str], patterns: Sequence[str] = ()) -> None:
        unknown = set(builtin) - set(BUILTIN)
        if unknown:
            raise ValueError(f"unknown secret kinds: {sorted(unknown)}")
        self._kinds = [_Compiled(k) for k in _KINDS if k.name in builtin]
        self._needs_lower = any(k.lower for k in _KINDS if k.name in builtin)
        self._custom = [re.compile(p) for p in patterns]
        self._custom_counter = metrics.REDACTIONS.labels("custom")

    def redact(self, text: str) -> str:
        """``text`` with every secret replaced (the same object when there is none)."""
        low = text.lower() if self._needs_lower else text
        for kind in self._kinds:
            # The hint check is inlined: most messages have no hint of any kind, and a
            # method call per kind and message would cost more than the checks.
            hay = low if kind.lower else text
            search = kind.hint_search
            if search is not None:
                if search(hay) is None:
                    continue
            else:
                for hint in kind.hints:
                    if hint in hay:
                        break
                else:
                    continue
            out = kind.apply(text, low)
            if out is not text:
                text = out
                low = text.lower() if self._needs_lower else text
        for custom in self._custom:
            if custom.search(text) is not None:
                text = custom.sub(self._replace_custom, text)
        return text

    def _replace_custom(self, match: re.Match[str]) -> str:
        self._custom_counter.inc()
        if match.re.groups and match.group(1) is not None:  # only the first group goes
            whole, base = match.group(0), match.start()
            s, e = match.span(1)
            return whole[: s - base] + REDACTED + whole[e - base :]
        return REDACTED

    def __call__(self, event: core.Event) -> core.Event:
        record = event.record
        text = record.get("log")
        if not isinstance(text, str):
            return event
        redacted = self.redact(text)
        if redacted is not text:
            record["log"] = redacted
            kh: Any = record.get("kloghub")
            if isinstance(kh, dict) and isinstance(kh.get("raw"), bytes):
                raw = kh["raw"].decode("utf-8", "surrogateescape")
                kh["raw"] = self.redact(raw).encode("utf-8", "surrogateescape")
        return event
