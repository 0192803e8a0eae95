"""Loading the effective configuration: sources, precedence, presets and errors."""

from pathlib import Path

import pytest
import yaml

from kloghub import config, core


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    import os

    for key in list(os.environ):
        if key.startswith("KLOGHUB_"):
            monkeypatch.delenv(key)


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "kloghub.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def problems_of(**kwargs) -> list[str]:
    with pytest.raises(core.ConfigError) as info:
        config.load(**kwargs)
    return info.value.problems


@pytest.mark.parametrize("level", config.LEVELS)
def test_every_level_preset_is_valid_on_its_own(level):
    """If this failed, `kloghub agent --level X` would refuse to start with no config file."""
    settings = config.load(flags={"level": level})
    assert settings.level == level


def test_presets_differ_in_what_they_turn_on():
    """If this failed, the level flag would not change what runs (the README table would lie)."""
    crawl = config.load(flags={"level": "crawl"})
    walk = config.load(flags={"level": "walk"})
    run = config.load(flags={"level": "run"})
    assert crawl.agent.outputs[0].url.startswith("store:")
    assert crawl.agent.enrichment.kubernetes_api is False
    assert walk.agent.outputs[0].url.startswith("forward://")
    assert walk.agent.sources.node.enabled is True
    assert walk.agent.sources.audit.enabled is False
    assert run.agent.sources.audit.enabled is True
    assert run.agent.filters.redact.enabled is True
    assert run.collector.detections.enabled is True
    assert run.collector.normalizer.preserve_original is True


def test_precedence_is_flags_then_env_then_file_then_preset(tmp_path, monkeypatch):
    """If this failed, an operator's override would be silently ignored."""
    path = write(
        tmp_path,
        {
            "agent": {
                "state_dir": "/from/file",
                "metrics_addr": "127.0.0.1:3000",
                "drain_timeout": "45s",
            }
        },
    )
    monkeypatch.setenv("KLOGHUB_AGENT__METRICS_ADDR", "127.0.0.1:4000")
    monkeypatch.setenv("KLOGHUB_AGENT__DRAIN_TIMEOUT", "50s")
    settings = config.load(path, {"agent": {"drain_timeout": 55}})
    assert settings.agent.state_dir == Path("/from/file")  # file over preset
    assert settings.agent.metrics_addr == "127.0.0.1:4000"  # env over file
    assert settings.agent.drain_timeout == 55  # flag over env


def test_file_overrides_merge_into_the_preset_key_by_key(tmp_path):
    """If this failed, setting one buffer key in a file would reset the others to defaults."""
    path = write(tmp_path, {"level": "run", "agent": {"buffer": {"when_full": "drop_oldest"}}})
    settings = config.load(path)
    assert settings.agent.buffer.when_full == "drop_oldest"
    assert settings.agent.buffer.max_bytes == 256 * 1024 * 1024
    assert settings.agent.sources.audit.enabled is True  # still the run preset


def test_level_comes_from_env_when_no_flag(monkeypatch):
    """If this failed, KLOGHUB_LEVEL (the chart's way) would not pick the preset."""
    monkeypatch.setenv("KLOGHUB_LEVEL", "crawl")
    assert config.load().agent.outputs[0].url.startswith("store:")


def test_nested_env_values_with_units_are_parsed(monkeypatch):
    """If this failed, KLOGHUB_AGENT__BUFFER__MAX_BYTES=512MiB would be refused."""
    monkeypatch.setenv("KLOGHUB_AGENT__BUFFER__MAX_BYTES", "512MiB")
    monkeypatch.setenv("KLOGHUB_COLLECTOR__SINKS", '[{"url": "opensearch+https://os:9200"}]')
    settings = config.load()
    assert settings.agent.buffer.max_bytes == 512 * 1024 * 1024
    assert settings.collector.sinks[0].url == "opensearch+https://os:9200"


def test_unknown_key_is_refused_with_its_full_path_and_a_suggestion(tmp_path):
    """If this failed, a typo in a config file would be silently ignored."""
    path = write(tmp_path, {"agent": {"buffer": {"max_byte": 5}}})
    assert problems_of(config_file=path) == [
        "agent.buffer.max_byte: unknown key (did you mean 'max_bytes'?)"
    ]


def test_unknown_key_inside_a_list_names_the_index(tmp_path):
    """If this failed, a typo in the third sink would be hard to find."""
    path = write(
        tmp_path, {"collector": {"sinks": [{"url": "stdout:"}, {"url": "stdout:", "zzz": 1}]}}
    )
    (problem,) = problems_of(config_file=path)
    assert problem.startswith("collector.sinks[1].zzz: unknown key")


def test_unknown_env_key_is_refused(monkeypatch):
    """If this failed, a misspelled environment variable would be silently ignored."""
    monkeypatch.setenv("KLOGHUB_AGENT__STAT_DIR", "/x")
    assert problems_of() == ["agent.stat_dir: unknown key (did you mean 'state_dir'?)"]


def test_bad_value_names_key_value_and_expectation(tmp_path):
    """If this failed, an operator would not know which value to fix, or how."""
    path = write(
        tmp_path,
        {"agent": {"sources": {"containers": {"read_from": "middle"}}, "drain_timeout": "soon"}},
    )
    problems = problems_of(config_file=path)
    assert "agent.sources.containers.read_from: got 'middle'; expected 'head' or 'tail'" in (
        problems
    )
    assert any(
        p.startswith("agent.drain_timeout: got 'soon'; expected a duration") for p in problems
    )


def test_every_error_is_reported_at_once(tmp_path):
    """If this failed, fixing a config would take one run per mistake."""
    path = write(
        tmp_path,
        {
            "agent": {"bufer": {}, "metrics_addr": "nope"},
            "collector": {"sinks": [{"url": "ftp://x"}]},
        },
    )
    problems = problems_of(config_file=path)
    assert len(problems) == 3
    assert {p.split(":")[0] for p in problems} == {
        "agent.bufer",
        "agent.metrics_addr",
        "collector.sinks[0].url",
    }


def test_credentials_in_urls_are_refused():
    """If this failed, a password in a sink URL would end up in logs."""
    problems = problems_of(
        flags={"collector": {"sinks": [{"url": "elasticsearch+https://elastic:pw@es:9200"}]}}
    )
    assert "credentials in the URL are not allowed" in problems[0]
    assert "pw@" not in problems[0] or problems[0].startswith("collector.sinks[0].url")


def test_secret_values_are_masked_in_the_dump_and_in_errors(tmp_path):
    """If this failed, `kloghub validate` would print a SIEM password to the terminal."""
    path = write(
        tmp_path,
        {
            "collector": {
                "listener": {"shared_key": "s3cret-key"},
                "sinks": [{"url": "splunk-hec+https://hec:8088", "token": "tok-123"}],
            }
        },
    )
    text = config.dump(config.load(path))
    assert "s3cret-key" not in text
    assert "tok-123" not in text
    assert "**********" in text
    bad = write(tmp_path, {"collector": {"listener": {"shared_key": {"not": "a string"}}}})
    (problem,) = problems_of(config_file=bad)
    assert "not a string" not in problem
    assert "(a secret, not shown)" in problem


def test_missing_or_malformed_config_file_is_a_clear_error(tmp_path):
    """If this failed, a wrong --config path would start with defaults instead."""
    assert problems_of(config_file=tmp_path / "nope.yaml")[0].endswith("not found")
    broken = tmp_path / "broken.yaml"
    broken.write_text("agent: [unclosed\n")
    assert "invalid YAML" in problems_of(config_file=broken)[0]
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    assert "expected a mapping" in problems_of(config_file=listy)[0]


def test_unknown_level_is_refused():
    """If this failed, --level sprint would quietly run some default."""
    assert problems_of(flags={"level": "sprint"})[0].startswith("level: got 'sprint'")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (30, 30.0),
        ("30s", 30.0),
        ("500ms", 0.5),
        ("10m", 600.0),
        ("2h", 7200.0),
        ("7d", 604800.0),
        ("1.5s", 1.5),
    ],
)
def test_durations_accept_numbers_and_units(text, seconds):
    """If this failed, `flush_interval: 500ms` (Fluent Bit's style) would be refused."""
    assert config.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["-1", -1, "5 parsecs", True, None])
def test_durations_refuse_nonsense(text):
    """If this failed, a negative or unit-less garbage timeout would be accepted."""
    with pytest.raises(ValueError, match="duration"):
        config.parse_duration(text)


def test_env_names_are_case_insensitive_and_other_programs_variables_are_ignored(monkeypatch):
    """If this failed, kloghub_agent__node_name would be ignored, or a variable that names no
    setting (KLOGHUB_KERNELS, the test harness's KLOGHUB_TEST_*) would stop every daemon."""
    monkeypatch.setenv("kloghub_agent__node_name", "node-7")
    monkeypatch.setenv("KLOGHUB_KERNELS", "python")
    monkeypatch.setenv("KLOGHUB_TEST_OPENSEARCH_URL", "http://x:9200")
    assert config.load().agent.node_name == "node-7"


def test_a_whole_section_can_come_from_one_json_variable_and_nested_ones_merge_into_it(
    monkeypatch,
):
    """If this failed, KLOGHUB_AGENT='{...}' would be taken as text, or a nested variable
    beside it would replace the section instead of merging into it."""
    monkeypatch.setenv("KLOGHUB_AGENT", '{"node_name": "n1", "drain_timeout": "40s"}')
    monkeypatch.setenv("KLOGHUB_AGENT__DRAIN_TIMEOUT", "41s")
    agent = config.load().agent
    assert (agent.node_name, agent.drain_timeout) == ("n1", 41)


def test_a_list_setting_from_the_environment_that_is_not_json_is_a_clear_error(monkeypatch):
    """If this failed, KLOGHUB_COLLECTOR__SINKS=opensearch://... would be refused with a
    pydantic trace, or worse taken as a list of characters."""
    monkeypatch.setenv("KLOGHUB_COLLECTOR__SINKS", "opensearch+https://os:9200")
    (problem,) = problems_of()
    assert problem.startswith("environment: KLOGHUB_COLLECTOR__SINKS: not valid JSON")
