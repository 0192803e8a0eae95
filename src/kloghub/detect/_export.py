"""SIEM-native queries of kloghub's rules, through pySigma's published backends.

``pySigma-backend-elasticsearch`` (Lucene) and ``pySigma-backend-opensearch`` (Lucene)
convert each rule after kloghub's processing pipeline (:mod:`kloghub.detect._pipeline`) has
mapped Sigma's Kubernetes audit taxonomy to the fields kloghub's documents have, so the
queries run on the ``logs-kubernetes.*`` data streams as they are. Rules are loaded (and
so validated) by :func:`kloghub.detect.load` first.

Correlation rules are not exported: the Lucene backends have no correlations (Elastic's
ES|QL has, but its backend does not take kloghub's pipeline's field names as they are);
they are listed as skipped with that reason, and the rules they read are exported.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from kloghub.detect import _pipeline, _rules

__all__ = ["FORMATS", "TARGETS", "Exported", "export"]

TARGETS = ("elasticsearch", "opensearch")

FORMATS: dict[str, dict[str, str]] = {
    "elasticsearch": {
        "lucene": "default",
        "dsl": "dsl_lucene",
        "kibana_ndjson": "kibana_ndjson",
    },
    "opensearch": {
        "lucene": "default",
        "dsl": "dsl_lucene",
        "monitor_rule": "monitor_rule",
        "dashboards_ndjson": "dashboards_ndjson",
    },
}
"""kloghub's format names → the backend's (``lucene`` and ``dsl`` exist for both).

The Elasticsearch backend's ``siem_rule`` formats are left out: they download MITRE ATT&CK
data from the internet while converting, which fails where the cluster has no way out."""


@dataclasses.dataclass(frozen=True)
class Exported:
    """The queries of the exported rules (in load order) and the rules skipped, why."""

    queries: list[tuple[_rules.Detection, Any]]
    """(rule, its query in the chosen format) — one per rule for ``lucene``/``dsl``."""
    output: Any
    """The backend's finalized output of every query (what ``kloghub rules export`` prints)."""
    skipped: list[tuple[_rules.Detection | _rules.Correlation, str]]


_FIELD_ESCAPE = re.compile(r"[\s*/]")
"""Characters the Lucene backends must escape in field names: theirs (space, ``*``) and
``/``, which starts a regular expression in Lucene and is in kloghub's de-dotted keys
(``kubernetes.audit.annotations.authorization_k8s_io/decision``)."""


def _backend(target: str) -> Any:
    pipeline = _pipeline.pipeline()
    backend: Any
    if target == "elasticsearch":
        from sigma.backends.elasticsearch.elasticsearch_lucene import LuceneBackend

        backend = LuceneBackend(processing_pipeline=pipeline)
    elif target == "opensearch":
        from sigma.backends.opensearch.opensearch import OpensearchLuceneBackend

        backend = OpensearchLuceneBackend(processing_pipeline=pipeline)
    else:
        raise ValueError(f"cannot export to {target!r}: one of {', '.join(TARGETS)}")
    backend.field_escape_pattern = _FIELD_ESCAPE
    return backend


def _sigma_rules(ruleset: _rules.Ruleset) -> dict[str, Any]:
    """The parsed pySigma rules of the ruleset's detections, by id (from their files; each
    on its own, so that a rule a correlation reads converts like any other)."""
    import yaml
    from sigma.rule import SigmaRule

    out: dict[str, Any] = {}
    for path in sorted({d.path for d in ruleset.detections}):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if isinstance(doc, dict) and "correlation" not in doc:
                out[str(doc.get("id"))] = SigmaRule.from_dict(doc)
    return out


def export(
    paths: Iterable[Path],
    target: str,
    fmt: str = "lucene",
    select: Sequence[str] = (),
) -> Exported:
    """The rules of ``paths`` (all, or those whose id or title is in ``select``) as
    ``target`` queries in format ``fmt``. Raises ``LoadError`` for rules that do not load,
    ``ValueError`` for an unknown target, format or selected rule."""
    backend = _backend(target)
    formats = FORMATS[target]
    if fmt not in formats:
        raise ValueError(f"format {fmt!r}: one of {', '.join(formats)} for {target}")
    ruleset = _rules.load(paths)
    chosen: list[_rules.Detection | _rules.Correlation] = []
    for key in select:
        rule = ruleset.find(key)
        if rule is None:
            raise ValueError(f"{key}: names no loaded rule")
        chosen.append(rule)
    if not select:
        chosen = ruleset.all()
    parsed = _sigma_rules(ruleset)
    queries: list[tuple[_rules.Detection, Any]] = []
    flat: list[Any] = []
    skipped: list[tuple[_rules.Detection | _rules.Correlation, str]] = []
    for rule in chosen:
        if isinstance(rule, _rules.Correlation):
            skipped.append((rule, "a correlation rule: the Lucene backends have none"))
            continue
        try:
            converted = backend.convert_rule(parsed[rule.id], formats[fmt])
        except Exception as exc:  # noqa: BLE001 - any backend refusal is reported per rule
            skipped.append((rule, f"{type(exc).__name__}: {exc}"))
            continue
        for query in converted:
            queries.append((rule, query))
            flat.append(query)
    return Exported(queries, backend.finalize(flat, formats[fmt]), skipped)
