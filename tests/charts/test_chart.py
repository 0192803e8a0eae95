"""The chart lints and renders for every level and backend; its schema refuses bad values."""

from __future__ import annotations

import json
import shutil
from typing import Any

import pytest
import yaml

from tests.charts import _model_schema
from tests.charts import _scenarios as sc
from tests.charts.conftest import CHART, KUBE_VERSION, run_helm, template


@pytest.mark.parametrize("scenario", list(sc.SCENARIOS))
def test_helm_lint_passes_for_every_level_and_backend(helm, scenario, tmp_path):
    """If this failed, `helm lint --strict` would flag the chart with these values."""
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(sc.SCENARIOS[scenario]), encoding="utf-8")
    result = run_helm(
        helm, "lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION, "-f", str(path)
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("scenario", list(sc.SCENARIOS))
def test_helm_template_renders_every_level_and_backend(render, scenario):
    """If this failed, `helm install` would stop at rendering for these values."""
    manifests = render(sc.SCENARIOS[scenario])
    kinds = {m["kind"] for m in manifests}
    assert {"DaemonSet", "ConfigMap", "ServiceAccount"} <= kinds
    with_collector = sc.level_of(sc.SCENARIOS[scenario]) != "crawl"
    assert ({"StatefulSet", "Deployment"} & kinds != set()) is with_collector
    for m in manifests:
        assert m["metadata"]["name"], m["kind"]
        if m["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert m["metadata"]["namespace"] == "logging", m["kind"]


# --------------------------------------------------------------------------- refusals


def refused(helm, values: dict[str, Any], tmp_path) -> str:
    result = template(helm, values, tmp_path)
    assert result.returncode != 0, "helm template accepted values it should refuse"
    return result.stderr


def test_schema_refuses_a_wrong_level(helm, tmp_path):
    """If this failed, a typo such as `level: walkk` would install a chart that guesses."""
    stderr = refused(helm, {"level": "sprint"}, tmp_path)
    assert "level" in stderr
    assert "crawl" in stderr


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"levle": "run"}, "levle"),
        ({"agent": {"resorces": {}}}, "resorces"),
        ({"backends": {"elasticsearch": {"enabled": True, "ur": "https://es:9200"}}}, "ur"),
        ({"agent": {"config": {"bufer": {"max_bytes": "1GiB"}}}}, "bufer"),
        ({"agent": {"config": {"sources": {"containers": {"path": ["/x"]}}}}}, "path"),
        ({"collector": {"config": {"normaliser": {}}}}, "normaliser"),
        (
            {
                "backends": {
                    "splunk": {"enabled": True, "url": "https://h:8088", "sink": {"batch": 1}}
                }
            },
            "batch",
        ),
    ],
)
def test_schema_refuses_a_misspelled_key(helm, values, key, tmp_path):
    """If this failed, a misspelled value would be ignored silently and the user would run
    with a default they believe they changed."""
    stderr = refused(helm, values, tmp_path)
    assert key in stderr


@pytest.mark.parametrize(
    "values",
    [
        {"agent": {"output": {"shared_key": "hunter2"}}},
        {"agent": {"output": {"password": "hunter2"}}},
        {"collector": {"config": {"listener": {"shared_key": "hunter2"}}}},
        {"collector": {"config": {"listener": {"users": [{"username": "a", "password": "b"}]}}}},
        {"backends": {"store": {"sink": {"password": "hunter2"}}}},
        {"backends": {"elasticsearch": {"enabled": False, "url": "", "sink": {"api_key": "x"}}}},
        {"backends": {"splunk": {"enabled": False, "url": "", "sink": {"token": "x"}}}},
    ],
)
def test_schema_refuses_secrets_in_values(helm, values, tmp_path):
    """If this failed, a credential typed into values would be rendered into a ConfigMap."""
    refused(helm, values, tmp_path)


@pytest.mark.parametrize(
    "values",
    [
        {"agent": {"config": {"state_dir": "/tmp/x"}}},
        {"agent": {"config": {"metrics_addr": "127.0.0.1:9"}}},
        {"agent": {"config": {"outputs": [{"url": "stdout:"}]}}},
        {"collector": {"config": {"listen": "0.0.0.0:1"}}},
        {"collector": {"config": {"sinks": [{"url": "stdout:"}]}}},
    ],
)
def test_schema_refuses_keys_the_chart_wires_itself(helm, values, tmp_path):
    """If this failed, a value could move the state dir or a port away from the volume,
    probe or Service that the chart wired to it."""
    refused(helm, values, tmp_path)


def test_schema_refuses_credentials_in_a_backend_url(helm, tmp_path):
    """If this failed, a password in the URL would land in the ConfigMap and in logs."""
    values = {
        "level": "run",
        "backends": {"elasticsearch": {"enabled": True, "url": "https://u:p@es:9200"}},
    }
    assert "url" in refused(helm, values, tmp_path)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"level": "crawl", "backends": {"splunk": sc.BACKENDS["splunk"]}},
            "level crawl does not deploy",
        ),
        (
            {"level": "run", "backends": {"splunk": {"enabled": True, "url": "https://h:8088"}}},
            "tokenSecret.name is required",
        ),
        (
            {"level": "run", "backends": {"opensearch": {"enabled": True, "url": ""}}},
            "backends.opensearch.url is required",
        ),
        (
            {
                "backends": {
                    "elasticsearch": {
                        **sc.BACKENDS["elasticsearch"],
                        "apiKeySecret": {"name": "es-creds", "key": "api-key"},
                    }
                }
            },
            "not both",
        ),
        (
            {"level": "crawl", "agent": {"config": {"enrichment": {"node_labels": True}}}},
            "kubernetes_api",
        ),
        (
            {"agent": {"config": {"sources": {"containers": {"paths": ["/data/*.log"]}}}}},
            "outside the host paths the agent mounts",
        ),
        (
            {"agent": {"config": {"sources": {"audit": {"path": "/etc/k8s/audit.log"}}}}},
            "outside the host paths the agent mounts",
        ),
    ],
)
def test_chart_refuses_combinations_that_cannot_work(helm, values, message, tmp_path):
    """If this failed, the chart would install pods that crash or run without credentials."""
    assert message in refused(helm, values, tmp_path)


# --------------------------------------------------------------------------- schema and models


def test_config_pass_through_schema_matches_the_config_models():
    """If this failed, `helm install` would refuse a key kloghub accepts (or accept one it
    refuses) because a config model changed; run `python -m tests.charts._model_schema`."""
    schema = json.loads(_model_schema.SCHEMA_FILE.read_text(encoding="utf-8"))
    assert schema["definitions"] | _model_schema.fragments() == schema["definitions"]
    assert _model_schema.render(schema) == _model_schema.SCHEMA_FILE.read_text(encoding="utf-8")


def test_schema_accepts_sizes_and_durations_with_units(helm, render):
    """If this failed, users could not write `256MiB` or `10m` in values as they do in the
    config file."""
    values = {
        "agent": {
            "config": {
                "buffer": {"max_bytes": "256MiB", "segment_bytes": 8388608},
                "sources": {"rescan_interval": "1m", "poll_interval": 0.5},
            },
            "output": {"retry": {"initial_backoff": "500ms", "max_attempts": None}},
        },
        "backends": {"store": {"sink": {"retention": "7d", "max_store_bytes": "20GiB"}}},
    }
    assert sc.config_text(render(values), "agent")


def test_schema_refuses_a_duration_without_a_known_unit(helm, tmp_path):
    """If this failed, `flush_interval: 2 weeks` would pass helm and crash the pods."""
    refused(helm, {"agent": {"output": {"flush_interval": "2 weeks"}}}, tmp_path)


# --------------------------------------------------------------------------- NOTES.txt


def render_notes(helm, values: dict[str, Any], tmp_path) -> str:
    """NOTES.txt as `helm install` prints it (`helm template` leaves NOTES out, so a copy
    of the chart renders it as a manifest)."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    notes = chart / "templates" / "NOTES.txt"
    body = notes.read_text(encoding="utf-8")
    notes.unlink()
    (chart / "templates" / "_notes.tpl").write_text(
        '{{- define "test.notes" }}' + body + "{{- end }}", encoding="utf-8"
    )
    (chart / "templates" / "notes.yaml").write_text(
        'notes: {{ include "test.notes" . | toJson }}', encoding="utf-8"
    )
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    result = run_helm(
        helm,
        *("template", "kl", str(chart), "--namespace", "logging"),
        *("--kube-version", KUBE_VERSION, "-f", str(path)),
        *("--show-only", "templates/notes.yaml"),
    )
    assert result.returncode == 0, result.stderr
    return str(yaml.safe_load(result.stdout)["notes"])


@pytest.mark.parametrize("scenario", ["crawl", "walk", "run", "run-elasticsearch", "run-splunk"])
def test_notes_tell_how_to_check_the_rollout_and_search(helm, scenario, tmp_path):
    """If this failed, a new user would not know how to check the install or find logs."""
    values = sc.SCENARIOS[scenario]
    notes = render_notes(helm, values, tmp_path)
    assert "rollout status daemonset/kl-kloghub-agent" in notes
    crawl = sc.level_of(values) == "crawl"
    assert ("rollout status statefulset/kl-kloghub-collector" in notes) is not crawl
    if scenario == "run-splunk":
        assert "search them in Splunk" in notes
    else:
        assert "kloghub search --config /etc/kloghub/kloghub.yaml" in notes
        target = "$AGENT" if crawl else "statefulset/kl-kloghub-collector"
        assert f"exec {target} -- kloghub search" in notes


@pytest.mark.parametrize(("scenario", "warned"), [("walk", False), ("walk-open", True)])
def test_notes_warn_when_the_forward_link_is_opened(helm, scenario, warned, tmp_path):
    """If this failed, an operator who turned TLS or the NetworkPolicy off would not be
    reminded what that exposes."""
    notes = render_notes(helm, sc.SCENARIOS[scenario], tmp_path)
    assert ("WARNING: forward.tls.enabled is false" in notes) is warned
    assert ("WARNING: networkPolicy.enabled is false" in notes) is warned
