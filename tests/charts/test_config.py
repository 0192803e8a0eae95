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
    text = sc.config_text(manifests, "agent")
    assert text is not None
    result = sc.validate(text, level, tmp_path)
    assert result.returncode == 0, result.stderr
    data = yaml.safe_load(result.stdout)
    assert data["level"] == level
    assert data["agent"]["metrics_addr"] == "0.0.0.0:2020"


@pytest.mark.parametrize("level", [lvl for lvl in sc.LEVELS if lvl != "crawl"])
def test_rendered_collector_config_passes_kloghub_validate_for_every_level(render, level, tmp_path):
    """If this failed, the collector installed at this level would exit at start."""
    text = sc.config_text(render({"level": level}), "collector")
    assert text is not None
    result = sc.validate(text, level, tmp_path)
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
        text = sc.config_text(manifests, component)
        workload = sc.workload(manifests, component)
        assert text is not None
        assert workload is not None
        env = sc.pod_env(sc.pod_spec(workload)["containers"][0])
        result = sc.validate(text, level, tmp_path, env)
        assert result.returncode == 0, (component, result.stderr)
        for secret in sc.SECRETS.values():
            assert secret not in result.stdout  # validate masks what it prints


def test_a_secret_that_breaks_the_json_list_is_refused_without_leaking(render, tmp_path):
    """If this failed, a password with a quote would either be accepted corrupted or be
    printed in the pod's error log (the known limit of credentials in a JSON variable)."""
    manifests = render(sc.SCENARIOS["run-elasticsearch"])
    text = sc.config_text(manifests, "collector")
    workload = sc.workload(manifests, "collector")
    assert text is not None
    assert workload is not None
    env = sc.pod_env(sc.pod_spec(workload)["containers"][0])
    password = sc.SECRETS[("es-creds", "password")]
    env["KLOGHUB_COLLECTOR__SINKS"] = env["KLOGHUB_COLLECTOR__SINKS"].replace(
        password, 'pa"ss-9d2f'
    )
    result = sc.validate(text, "run", tmp_path, env)
    assert result.returncode == 2
    assert "9d2f" not in result.stderr + result.stdout
