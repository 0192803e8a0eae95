"""The kloghub command: help, validate, and honest refusals."""

import subprocess
import sys

import pytest
import yaml

from kloghub import cli
from tests._procs import run_kloghub


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    import os

    for key in list(os.environ):
        if key.startswith("KLOGHUB_"):
            monkeypatch.delenv(key)


run = run_kloghub


def test_help_lists_every_command_of_the_design():
    """If this failed, a command that DESIGN.md §7 promises would be missing."""
    result = run("--help")
    assert result.returncode == 0
    for command in ("agent", "collector", "search", "validate", "demo"):
        assert command in result.stdout
    assert "crawl" in result.stdout


@pytest.mark.parametrize("command", ["agent", "collector", "search", "validate", "demo"])
def test_every_command_has_help(command):
    """If this failed, `kloghub X --help` would not explain X to a new user."""
    result = run(command, "--help")
    assert result.returncode == 0
    assert "usage: kloghub " + command in result.stdout


def test_validate_prints_the_effective_config_with_secrets_masked(tmp_path, capsys):
    """If this failed, `kloghub validate` would not show what a daemon would run with."""
    path = tmp_path / "k.yaml"
    path.write_text(yaml.safe_dump({"collector": {"listener": {"shared_key": "hunter2"}}}))
    assert cli.main(["validate", "--config", str(path), "--level", "run"]) == 0
    out = capsys.readouterr().out
    data = yaml.safe_load(out)
    assert data["level"] == "run"
    assert data["collector"]["listener"]["shared_key"] == "**********"
    assert "hunter2" not in out


def test_validate_level_run_without_a_file_succeeds(capsys):
    """If this failed, the run preset itself would be broken."""
    assert cli.main(["validate", "--level", "run", "--section", "agent"]) == 0
    data = yaml.safe_load(capsys.readouterr().out)
    assert set(data) == {"level", "agent"}
    assert data["agent"]["sources"]["audit"]["enabled"] is True


def test_validate_reports_every_error_and_exits_2(tmp_path):
    """If this failed, CI could not use `kloghub validate` to reject a bad config."""
    path = tmp_path / "k.yaml"
    path.write_text(
        yaml.safe_dump({"agent": {"bufer": {}, "sources": {"containers": {"read_from": "middle"}}}})
    )
    result = run("validate", "--config", str(path))
    assert result.returncode == 2
    assert "2 problems" in result.stderr
    assert "agent.bufer: unknown key (did you mean 'buffer'?)" in result.stderr
    assert "agent.sources.containers.read_from: got 'middle'" in result.stderr
    assert result.stdout == ""


def test_flags_override_the_config(tmp_path, capsys):
    """If this failed, `--state-dir` and `--output` on the command line would be ignored."""
    assert cli.main(["validate", "--level", "crawl", "--section", "agent"]) == 0
    capsys.readouterr()
    args = cli.build_parser().parse_args(
        [
            "agent",
            "--state-dir",
            str(tmp_path),
            "--output",
            "file:/tmp/x.ndjson",
            "--path",
            "/logs/*.log",
            "--level",
            "crawl",
        ]
    )
    from kloghub.cli import _main

    settings = _main._load(args)
    assert settings.agent.state_dir == tmp_path
    assert [o.url for o in settings.agent.outputs] == ["file:/tmp/x.ndjson"]
    assert settings.agent.sources.containers.paths == ["/logs/*.log"]


def test_collector_refuses_level_crawl():
    """If this failed, a collector would start at a level where there is none."""
    result = run("collector", "--level", "walk", "--listen", "bad")
    assert result.returncode == 2
    assert "collector.listen" in result.stderr
    result = run_kloghub("collector", env={"KLOGHUB_LEVEL": "crawl", "PATH": ""})
    assert result.returncode == 2
    assert "does not run at level crawl" in result.stderr


def test_cli_levels_are_the_config_presets():
    """If this failed, `--level` would offer a preset the config does not have (or miss one)."""
    from kloghub import config
    from kloghub.cli import _main

    assert tuple(_main.LEVELS) == tuple(config.LEVELS)


def test_search_help_imports_no_framework():
    """If this failed, `kloghub search --help` would pay for pydantic, aiohttp and
    prometheus-client at start-up again (issue: it must start in well under a second)."""
    code = (
        "import sys\n"
        "from kloghub import cli\n"
        "try:\n"
        "    cli.main(['search', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = [m for m in ('pydantic', 'pydantic_settings', 'aiohttp', 'prometheus_client',"
        " 'elasticsearch', 'opensearchpy', 'kubernetes') if m in sys.modules]\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert "HEAVY []" in result.stderr, result.stderr


UNAUTHENTICATED = "accepts Forward peers without authentication"


def test_validate_warns_about_a_listener_without_authentication():
    """If this failed, an operator could deploy a collector that anyone on the network can
    write into without being told."""
    result = run("validate", "--level", "walk")
    assert result.returncode == 0
    assert f"kloghub: warning: collector.listener (127.0.0.1:24224) {UNAUTHENTICATED}" in (
        result.stderr
    )
    assert yaml.safe_load(result.stdout)["level"] == "walk"  # stdout stays parseable YAML


def test_validate_warns_that_run_without_credentials_refuses_every_peer():
    """If this failed, a collector at level run with no credentials configured would
    silently refuse every agent."""
    result = run("validate", "--level", "run")
    assert result.returncode == 0
    assert "collector.listener (127.0.0.1:24224) refuses every Forward peer" in result.stderr
    assert UNAUTHENTICATED not in result.stderr


@pytest.mark.parametrize(
    "listener",
    [
        {"shared_key": "k"},
        {"users": [{"username": "node-a", "password": "p"}]},
        {
            "tls": {"enabled": True, "ca_file": "/ca.crt", "cert_file": "/c", "key_file": "/k"},
            "require_client_cert": True,
        },
    ],
    ids=["shared-key", "users", "client-cert"],
)
def test_validate_does_not_warn_when_the_listener_authenticates(tmp_path, listener):
    """If this failed, the warning would cry wolf on a properly secured collector and
    operators would learn to ignore it."""
    path = tmp_path / "k.yaml"
    path.write_text(yaml.safe_dump({"collector": {"listener": listener}}))
    result = run("validate", "--config", str(path), "--level", "run")
    assert result.returncode == 0, result.stderr
    assert UNAUTHENTICATED not in result.stderr


@pytest.mark.parametrize(
    "listener",
    [
        {"tls": {"enabled": True, "cert_file": "/c", "key_file": "/k"}},
        {
            "tls": {"enabled": True, "cert_file": "/c", "key_file": "/k"},
            "require_client_cert": True,
        },
    ],
    ids=["tls-only", "client-cert-without-ca"],
)
def test_validate_warns_when_tls_does_not_check_the_client(tmp_path, listener):
    """If this failed, server-only TLS (encryption, no identity) would pass as
    authentication."""
    path = tmp_path / "k.yaml"
    path.write_text(yaml.safe_dump({"collector": {"listener": listener}}))
    result = run("validate", "--config", str(path), "--level", "walk")
    assert result.returncode == 0, result.stderr
    assert UNAUTHENTICATED in result.stderr
    at_run = run("validate", "--config", str(path), "--level", "run")
    assert "refuses every Forward peer" in at_run.stderr


@pytest.mark.parametrize("args", [("--level", "crawl"), ("--level", "run", "--section", "agent")])
def test_validate_warns_only_where_a_listener_is_shown(args):
    """If this failed, `validate --section agent` (or crawl, with no collector) would
    warn about a listener that is not part of what was asked."""
    result = run("validate", *args)
    assert result.returncode == 0
    assert UNAUTHENTICATED not in result.stderr


def test_validate_shows_the_rules_the_detections_load(tmp_path, capsys):
    """If this failed, a user could not see from `kloghub validate` which rules run, in
    which mode, before deploying."""
    path = tmp_path / "k.yaml"
    exec_rule = "faa4761f-d604-4387-84c2-e2ed3d5931b1"
    path.write_text(
        yaml.safe_dump({"collector": {"detections": {"rules": {exec_rule: {"mode": "dry-run"}}}}})
    )
    assert cli.main(["validate", "--config", str(path), "--level", "run"]) == 0
    out = capsys.readouterr().out
    assert yaml.safe_load(out)["collector"]["detections"]["enabled"] is True
    summary = [line for line in out.splitlines() if line.startswith("# collector.detections")]
    assert summary and "rules loaded" in summary[0] and "mode alert" in summary[0]
    assert f"#   dry-run: {exec_rule}" in out


def test_validate_refuses_a_rule_setting_that_names_no_rule(tmp_path):
    """If this failed, a misspelt rule id in the tuning would be ignored silently."""
    path = tmp_path / "k.yaml"
    path.write_text(yaml.safe_dump({"collector": {"detections": {"rules": {"no-such-rule": {}}}}}))
    result = run("validate", "--config", str(path), "--level", "run")
    assert result.returncode == 2
    assert "collector.detections.rules.no-such-rule: names no loaded rule" in result.stderr


def test_agent_detections_need_the_node_store(tmp_path):
    """If this failed, agent.detections could be on at walk or run, where no agent code
    reads it (the collector runs the rules there)."""
    path = tmp_path / "k.yaml"
    path.write_text(yaml.safe_dump({"agent": {"detections": {"enabled": True}}}))
    result = run("validate", "--config", str(path), "--level", "walk")
    assert result.returncode == 2
    assert "needs the store: output" in result.stderr
    assert cli.main(["validate", "--config", str(path), "--level", "crawl"]) == 0
