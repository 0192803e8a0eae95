"""The template and policy assets, and what templates() makes of them (no server needed)."""

from __future__ import annotations

import copy
import fnmatch
import json
import re
from pathlib import Path
from typing import Any

import pytest

from kloghub import normalize
from kloghub.normalize import _templates
from tests.normalize import _audit_fields as af
from tests.normalize import _fixtures as fx

ROOT = Path(__file__).resolve().parents[2]
KINDS = ("elasticsearch", "opensearch")


def _index_templates(bodies: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in bodies.items() if k.startswith("_index_template/")}


def test_the_retention_is_rendered_into_both_policies() -> None:
    """retention_days sets the ILM delete phase and the ISM delete transition; broken, logs
    would be kept for the asset's default whatever the user configured."""
    ilm = normalize.templates("elasticsearch", 90)["_ilm/policy/kloghub-logs"]
    assert ilm["policy"]["phases"]["delete"]["min_age"] == "90d"
    assert ilm["policy"]["phases"]["delete"]["actions"] == {"delete": {}}
    assert "rollover" in ilm["policy"]["phases"]["hot"]["actions"]
    ism = normalize.templates("opensearch", 90)["_plugins/_ism/policies/kloghub-logs"]
    hot, delete = ism["policy"]["states"]
    assert hot["transitions"] == [{"state_name": "delete", "conditions": {"min_index_age": "90d"}}]
    assert delete["actions"] == [{"delete": {}}]
    assert "rollover" in hot["actions"][0]
    for bad in (0, -1, 1.5, True, "30"):
        with pytest.raises(ValueError, match="retention_days"):
            normalize.templates("elasticsearch", bad)  # type: ignore[arg-type]


def test_lifecycle_false_drops_exactly_the_parts_a_cluster_without_ilm_refuses() -> None:
    """Without lifecycle only the policy and the component naming it go, the index
    templates stay the same; broken, a cluster without ILM/ISM could not be set up."""
    for kind in KINDS:
        full = normalize.templates(kind, 30)  # type: ignore[arg-type]
        bare = normalize.templates(kind, 30, lifecycle=False)  # type: ignore[arg-type]
        dropped = set(full) - set(bare)
        assert dropped == (
            {"_ilm/policy/kloghub-logs", "_component_template/kloghub-logs@lifecycle"}
            if kind == "elasticsearch"
            else {"_plugins/_ism/policies/kloghub-logs"}
        )
        assert all(full[key] == bare[key] for key in bare)
        # Install order: policy, components, then the index templates that use them.
        kinds = [key.split("/", 1)[0] for key in full]
        assert kinds == sorted(
            kinds, key=["_ilm", "_plugins", "_component_template", "_index_template"].index
        )


def test_the_index_templates_win_and_cover_every_data_stream_the_normalizer_writes() -> None:
    """Priority above 200 and exactly one kloghub template for every document's data
    stream (rerouted ones included); broken, documents would land in the generic logs
    template's mappings."""
    docs = fx.all_documents()
    for kind in KINDS:
        templates = _index_templates(normalize.templates(kind, 30))  # type: ignore[arg-type]
        assert set(templates) == {f"_index_template/kloghub-{ds}" for ds in normalize.DATA_STREAMS}
        components = {
            key.split("/", 1)[1]
            for key in normalize.templates(kind, 30)
            if "_component_template" in key  # type: ignore[arg-type]
        }
        for body in templates.values():
            assert body["priority"] > 200 and body["data_stream"] == {}
            missing = set(body["composed_of"]) - components
            assert missing <= set(body.get("ignore_missing_component_templates", []))
        for event in docs:
            matching = [
                name
                for name, body in templates.items()
                if any(fnmatch.fnmatchcase(event.tag, p) for p in body["index_patterns"])
            ]
            assert len(matching) == 1, (event.tag, matching)
            dataset = event.record["doc"]["data_stream"]["dataset"]
            assert event.tag == f"logs-{dataset}-{event.record['doc']['data_stream']['namespace']}"


def _opensearch_view(body: Any) -> Any:
    """The Elasticsearch asset with the documented substitutions for OpenSearch applied."""
    if isinstance(body, dict):
        if body.get("type") == "flattened":
            return {"type": "flat_object"}
        return {
            k: _opensearch_view(v)
            for k, v in body.items()
            if k not in ("ignore_dynamic_beyond_limit", "ignore_missing_component_templates")
        }
    if isinstance(body, list):
        return [_opensearch_view(v) for v in body if v != "kloghub-logs@lifecycle"]
    return body


def test_the_opensearch_assets_are_the_elasticsearch_ones_with_the_documented_changes() -> None:
    """flat_object for flattened, no ILM-only or ES-only settings, nothing else differs;
    broken, the two products' mappings would drift apart unnoticed."""
    es = normalize.templates("elasticsearch", 30, lifecycle=False)
    os_ = normalize.templates("opensearch", 30, lifecycle=False)
    assert list(es) == list(os_)
    for key, body in es.items():
        assert _opensearch_view(copy.deepcopy(body)) == os_[key], key
    text = json.dumps(normalize.templates("opensearch", 30, native_types=True))
    assert "constant_keyword" not in text and '"flattened"' not in text
    assert "flat_object" not in json.dumps(
        normalize.templates("elasticsearch", 30, native_types=True)
    )
    ism = normalize.templates("opensearch", 30)["_plugins/_ism/policies/kloghub-logs"]
    patterns = [p for body in _index_templates(os_).values() for p in body["index_patterns"]]
    assert ism["policy"]["ism_template"][0]["index_patterns"] == patterns


def test_native_types_use_ecs_types_where_the_product_has_them() -> None:
    """native_types switches message to match_only_text, error.stack_trace to wildcard and
    (Elasticsearch only) data_stream.* to constant_keyword; broken, full clusters would pay
    for positions and norms they do not need."""
    es = normalize.templates("elasticsearch", 30, native_types=True)
    props = es["_component_template/kloghub-logs@mappings"]["template"]["mappings"]["properties"]
    assert props["message"]["type"] == "match_only_text"
    assert props["error"]["properties"]["stack_trace"]["type"] == "wildcard"
    assert props["data_stream"]["properties"]["dataset"]["type"] == "constant_keyword"
    os_ = normalize.templates("opensearch", 30, native_types=True)
    props = os_["_component_template/kloghub-logs@mappings"]["template"]["mappings"]["properties"]
    assert props["message"]["type"] == "match_only_text"
    assert props["data_stream"]["properties"]["dataset"]["type"] == "keyword"
    plain = normalize.templates("elasticsearch", 30)
    assert "match_only_text" not in json.dumps(plain) and "wildcard" not in json.dumps(plain)


def test_the_json_target_moves_the_flattened_field() -> None:
    """The flattened mapping follows normalizer.json_target; broken, application keys would
    be dynamically mapped and collide."""
    for kind, flat in (("elasticsearch", "flattened"), ("opensearch", "flat_object")):
        bodies = normalize.templates(kind, 30, json_target="kloghub.app")  # type: ignore[arg-type]
        props = bodies["_component_template/kloghub-logs@mappings"]["template"]["mappings"][
            "properties"
        ]
        assert "json" not in props
        assert props["kloghub"]["properties"]["app"]["type"] == flat
        assert props["kloghub"]["properties"]["offset"] == {"type": "long"}
    with pytest.raises(ValueError, match="kind"):
        normalize.templates("splunk", 30)  # type: ignore[arg-type]


def test_forwarders_points_at_the_assets_and_holds_no_copy() -> None:
    """forwarders/README.md names every asset file and forwarders/ has no JSON of its own;
    broken, a second copy could drift from what the collector installs."""
    readme = (ROOT / "forwarders" / "README.md").read_text()
    assets = Path(_templates.__file__).parent / "assets"
    for kind in KINDS:
        files = sorted(p.name for p in (assets / kind).glob("*.json"))
        assert files == sorted(_templates.asset_files(kind))  # type: ignore[arg-type]
        for name in files:
            generic = re.sub(r"^(component|index-template)", r"*/\1", name)
            assert f"`{kind}/{name}`" in readme or f"`{generic}`" in readme, name
    assert not list((ROOT / "forwarders").rglob("*.json"))


def _mapping_type(properties: dict[str, Any], field: str) -> str | None:
    node: dict[str, Any] = {"properties": properties}
    for part in field.split("."):
        node = node.get("properties", {}).get(part, {})
    return node.get("type", "object" if "properties" in node else None)


def test_every_field_detection_rules_read_has_the_type_they_expect_in_both_templates() -> None:
    """Host namespaces at spec level (boolean), capabilities, images, hostPath, subjects,
    roleRef and role rules (keyword), ids and ports (numbers), in the audit mappings of both
    products — and the bodies stay closed to everything else (dynamic: false); broken,
    Elastic's and Sigma's rules for privileged pods, wildcard roles and cluster-admin
    bindings would run on kloghub's data and never fire."""
    for kind in KINDS:
        bodies = normalize.templates(kind, 30)  # type: ignore[arg-type]
        mappings = bodies["_component_template/kloghub-kubernetes.audit_logs@mappings"]
        props = mappings["template"]["mappings"]["properties"]
        wrong = {
            field: (_mapping_type(props, af.AUDIT + field), want)
            for field, want in af.FIELD_TYPES.items()
            if _mapping_type(props, af.AUDIT + field) != want
        }
        assert not wrong, (kind, wrong)
        audit = props["kubernetes"]["properties"]["audit"]["properties"]
        for body in ("requestObject", "responseObject"):
            assert audit[body]["dynamic"] is False
            text = json.dumps(audit[body])
            assert '"enabled": false' not in text  # nothing searched for is switched off
            assert "HostNetwork" not in text  # no path that no PodSpec has
