"""JSON Schema fragments of the chart's pass-through values, generated from the config models.

The chart lets users set keys of the config file directly (``agent.config``,
``collector.config``, ``agent.output`` and each backend's ``sink``). Their schema in
``charts/kloghub/values.schema.json`` is derived from ``kloghub.config`` so that ``helm
install`` refuses exactly the keys ``kloghub`` itself would refuse, minus the keys the
chart manages and every secret and secret file (secrets come from Kubernetes Secrets that
the chart mounts and points ``X_file`` at, never from values).

``python -m tests.charts._model_schema`` rewrites those fragments after a model changed;
``tests/charts/test_chart.py`` fails while they are stale.
"""

from __future__ import annotations

import json
import sys
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import annotated_types
from pydantic import BaseModel, ByteSize, SecretStr
from pydantic.functional_validators import BeforeValidator

from kloghub.config import _models, _types

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "charts" / "kloghub" / "values.schema.json"

# Same forms as kloghub.config._types: "30", "30s", "1.5m", "500ms"; "256MiB", "1GB", 1024.
DURATION_PATTERN = r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)?\s*$"
SIZE_PATTERN = r"^\s*\d*\.?\d+\s*[A-Za-z]*\s*$"
HOSTPORT_PATTERN = r"^.+:[0-9]{1,5}$"

# Keys the chart sets itself (paths, ports, the drain timeout, wiring) or that carry or
# pair with credentials the chart reads from Secrets.
FRAGMENTS: dict[str, tuple[type[BaseModel], tuple[str, ...]]] = {
    "agentConfig": (
        _models.AgentConfig,
        # detections.notify: the chart wires receivers (and their Secrets) for the
        # collector only (`notifications`).
        ("node_name", "state_dir", "metrics_addr", "drain_timeout", "outputs", "detections.notify"),
    ),
    "agentOutput": (_models.OutputConfig, ("url", "username", "tls")),
    "collectorConfig": (
        _models.CollectorConfig,
        (
            "listen",
            "metrics_addr",
            "state_dir",
            "drain_timeout",
            "sinks",
            "listener.users",
            "listener.tls",
            "listener.require_client_cert",
            # Not wired by the chart (its certificates and port are not mounted or exposed):
            # refused by helm rather than accepted and broken.
            "audit_webhook",
            # From the chart's `notifications` (URLs and tokens are Secrets).
            "detections.notify",
            # Set by the chart from forward.agentIdentity (its CA, RBAC and volumes).
            "pod_certificates",
        ),
    ),
    "sinkSettings": (_models.SinkConfig, ("url", "username", "index", "indexer_ack", "tls")),
    "notifySettings": (_models.NotifyConfig, ("type", "username", "tls")),
}


def model_schema(model: type[BaseModel], exclude: Iterable[str] = ()) -> dict[str, Any]:
    """An object schema with the model's keys (minus ``exclude``, dotted) and nothing else."""
    excluded = set(exclude)
    properties: dict[str, Any] = {}
    secrets = {n for n, f in model.model_fields.items() if _is_secret(f.annotation)}
    for name, field in model.model_fields.items():
        if name in excluded or name in secrets or name.removesuffix("_file") in secrets:
            continue
        inner = {p.removeprefix(name + ".") for p in excluded if p.startswith(name + ".")}
        schema = _field_schema(field.annotation, field.metadata, inner)
        description = field.description or _model_doc(field.annotation)
        if description:
            schema = {"description": " ".join(description.split()), **schema}
        properties[name] = schema
    return {"type": "object", "additionalProperties": False, "properties": properties}


def fragments() -> dict[str, dict[str, Any]]:
    return {name: model_schema(model, ex) for name, (model, ex) in FRAGMENTS.items()}


def _is_secret(annotation: Any) -> bool:
    return SecretStr in (annotation, *typing.get_args(annotation))


def _model_doc(annotation: Any) -> str | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        doc = annotation.__dict__.get("__doc__")
        return doc.strip().split("\n\n")[0] if doc else None
    return None


def _field_schema(annotation: Any, metadata: list[Any], exclude: set[str]) -> dict[str, Any]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        (only,) = args
        return _nullable(_field_schema(only, metadata, exclude))
    if origin is typing.Annotated:
        base, *extra = typing.get_args(annotation)
        return _field_schema(base, [*metadata, *extra], exclude)
    if origin is typing.Literal:
        return {"enum": list(typing.get_args(annotation))}
    if origin is list:
        (item,) = typing.get_args(annotation)
        return {"type": "array", "items": _field_schema(item, [], exclude)}
    if origin is dict:
        key, value = typing.get_args(annotation)
        assert key is str, annotation
        if value is typing.Any:
            return {"type": "object"}
        return {"type": "object", "additionalProperties": _field_schema(value, [], exclude)}
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return model_schema(annotation, exclude)
    return _leaf_schema(annotation, metadata)


def _leaf_schema(annotation: Any, metadata: list[Any]) -> dict[str, Any]:
    validators = {m.func for m in metadata if isinstance(m, BeforeValidator)}
    if _types.parse_duration in validators:
        return {"type": ["number", "string"], "minimum": 0, "pattern": DURATION_PATTERN}
    if _types.parse_hostport in validators:
        return {"type": "string", "pattern": HOSTPORT_PATTERN}
    if annotation is ByteSize:
        return {"type": ["integer", "string"], "minimum": 0, "pattern": SIZE_PATTERN}
    if annotation is bool:
        return {"type": "boolean"}
    if annotation in (str, Path):
        return {"type": "string"}
    if annotation in (int, float):
        schema: dict[str, Any] = {"type": "integer" if annotation is int else "number"}
        for m in metadata:
            if isinstance(m, annotated_types.Ge):
                schema["minimum"] = m.ge
            elif isinstance(m, annotated_types.Le):
                schema["maximum"] = m.le
        return schema
    raise TypeError(f"no JSON Schema mapping for {annotation!r}; extend _leaf_schema")


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    out = dict(schema)
    if "enum" in out:
        out["enum"] = [*out["enum"], None]
    elif isinstance(out.get("type"), list):
        out["type"] = [*out["type"], "null"]
    else:
        out["type"] = [out["type"], "null"]
    return out


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    schema.setdefault("definitions", {}).update(fragments())
    SCHEMA_FILE.write_text(render(schema), encoding="utf-8")
    sys.stdout.write(f"updated {len(FRAGMENTS)} definitions in {SCHEMA_FILE}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
