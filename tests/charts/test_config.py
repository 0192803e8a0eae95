"""The configuration files the chart renders are valid for the real `kloghub validate`."""

from __future__ import annotations

import pytest
import yaml

from kloghub import detect
from tests.charts import _scenarios as sc

BACKEND_SCENARIOS = [name for name in sc.SCENARIOS if name.startswith("run-")]


@pytest.mark.parametrize("level", sc.LEVELS)
def test_rendered_agent_config_passes_kloghub_validate_for_every_level(render, level, tmp_path):
    """If this failed, agents installed at this level would exit at start with exit code 2."""
    manifests = render({"level": level})
    text, env = sc.pod(manifests, "agent", tmp_path / "root")
    result = sc.validate(text, level, tmp_path, env)
    assert result.returncode == 0, result.stderr
    data = yaml.safe_load(result.stdout)
    assert data["level"] == level
    assert data["agent"]["metrics_addr"] == "0.0.0.0:2020"


@pytest.mark.parametrize("level", [lvl for lvl in sc.LEVELS if lvl != "crawl"])
def test_rendered_collector_config_passes_kloghub_validate_for_every_level(render, level, tmp_path):
    """If this failed, the collector installed at this level would exit at start."""
    text, env = sc.pod(render({"level": level}), "collector", tmp_path / "root")
    result = sc.validate(text, level, tmp_path, env)
    assert result.returncode == 0, result.stderr
    collector = yaml.safe_load(result.stdout)["collector"]
    assert collector["listen"] == "0.0.0.0:24224"
    assert collector["metrics_addr"] == "0.0.0.0:2021"


@pytest.mark.parametrize("scenario", [*BACKEND_SCENARIOS, "everything"])
def test_rendered_config_with_pod_environment_passes_kloghub_validate(render, scenario, tmp_path):
    """If this failed, a backend's sink list (file plus credentials from the environment)
    would be refused by the loader and the pods would not start."""
    manifests = render(sc.SCENARIOS[scenario])
    level = sc.level_of(sc.SCENARIOS[scenario])
    for component in ("agent", "collector"):
        text, env = sc.pod(manifests, component, tmp_path / "root")
        result = sc.validate(text, level, tmp_path, env)
        assert result.returncode == 0, (component, result.stderr)
        for secret in sc.SECRETS.values():
            assert secret not in result.stdout  # validate masks what it prints


@pytest.mark.parametrize("component", ["agent", "collector"])
def test_a_secret_with_quote_backslash_and_newline_reaches_the_process_intact(
    render, component, tmp_path
):
    """If this failed, a Secret holding `"`, `\\` or a newline would break start-up or
    reach the handshake and the SIEM altered (the JSON environment variable defect)."""
    values = {
        "level": "run",
        "forward": {
            **sc.FORWARD_AUTH,
            "agentIdentity": "sharedUser",  # the chart's users carry hostile passwords too
            "users": [
                {"username": "edge", "passwordSecret": {"name": "edge-user", "key": "password"}}
            ],
        },
        "backends": {"elasticsearch": sc.BACKENDS["elasticsearch"]},
    }
    manifests = render(values)
    text, env = sc.pod(manifests, component, tmp_path / "root")
    result = sc.validate(text, "run", tmp_path, env)
    assert result.returncode == 0, result.stderr
    for secret in sc.SECRETS.values():
        assert secret not in result.stdout + result.stderr
    settings = sc.load(text, tmp_path, env)
    key = sc.SECRETS[("kloghub-forward", "shared-key")]
    assert sc.HOSTILE in key
    if component == "agent":
        (output,) = settings.agent.outputs
        assert output.shared_key is not None
        assert output.shared_key.get_secret_value() == key
        return
    listener = settings.collector.listener
    assert listener.shared_key is not None
    assert listener.shared_key.get_secret_value() == key
    agent, control_plane, user = listener.users  # the chart's two users, then the given one
    assert (agent.username, control_plane.username) == ("kloghub-agent", "kloghub-control-plane")
    assert (user.username, user.password.get_secret_value()) == (
        "edge",
        sc.SECRETS[("edge-user", "password")],
    )
    (sink,) = settings.collector.sinks
    assert sink.password is not None
    assert sink.password.get_secret_value() == sc.SECRETS[("es-creds", "password")]
    assert settings.search.password is not None
    assert settings.search.password.get_secret_value() == sc.SECRETS[("es-creds", "password")]


def test_notification_receivers_get_their_url_and_token_from_secrets(render, tmp_path):
    """If this failed, a receiver set in the chart's values would start without its URL
    (the collector exits) or with its Secret altered (Slack answers 404 no_service)."""
    values = {"level": "run", "notifications": sc.NOTIFICATIONS}
    text, env = sc.pod(render(values), "collector", tmp_path / "root")
    result = sc.validate(text, "run", tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert sc.SECRETS[("kloghub-slack", "url")] not in result.stdout + result.stderr
    settings = sc.load(text, tmp_path, env)
    slack, am = settings.collector.detections.notify
    assert slack.type == "slack" and slack.url is not None
    assert slack.url.get_secret_value() == sc.SECRETS[("kloghub-slack", "url")]
    assert am.name == "am" and am.group_wait == 10.0
    assert am.token is not None
    assert am.token.get_secret_value() == sc.SECRETS[("kloghub-am", "token")]
    assert am.tls.ca_file is not None and am.tls.ca_file.name == "ca.crt"


def test_rules_of_your_own_from_values_and_configmaps_are_loaded_after_the_pack(render, tmp_path):
    """If this failed, an operator's own Sigma rules given to the chart would never run
    (rules_dirs naming folders no volume fills), or load twice from the ConfigMap layout."""
    values = {
        "level": "run",
        "detectionRules": {
            "inline": {
                "mine.yaml": sc.sigma_rule("Inline rule", "0f6c1d2e-3b4a-4c5d-8e9f-a0b1c2d3e4f5")
            },
            "configMaps": ["my-sigma-rules"],
        },
    }
    manifests = render(values)
    text, env = sc.pod(manifests, "collector", tmp_path / "root")
    result = sc.validate(text, "run", tmp_path, env)
    assert result.returncode == 0, result.stderr
    settings = sc.load(text, tmp_path, env)
    detections = settings.collector.detections
    assert detections.enabled and detections.default_pack
    ruleset = detect.load([detect.default_pack(), *detections.rules_dirs])
    titles = {r.title for r in ruleset.all()}
    assert {"Inline rule", "PV deleted"} <= titles
    assert len(ruleset.all()) == len(detect.load([detect.default_pack()]).all()) + 2
    collector = sc.workload(manifests, "collector")
    assert collector is not None
    annotations = collector["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/rules" in annotations
