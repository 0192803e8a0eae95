"""Index templates and lifecycle policies of kloghub's data streams, from the JSON assets.

The files in ``assets/elasticsearch/`` and ``assets/opensearch/`` are the one source of
truth (``forwarders/`` points here); :func:`templates` loads them and applies the options.

What the assets make, per product:

- composable index templates ``kloghub-kubernetes.{container,audit,node}_logs`` (priority
  250, above the built-in ``logs`` template's 100 and Elastic's integration templates'
  200) for ``logs-kubernetes.container_logs-*`` (and the rerouted
  ``logs-kubernetes.container_logs.*-*``), ``logs-kubernetes.audit_logs-*`` and
  ``logs-kubernetes.node_logs-*``, composed of the component templates
  ``kloghub-logs@settings``, ``kloghub-logs@mappings`` (ECS) and
  ``kloghub-kubernetes.audit_logs@mappings``; and ``kloghub-kloghub.alerts`` for the
  detections' alerts (``logs-kloghub.alerts-*``), which adds
  ``kloghub-kloghub.alerts@mappings`` (``rule.*``, ``threat.*``, ``kloghub.alert.*``);
- Elasticsearch: the ILM policy ``kloghub-logs`` and the component template
  ``kloghub-logs@lifecycle`` that names it. The index templates list that component in
  ``ignore_missing_component_templates``, so they install and work where ILM is missing
  (the lifecycle parts are then refused and can be skipped, see ``lifecycle``);
- OpenSearch: the ISM policy ``kloghub-logs``, attached to the data streams by its
  ``ism_template`` (ISM matches a backing index by its data stream's name).

Field types are portable by default: every type in the mappings exists in the minimal
builds of Elasticsearch 9 and OpenSearch 2 (no ``match_only_text``, ``wildcard``,
``constant_keyword``, which need Elasticsearch's x-pack/mapper-extras modules; ``text`` and
``keyword`` take their place). ``native_types=True`` restores ECS's own types where the
product has them: ``match_only_text`` for ``message`` and ``error.message`` (and the
``.text`` sub-fields), ``wildcard`` for ``error.stack_trace``, and on Elasticsearch
``constant_keyword`` for ``data_stream.*`` (OpenSearch's needs a fixed value, so not there);
OpenSearch needs 2.15 or later for it.
"""

from __future__ import annotations

import functools
import importlib.resources
from typing import Any, Literal

import orjson

from kloghub.normalize import _normalizer

__all__ = ["DATA_STREAMS", "POLICY", "Kind", "asset_files", "templates"]

Kind = Literal["elasticsearch", "opensearch"]

DATA_STREAMS = (
    "kubernetes.container_logs",
    "kubernetes.audit_logs",
    "kubernetes.node_logs",
    "kloghub.alerts",
)
"""The datasets of kloghub's data streams (``logs-<dataset>-<namespace>``): the three log
streams the normalizer writes and the alerts of the detections (``event.kind: alert``)."""


POLICY = "kloghub-logs"
"""The name of the ILM (Elasticsearch) and ISM (OpenSearch) policy."""

_LIFECYCLE, _ALWAYS = True, False
_INDEX_TEMPLATES = tuple(
    (f"index-template-{ds.rsplit('.', 1)[1]}.json", f"_index_template/kloghub-{ds}", _ALWAYS)
    for ds in DATA_STREAMS
)
_ASSETS: dict[str, tuple[tuple[str, str, bool], ...]] = {
    "elasticsearch": (
        ("ilm-policy.json", f"_ilm/policy/{POLICY}", _LIFECYCLE),
        ("component-settings.json", "_component_template/kloghub-logs@settings", _ALWAYS),
        ("component-mappings.json", "_component_template/kloghub-logs@mappings", _ALWAYS),
        (
            "component-audit-mappings.json",
            "_component_template/kloghub-kubernetes.audit_logs@mappings",
            _ALWAYS,
        ),
        (
            "component-alert-mappings.json",
            "_component_template/kloghub-kloghub.alerts@mappings",
            _ALWAYS,
        ),
        ("component-lifecycle.json", "_component_template/kloghub-logs@lifecycle", _LIFECYCLE),
        *_INDEX_TEMPLATES,
    ),
    "opensearch": (
        ("ism-policy.json", f"_plugins/_ism/policies/{POLICY}", _LIFECYCLE),
        ("component-settings.json", "_component_template/kloghub-logs@settings", _ALWAYS),
        ("component-mappings.json", "_component_template/kloghub-logs@mappings", _ALWAYS),
        (
            "component-audit-mappings.json",
            "_component_template/kloghub-kubernetes.audit_logs@mappings",
            _ALWAYS,
        ),
        (
            "component-alert-mappings.json",
            "_component_template/kloghub-kloghub.alerts@mappings",
            _ALWAYS,
        ),
        *_INDEX_TEMPLATES,
    ),
}
_TEXT_FIELDS = (
    ("message",),
    ("error", "properties", "message"),
    ("user", "properties", "name", "fields", "text"),
    ("user", "properties", "effective", "properties", "name", "fields", "text"),
    ("user_agent", "properties", "original", "fields", "text"),
)
"""Paths (through ``properties`` and ``fields``) of the ``text`` fields ECS types
``match_only_text``."""


@functools.cache
def _load(kind: str, name: str) -> bytes:
    return importlib.resources.files(__package__).joinpath("assets", kind, name).read_bytes()


def asset_files(kind: Kind) -> list[str]:
    """The asset file names of ``kind``, in install order."""
    return [name for name, _path, _optional in _ASSETS[kind]]


def _field(properties: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    node = properties
    for part in path:
        node = node[part]
    return node


def _native(kind: str, properties: dict[str, Any]) -> None:
    for path in _TEXT_FIELDS:
        _field(properties, path)["type"] = "match_only_text"
    properties["error"]["properties"]["stack_trace"] = {
        "type": "wildcard",
        "fields": {"text": {"type": "match_only_text"}},
    }
    if kind == "elasticsearch":
        for name in ("type", "dataset", "namespace"):
            properties["data_stream"]["properties"][name] = {"type": "constant_keyword"}


def _move_target(properties: dict[str, Any], target: tuple[str, ...]) -> None:
    mapping = properties.pop("json")
    node = properties
    for part in target[:-1]:
        child = node.setdefault(part, {"properties": {}})
        node = child.setdefault("properties", {})
    node[target[-1]] = mapping


def templates(
    kind: Kind,
    retention_days: int = 30,
    *,
    json_target: str = "json",
    lifecycle: bool = True,
    native_types: bool = False,
) -> dict[str, dict[str, Any]]:
    """Request path → JSON body, in install order (``PUT <path>`` with ``<body>``).

    ``retention_days``: data older than this is deleted (measured from rollover by ILM,
    from index creation by ISM; rollover is daily, so the bound is ±1 day).
    ``json_target``: the normalizer's ``json_target`` (where the flattened field goes).
    ``lifecycle=False`` leaves the policy (and, on Elasticsearch, the component template
    naming it) out; what ``lifecycle=True`` adds is exactly what a cluster without ILM/ISM
    refuses, so an installer may skip those entries when they fail.
    ``native_types``: see the module documentation.

    PUT is idempotent for templates and ILM policies; an existing ISM policy must be
    updated with ``?if_seq_no=…&if_primary_term=…`` (from a GET) or it answers 409.
    """
    if kind not in _ASSETS:
        raise ValueError(f"kind must be 'elasticsearch' or 'opensearch', not {kind!r}")
    if type(retention_days) is not int or retention_days < 1:
        raise ValueError(f"retention_days must be a whole number of days ≥ 1: {retention_days!r}")
    target = _normalizer.target_path(json_target)
    out: dict[str, dict[str, Any]] = {}
    for name, path, optional in _ASSETS[kind]:
        if optional and not lifecycle:
            continue
        body: dict[str, Any] = orjson.loads(_load(kind, name))
        if name == "ilm-policy.json":
            body["policy"]["phases"]["delete"]["min_age"] = f"{retention_days}d"
        elif name == "ism-policy.json":
            hot = body["policy"]["states"][0]
            hot["transitions"][0]["conditions"]["min_index_age"] = f"{retention_days}d"
        elif name == "component-mappings.json":
            properties = body["template"]["mappings"]["properties"]
            _move_target(properties, target)
            if native_types:
                _native(kind, properties)
        out[path] = body
    return out
