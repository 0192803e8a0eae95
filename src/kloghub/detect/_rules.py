"""Loading Sigma rules: parse with pySigma, map fields, compile, refuse what cannot run.

A rule file holds one or more YAML documents (``---``), each a Sigma rule or a Sigma
correlation rule. Every rule needs an ``id`` (settings, exceptions and alerts name rules by
it) and a ``level``. Whatever pySigma rejects, and whatever kloghub's backend cannot
evaluate, is refused at load as a :class:`RuleError` naming the file, the line and the rule,
with the reason; :func:`load` reports every error of every file at once.

Correlations (``event_count``, ``value_count``, ``temporal``) are evaluated in real time,
so their condition must be decidable while the window is open: ``gte``/``gt`` (a count that
only ever grows inside a window). ``lt``/``lte``/``eq``/``neq``, ``temporal_ordered``,
field aliases and correlations of correlations are refused.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from sigma import correlations as sco
from sigma import exceptions as sx
from sigma.collection import SigmaCollection
from sigma.rule import SigmaRule

from kloghub.detect import _compile, _pipeline

__all__ = [
    "LEVELS",
    "Correlation",
    "Detection",
    "LoadError",
    "RuleError",
    "Ruleset",
    "compile_rule",
    "default_pack",
    "load",
]

LEVELS = ("informational", "low", "medium", "high", "critical")


@dataclasses.dataclass(frozen=True)
class RuleError:
    """One refused rule: where it is and why."""

    path: Path
    line: int
    rule: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: rule {self.rule!r}: {self.reason}"


class LoadError(ValueError):
    """Rules that cannot be loaded; ``errors`` lists each with file, line and reason."""

    def __init__(self, errors: list[RuleError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


@dataclasses.dataclass(frozen=True)
class _Meta:
    id: str
    title: str
    description: str
    level: str
    tags: tuple[str, ...]
    references: tuple[str, ...]
    author: str
    version: str
    falsepositives: tuple[str, ...]
    path: Path
    line: int
    audit: bool
    """The rule reads Kubernetes audit events (its fields went through the pipeline)."""


@dataclasses.dataclass(frozen=True)
class Detection(_Meta):
    """A Sigma rule compiled to a matcher over ECS documents."""

    match: _compile.Matcher
    logsource: dict[str, str]


@dataclasses.dataclass(frozen=True)
class Correlation(_Meta):
    """A Sigma correlation rule: ``type`` over the ``rules`` ids within ``timespan``."""

    type: str
    rules: tuple[str, ...]
    group_by: tuple[str, ...]
    timespan: float
    op: str
    count: int
    field: str | None
    generate: bool


@dataclasses.dataclass(frozen=True)
class Ruleset:
    """Loaded rules in dependency order (a correlation after the rules it reads)."""

    detections: tuple[Detection, ...]
    correlations: tuple[Correlation, ...]

    def all(self) -> list[Detection | Correlation]:
        return [*self.detections, *self.correlations]

    def find(self, key: str) -> Detection | Correlation | None:
        """The rule whose id or title is ``key``."""
        for rule in self.all():
            if key in (rule.id, rule.title):
                return rule
        return None


def default_pack() -> Path:
    """The folder of kloghub's default rules (in the package)."""
    return Path(str(importlib.resources.files(__package__).joinpath("rules")))


def _files(paths: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            # Hidden names are skipped: a ConfigMap volume keeps every file twice more, under
            # ``..data/`` and ``..<timestamp>/``, behind the symbolic links it shows.
            out.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.suffix in (".yml", ".yaml")
                    and not any(part.startswith(".") for part in p.relative_to(path).parts)
                )
            )
        else:
            out.append(path)
    return out


def _line_of(node: yaml.Node, needle: str, text_lines: list[str]) -> int:
    """The 1-based line of the first line of ``node``'s document holding ``needle``."""
    start, end = node.start_mark.line, node.end_mark.line
    if needle:
        for i in range(start, min(end + 1, len(text_lines))):
            if needle in text_lines[i]:
                return i + 1
    return start + 1


def _construct(node: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _needle(reason: str) -> str:
    for token in ("|fieldref", "|expand", "|windash", "|base64", "keyword", "|re"):
        if token.lstrip("|") in reason:
            return token if token.startswith("|") else ""
    return ""


def _meta(rule: Any, path: Path, line: int, audit: bool) -> dict[str, Any]:
    modified = rule.modified or rule.date
    return {
        "id": str(rule.id),
        "title": rule.title,
        "description": (rule.description or "").strip(),
        "level": str(rule.level) if rule.level is not None else "",
        "tags": tuple(str(t) for t in rule.tags),
        "references": tuple(rule.references),
        "author": rule.author or "",
        "version": modified.isoformat() if modified else "1",
        "falsepositives": tuple(rule.falsepositives),
        "path": path,
        "line": line,
        "audit": audit,
    }


def _is_audit(logsource: Any) -> bool:
    return bool(logsource.product == "kubernetes" and logsource.service == "audit")


def compile_rule(rule: SigmaRule) -> _compile.Matcher:
    """The matcher of a parsed Sigma rule, through kloghub's pipeline (``UnsupportedError``)."""
    _pipeline.pipeline().apply(rule)
    matchers = [_compile.compile_condition(c.parsed) for c in rule.detection.parsed_condition]
    return matchers[0] if len(matchers) == 1 else (lambda d: any(m(d) for m in matchers))


def _detection(rule: SigmaRule, path: Path, line: int) -> Detection:
    match = compile_rule(rule)
    logsource = {
        k: v
        for k, v in (
            ("product", rule.logsource.product),
            ("service", rule.logsource.service),
            ("category", rule.logsource.category),
        )
        if v
    }
    return Detection(
        **_meta(rule, path, line, _is_audit(rule.logsource)), match=match, logsource=logsource
    )


_OPS = {
    sco.SigmaCorrelationConditionOperator.GTE: "gte",
    sco.SigmaCorrelationConditionOperator.GT: "gt",
}


def _correlation(rule: sco.SigmaCorrelationRule, path: Path, line: int) -> Correlation:
    kind = str(rule.type)
    if kind not in ("event_count", "value_count", "temporal"):
        raise _compile.UnsupportedError(f"correlation type {kind} is not supported")
    if rule.aliases.aliases:
        raise _compile.UnsupportedError("correlation field aliases are not supported")
    refs = rule.rules or []
    targets = [ref.rule for ref in refs]
    if any(isinstance(t, sco.SigmaCorrelationRule) for t in targets):
        raise _compile.UnsupportedError("correlations of correlations are not supported")
    audit = all(_is_audit(t.logsource) for t in targets if isinstance(t, SigmaRule))
    mapped = _pipeline.audit_field if audit else (lambda f: f)
    condition = rule.condition
    op, count, fieldname = "gte", len(refs), None
    if kind != "temporal":
        if not isinstance(condition, sco.SigmaCorrelationCondition):
            raise _compile.UnsupportedError("extended correlation conditions are not supported")
        if condition.op not in _OPS:
            raise _compile.UnsupportedError(
                f"condition {condition.op.name.lower()} needs the window to close; "
                "only gte and gt are evaluated in real time"
            )
        op, count = _OPS[condition.op], int(condition.count)
        if kind == "value_count":
            if not isinstance(condition.fieldref, str):
                raise _compile.UnsupportedError("value_count needs one condition field")
            fieldname = mapped(condition.fieldref)
    return Correlation(
        **_meta(rule, path, line, audit),
        type=kind,
        rules=tuple(str(t.id) for t in targets),
        group_by=tuple(mapped(f) for f in rule.group_by or ()),
        timespan=float(rule.timespan.seconds),
        op=op,
        count=count,
        field=fieldname,
        generate=bool(rule.generate),
    )


def _check_meta(doc: dict[str, Any]) -> str | None:
    if not doc.get("id"):
        return "has no id (settings and alerts name rules by their id)"
    if not isinstance(doc["id"], str):
        return f"id must be a UUID string, not {type(doc['id']).__name__} {doc['id']!r}"
    if "correlation" not in doc and str(doc.get("level", "")) not in LEVELS:
        return f"level must be one of {', '.join(LEVELS)}"
    return None


def load(paths: Iterable[Path]) -> Ruleset:  # noqa: PLR0912, PLR0915  (one pass, every error kept)
    """The rules of the files and folders ``paths`` (``LoadError`` lists every refusal)."""
    errors: list[RuleError] = []
    parsed: list[tuple[Any, Path, yaml.Node, list[str]]] = []
    seen: dict[str, Path] = {}
    for path in _files(paths):
        try:
            text = path.read_text(encoding="utf-8")
            nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            line = getattr(getattr(exc, "problem_mark", None), "line", -1) + 1
            errors.append(RuleError(path, max(line, 1), "?", f"cannot read: {exc}"))
            continue
        lines = text.split("\n")
        for node in nodes:
            if node is None:
                continue
            doc = _construct(node)
            line = node.start_mark.line + 1
            name = str(doc.get("title") or doc.get("id") or "?") if isinstance(doc, dict) else "?"
            if not isinstance(doc, dict):
                errors.append(RuleError(path, line, name, "a rule is a YAML mapping"))
                continue
            problem = _check_meta(doc)
            if problem is None and str(doc["id"]) in seen:
                problem = f"id {doc['id']} is also used in {seen[str(doc['id'])]}"
            if problem:
                errors.append(RuleError(path, line, name, problem))
                continue
            seen[str(doc["id"])] = path
            try:
                if "correlation" in doc:
                    rule: Any = sco.SigmaCorrelationRule.from_dict(doc)
                else:
                    rule = SigmaRule.from_dict(doc)
            except (sx.SigmaError, ValueError, TypeError, AttributeError) as exc:
                # pySigma raises plain Python errors on some malformed values (ids, dates).
                errors.append(RuleError(path, _line_of(node, "", lines), name, str(exc)))
                continue
            parsed.append((rule, path, node, lines))
    collection = SigmaCollection([p[0] for p in parsed], resolve_references=False)
    detections: list[Detection] = []
    correlations: list[Correlation] = []
    for rule, path, node, lines in parsed:
        line = node.start_mark.line + 1
        try:
            if isinstance(rule, sco.SigmaCorrelationRule):
                try:
                    rule.resolve_rule_references(collection)
                except (KeyError, sx.SigmaRuleNotFoundError) as exc:
                    raise _compile.UnsupportedError(f"references no loaded rule: {exc}") from None
                correlations.append(_correlation(rule, path, line))
            else:
                detections.append(_detection(rule, path, line))
        except (sx.SigmaError, _compile.UnsupportedError) as exc:
            reason = str(exc)
            errors.append(
                RuleError(path, _line_of(node, _needle(reason), lines), rule.title, reason)
            )
    if errors:
        raise LoadError(errors)
    return Ruleset(tuple(detections), tuple(correlations))
