"""The detector: every ECS document through every rule, alerts out (a plain call).

Configuration is resolved once (:meth:`Detector.from_config`): rules loaded and compiled,
per-rule settings (enabled, mode, severity, exceptions) checked against the loaded rules
and compiled, correlations given their state. The per-document call is
``detector(doc_id, doc, time_ns) -> list[Alert]``; a rule that raises on a document (it
should not) is counted and skipped, never propagated.

Rules whose log source is the Kubernetes audit log only see audit documents
(``data_stream.dataset: kubernetes.audit_logs``), and an audit rule that requires an
``objectRef.resource`` (most do) only sees the documents about that resource; other rules
see every document. A rule
that a correlation reads raises no alert of its own unless the correlation says
``generate: true`` (Sigma's semantics).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kloghub import config, core
from kloghub.detect import _compile, _correlate, _rules

__all__ = ["Alert", "Detector"]

_log = logging.getLogger("kloghub.detect")

_AUDIT_DATASET = "kubernetes.audit_logs"
_RESOURCE = "kubernetes.audit.objectRef.resource"


def _resource(doc: dict[str, Any]) -> Any:
    """``kubernetes.audit.objectRef.resource`` of an audit document (None when absent)."""
    kube = doc.get("kubernetes")
    audit = kube.get("audit") if type(kube) is dict else None
    ref = audit.get("objectRef") if type(audit) is dict else None
    return ref.get("resource") if type(ref) is dict else None


@dataclasses.dataclass(frozen=True)
class Alert:
    """One rule firing: what, how severe, on which events, in which mode."""

    rule: _rules.Detection | _rules.Correlation
    mode: str
    severity: str
    ids: tuple[str, ...]
    doc: dict[str, Any]
    """The (last) triggering document: the alert's context."""
    first_ns: int
    last_ns: int
    count: int = 1
    group: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class _Setting:
    enabled: bool
    mode: str
    severity: str
    exceptions: tuple[_compile.Matcher, ...]

    def excepted(self, doc: dict[str, Any]) -> bool:
        return any(m(doc) for m in self.exceptions)


def _exception_matcher(
    rule: _rules.Detection | _rules.Correlation, entry: dict[str, Any], where: str
) -> _compile.Matcher:
    logsource = (
        {"product": "kubernetes", "service": "audit"}
        if rule.audit
        else getattr(rule, "logsource", None) or {"product": "kubernetes"}
    )
    doc = {
        "title": f"exception of {rule.title}",
        "id": "00000000-0000-4000-8000-000000000000",
        "level": "low",
        "logsource": logsource,
        "detection": {"exception": entry, "condition": "exception"},
    }
    try:
        from sigma.rule import SigmaRule

        return _rules.compile_rule(SigmaRule.from_dict(doc))
    except (ValueError, TypeError, KeyError) as exc:
        raise core.ConfigError([f"{where}: {exc}"]) from exc


class Detector:
    """Compiled rules with their settings and correlation state."""

    def __init__(
        self,
        ruleset: _rules.Ruleset,
        cfg: config.DetectionsConfig | None = None,
        *,
        where: str = "collector.detections",
    ) -> None:
        cfg = cfg or config.DetectionsConfig()
        self.ruleset = ruleset
        self.errors = 0
        self.suppressed = 0
        self._default_mode = cfg.mode
        settings: dict[str, _Setting] = {}
        problems = [
            f"{where}.rules.{key}: names no loaded rule"
            for key in cfg.rules
            if ruleset.find(key) is None
        ]
        if problems:
            raise core.ConfigError(problems)
        for rule in ruleset.all():
            tuned = cfg.rules.get(rule.id) or cfg.rules.get(rule.title) or config.RuleSettings()
            key = f"{where}.rules.{rule.id}.exceptions"
            settings[rule.id] = _Setting(
                enabled=tuned.enabled,
                mode=tuned.mode or cfg.mode,
                severity=tuned.severity or rule.level or "medium",
                exceptions=tuple(
                    _exception_matcher(rule, e, f"{key}[{i}]")
                    for i, e in enumerate(tuned.exceptions)
                ),
            )
        self._settings = settings
        readers: dict[str, list[_correlate.Correlator]] = {}
        silenced: set[str] = set()
        self.correlators = [_correlate.Correlator(c, cfg.max_groups) for c in ruleset.correlations]
        for correlator in self.correlators:
            for rid in correlator.rule.rules:
                readers.setdefault(rid, []).append(correlator)
                if not correlator.rule.generate:
                    silenced.add(rid)
        self._readers = readers
        self._audit = [
            (d, d.id not in silenced, readers.get(d.id, [])) for d in ruleset.detections if d.audit
        ]
        self._other = [
            (d, d.id not in silenced, readers.get(d.id, []))
            for d in ruleset.detections
            if not d.audit
        ]
        # Audit rules by the resource they require (most name one): a document is offered
        # only to the rules of its objectRef.resource and to those that name none.
        guards = [_compile.required(d.match, _RESOURCE) for d, _, _ in self._audit]
        resources = {r for guard in guards if guard is not None for r in guard}
        self._by_resource = {
            resource: [
                entry
                for entry, guard in zip(self._audit, guards, strict=True)
                if guard is None or resource in guard
            ]
            + self._other
            for resource in resources
        }
        self._unguarded = [
            entry for entry, guard in zip(self._audit, guards, strict=True) if guard is None
        ] + self._other

        self.audit_only = not self._other
        """Every rule reads audit documents only (then nothing else need be offered)."""

    def setting(self, rule_id: str) -> tuple[bool, str, str, int]:
        """``(enabled, mode, severity, exceptions)`` of a loaded rule, as configured."""
        s = self._settings[rule_id]
        return s.enabled, s.mode, s.severity, len(s.exceptions)

    @classmethod
    def from_config(
        cls, cfg: config.DetectionsConfig, *, where: str = "collector.detections"
    ) -> Detector:
        """Load the default pack (if on) and ``rules_dirs``; ``LoadError``/``ConfigError``."""
        return cls(_rules.load(_paths(cfg)), cfg, where=where)

    def summary(self) -> dict[str, Any]:
        """Rules loaded, enabled, and in each mode (what ``kloghub validate`` prints)."""
        rules = self.ruleset.all()
        enabled = [r for r in rules if self._settings[r.id].enabled]
        return {
            "rules": len(rules),
            "detections": len(self.ruleset.detections),
            "correlations": len(self.ruleset.correlations),
            "enabled": len(enabled),
            "mode": self._default_mode,
            "dry_run": sorted(r.id for r in enabled if self._settings[r.id].mode == "dry-run"),
            "disabled": sorted(r.id for r in rules if not self._settings[r.id].enabled),
        }

    def __call__(self, doc_id: str, doc: dict[str, Any], time_ns: int) -> list[Alert]:
        data_stream = doc.get("data_stream")
        dataset = data_stream.get("dataset") if isinstance(data_stream, dict) else None
        if dataset == _AUDIT_DATASET:
            resource = _resource(doc)
            if type(resource) is str:
                candidates = self._by_resource.get(resource.lower(), self._unguarded)
            else:
                candidates = self._audit + self._other
        else:
            candidates = self._other
        alerts: list[Alert] = []
        for rule, alerts_alone, correlators in candidates:
            try:
                if not rule.match(doc):
                    continue
            except Exception:  # noqa: BLE001  (a rule must never take the collector down)
                self.errors += 1
                _log.debug("rule failed on a document", extra={"rule": rule.id}, exc_info=True)
                continue
            setting = self._settings[rule.id]
            if setting.excepted(doc):
                self.suppressed += 1
                continue
            if alerts_alone and setting.enabled:
                alerts.append(
                    Alert(rule, setting.mode, setting.severity, (doc_id,), doc, time_ns, time_ns)
                )
            for correlator in correlators:
                alerts.extend(self._correlate(correlator, rule.id, doc_id, doc, time_ns))
        return alerts

    def _correlate(
        self,
        correlator: _correlate.Correlator,
        source: str,
        doc_id: str,
        doc: dict[str, Any],
        time_ns: int,
    ) -> Iterable[Alert]:
        setting = self._settings[correlator.rule.id]
        if setting.excepted(doc):
            self.suppressed += 1
            return ()
        fired = correlator.feed(source, doc_id, doc, time_ns)
        if fired is None or not setting.enabled:
            return ()
        return (
            Alert(
                correlator.rule,
                setting.mode,
                setting.severity,
                fired.ids,
                fired.doc,
                fired.first_ns,
                fired.last_ns,
                fired.count,
                fired.group,
            ),
        )


def _paths(cfg: config.DetectionsConfig) -> list[Path]:
    paths = [_rules.default_pack()] if cfg.default_pack else []
    return [*paths, *cfg.rules_dirs]
