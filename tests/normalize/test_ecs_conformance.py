"""Every field kloghub emits is an ECS 9.4 field of a compatible type, or a documented
extension; and the index templates map each of them with a type of the same family."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from kloghub import config, core, normalize, parse
from tests.normalize import _fixtures as fx

_TEXT = {"keyword", "constant_keyword", "wildcard", "text", "match_only_text"}
_INTEGER = {"long", "integer", "short", "byte", "unsigned_long"}
_NUMBER = _INTEGER | {"float", "double", "scaled_float", "half_float"}
# Portable stand-ins in the templates (the minimal Elasticsearch build lacks the ECS type),
# and date_nanos, which kloghub uses on purpose for @timestamp (nanosecond ordering).
_TEMPLATE_SUBSTITUTES = {
    ("match_only_text", "text"),
    ("wildcard", "text"),
    ("constant_keyword", "keyword"),
    ("date", "date_nanos"),
}


@cache
def _documents() -> tuple[core.Event, ...]:
    return tuple(fx.all_documents())


def _leaves(doc: dict[str, Any], ecs: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """ECS leaf paths and values; extension subtrees are returned whole under their root."""
    out = []
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if not prefix and key in (*normalize.EXTENSION_FIELDS, "json"):
            out.append((path, value))
        elif isinstance(value, dict) and ecs.get(path, {}).get("type") not in (
            "object",
            "flattened",
        ):
            out.extend(_leaves(value, ecs, path + "."))
        else:
            out.append((path, value))
    return out


def _fits(ecs_type: str, value: Any) -> bool:
    if ecs_type in _TEXT:
        return isinstance(value, str)
    if ecs_type == "date":
        return isinstance(value, str) and parse.parse_rfc3339(value.encode()) is not None
    if ecs_type == "ip":
        return isinstance(value, str) and fx.is_ip(value)
    if ecs_type in _INTEGER:
        return isinstance(value, int) and not isinstance(value, bool)
    if ecs_type in _NUMBER:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if ecs_type == "boolean":
        return isinstance(value, bool)
    if ecs_type in ("object", "flattened"):
        return isinstance(value, dict)
    return False


def test_every_emitted_field_is_ecs_or_a_documented_extension() -> None:
    """Each leaf of every document made from the fixtures is an ECS 9.4 field whose type
    takes the value (lists where ECS normalizes to arrays, allowed values respected), or
    sits under kubernetes.*, kloghub.*, stream or the JSON target; broken, documents would
    carry fields that ECS-based rules misread or that the ECS mappings refuse."""
    ecs = fx.ecs_fields()
    seen = set()
    for event in _documents():
        for path, value in _leaves(event.record["doc"], ecs):
            if path in (*normalize.EXTENSION_FIELDS, "json"):
                continue
            assert path in ecs, f"{path} is neither an ECS 9.4 field nor a documented extension"
            field = ecs[path]
            if "array" in field.get("normalize", []):
                assert isinstance(value, list), f"ECS wants {path} as an array, got {value!r}"
            values = value if isinstance(value, list) else [value]
            for item in values:
                assert _fits(field["type"], item), f"{path}={item!r} does not fit {field['type']}"
            allowed = {entry["name"] for entry in field.get("allowed_values", [])}
            if allowed:
                assert set(values) <= allowed, f"{path}={values!r} not in ECS's allowed values"
            seen.add(path)
    # The fixtures exercise the whole breadth of what the normalizer emits.
    assert {
        "@timestamp",
        "message",
        "event.original",
        "event.ingested",
        "event.category",
        "event.type",
        "ecs.version",
        "data_stream.dataset",
        "log.file.path",
        "log.level",
        "error.stack_trace",
        "container.image.hash.all",
        "container.runtime",
        "orchestrator.resource.type",
        "host.name",
        "source.ip",
        "user_agent.original",
        "related.user",
    } <= seen


def test_the_extension_roots_are_the_documented_ones() -> None:
    """No top-level field outside ECS appears but the documented extensions; broken, the
    extension list in the docs would not be the whole truth."""
    ecs_roots = {path.split(".", 1)[0] for path in fx.ecs_fields()}
    assert ecs_roots == set(normalize.ROOT_FIELDS)
    for event in _documents():
        extra = set(event.record["doc"]) - ecs_roots
        assert extra <= {*normalize.EXTENSION_FIELDS, "json"}, extra


def _mapping_type(properties: dict[str, Any], path: str) -> str | None:
    node: dict[str, Any] = {"properties": properties}
    for part in path.split("."):
        props = node.get("properties")
        if props is None or part not in props:
            return None
        node = props[part]
    kind = node.get("type", "object")
    return str(kind)


@pytest.mark.parametrize("kind", ["elasticsearch", "opensearch"])
@pytest.mark.parametrize("native", [False, True])
def test_templates_map_every_emitted_ecs_field_with_its_ecs_type(kind: str, native: bool) -> None:
    """Each ECS field the documents carry is mapped explicitly (not left to dynamic
    mapping) with ECS's type or a documented stand-in; broken, an IP or a date would be
    indexed as text and range or CIDR queries would silently miss."""
    ecs = fx.ecs_fields()
    bodies = normalize.templates(kind, 30, native_types=native)  # type: ignore[arg-type]
    mappings = bodies["_component_template/kloghub-logs@mappings"]["template"]["mappings"]
    properties = mappings["properties"]
    paths = {
        path
        for event in _documents()
        for path, _ in _leaves(event.record["doc"], ecs)
        if path in ecs
    }
    for path in sorted(paths):
        wanted = ecs[path]["type"]
        got = _mapping_type(properties, path)
        assert got is not None, f"{path} is not mapped in the {kind} template"
        if native and not (kind == "opensearch" and wanted == "constant_keyword"):
            assert got == wanted or (wanted, got) in {("date", "date_nanos")}, (path, got, wanted)
        else:
            assert got == wanted or (wanted, got) in _TEMPLATE_SUBSTITUTES, (path, got, wanted)


def test_a_json_target_that_would_overwrite_ecs_is_refused() -> None:
    """normalizer.json_target may not name an ECS field set or an extension; broken,
    application keys would overwrite ECS fields and break the mappings."""
    for target in ("event", "kubernetes.app", "a..b"):
        with pytest.raises(core.ConfigError):
            normalize.Normalizer(config.NormalizerConfig(json_target=target))
    normalize.Normalizer(config.NormalizerConfig(json_target="kloghub.app"))
