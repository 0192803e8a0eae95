"""The configuration files the chart renders are valid for the real `kloghub validate`."""

from __future__ import annotations

import pytest
import yaml

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
