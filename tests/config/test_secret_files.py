"""Secrets read from files (``X_file``): resolved at load, exclusive, masked, exact."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from kloghub import config, core


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for key in list(os.environ):
        if key.startswith("KLOGHUB_"):
            monkeypatch.delenv(key)


HOSTILE = "pa\"ss\\wo\nrd $(X) '{}"


def secret(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    return path


def load_yaml(tmp_path: Path, data: dict) -> config.Settings:
    path = tmp_path / "kloghub.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return config.load(path, {"level": "run"})


def problems(tmp_path: Path, data: dict) -> list[str]:
    with pytest.raises(core.ConfigError) as info:
        load_yaml(tmp_path, data)
    return info.value.problems


def test_every_secret_of_every_model_can_come_from_a_file(tmp_path):
    """If this failed, a secret would still have to be pasted into the config or a JSON
    environment variable, where quotes and backslashes break it."""
    files = {
        name: secret(tmp_path, name, f"{HOSTILE}-{name}\n")
        for name in ("fwd", "out-pw", "lst", "user", "sink-pw", "sink-key", "hec", "s-pw", "s-key")
    }
    data = {
        "agent": {
            "outputs": [
                {
                    "url": "forward://c:24224",
                    "shared_key_file": str(files["fwd"]),
                    "username": "node-a",
                    "password_file": str(files["out-pw"]),
                }
            ]
        },
        "collector": {
            "listener": {
                "shared_key_file": str(files["lst"]),
                "users": [{"username": "node-a", "password_file": str(files["user"])}],
            },
            "sinks": [
                {
                    "url": "opensearch+https://os:9200",
                    "username": "u",
                    "password_file": str(files["sink-pw"]),
                },
                {"url": "elasticsearch+https://es:9200", "api_key_file": str(files["sink-key"])},
                {"url": "splunk-hec+https://hec:8088", "token_file": str(files["hec"])},
            ],
        },
        "search": {
            "store": "opensearch+https://os:9200",
            "password_file": str(files["s-pw"]),
        },
    }
    settings = load_yaml(tmp_path, data)
    output = settings.agent.outputs[0]
    listener = settings.collector.listener
    sinks = settings.collector.sinks
    got = {
        "fwd": output.shared_key,
        "out-pw": output.password,
        "lst": listener.shared_key,
        "user": listener.users[0].password,
        "sink-pw": sinks[0].password,
        "sink-key": sinks[1].api_key,
        "hec": sinks[2].token,
        "s-pw": settings.search.password,
    }
    for name, value in got.items():
        assert value is not None, name
        assert value.get_secret_value() == f"{HOSTILE}-{name}", name
    s_key = secret(tmp_path, "s-key2", "k\n")
    data["search"] = {"store": "elasticsearch+https://es:9200", "api_key_file": str(s_key)}
    settings = load_yaml(tmp_path, data)
    assert settings.search.api_key is not None
    assert settings.search.api_key.get_secret_value() == "k"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("key", "key"),
        ("key\n", "key"),
        ("key\r\n", "key"),
        ("key\n\n", "key\n"),
        ("  key \t", "  key \t"),
        ("line1\nline2\n", "line1\nline2"),
    ],
)
def test_one_trailing_line_ending_is_removed_and_nothing_else(tmp_path, content, expected):
    """If this failed, a key written by `echo` (or `kubectl create secret --from-file`)
    would carry its newline into the handshake, or a deliberate space would be lost."""
    path = secret(tmp_path, "key", content)
    settings = load_yaml(tmp_path, {"collector": {"listener": {"shared_key_file": str(path)}}})
    assert settings.collector.listener.shared_key is not None
    assert settings.collector.listener.shared_key.get_secret_value() == expected


def test_a_secret_from_the_environment_file_path_works_too(tmp_path, monkeypatch):
    """If this failed, KLOGHUB_..._FILE variables (the Docker secrets convention) would be
    ignored."""
    path = secret(tmp_path, "key", HOSTILE + "\n")
    monkeypatch.setenv("KLOGHUB_COLLECTOR__LISTENER__SHARED_KEY_FILE", str(path))
    settings = config.load(None, {"level": "walk"})
    assert settings.collector.listener.shared_key is not None
    assert settings.collector.listener.shared_key.get_secret_value() == HOSTILE


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "absent", "no such file"),
        (lambda d: d, "is a directory"),
        (lambda d: secret(d, "empty", ""), "is empty"),
        (lambda d: secret(d, "newline", "\n"), "is empty"),
        (lambda d: secret(d, "latin1", b"caf\xe9"), "is not UTF-8 text"),
        (lambda d: secret(d, "huge", b"x" * (65 * 1024)), "larger than 64 KiB"),
    ],
)
def test_a_bad_secret_file_is_a_clear_error_naming_key_and_file(tmp_path, make, message):
    """If this failed, a missing or empty Secret mount would start the daemon with no key
    (or an empty one) instead of refusing with the reason."""
    path = make(tmp_path)
    (problem,) = problems(tmp_path, {"collector": {"listener": {"shared_key_file": str(path)}}})
    assert problem.startswith(f"collector.listener.shared_key_file: {path}: {message}")


def test_an_unreadable_secret_file_is_a_clear_error(tmp_path):
    """If this failed, a secret path the process cannot open (here: below a plain file,
    as with a wrong mount) would crash with a traceback instead of a sentence."""
    path = secret(tmp_path, "key", "k") / "child"
    (problem,) = problems(
        tmp_path, {"agent": {"outputs": [{"url": "forward://c:1", "shared_key_file": str(path)}]}}
    )
    assert problem.startswith(f"agent.outputs[0].shared_key_file: {path}: cannot be read")


def test_inline_value_and_file_together_are_refused_without_showing_either(tmp_path):
    """If this failed, one of two conflicting secrets would win silently."""
    path = secret(tmp_path, "pw", "from-file-3e1")
    data = {
        "collector": {
            "sinks": [
                {"url": "splunk-hec+https://h:8088", "token": "inline-77a", "token_file": str(path)}
            ]
        }
    }
    (problem,) = problems(tmp_path, data)
    assert problem == "collector.sinks[0].token_file: set token or token_file, not both"
    assert "3e1" not in problem
    assert "77a" not in problem


def test_a_user_needs_a_password_or_a_password_file(tmp_path):
    """If this failed, a handshake user could be configured without any password."""
    (problem,) = problems(tmp_path, {"collector": {"listener": {"users": [{"username": "a"}]}}})
    assert problem.startswith("collector.listener.users[0].password: got (missing)")


def test_validate_masks_a_secret_read_from_a_file_and_shows_the_path(tmp_path, capsys):
    """If this failed, `kloghub validate` would print the content of a mounted Secret."""
    from kloghub import cli

    path = secret(tmp_path, "key", HOSTILE)
    cfg = tmp_path / "k.yaml"
    cfg.write_text(yaml.safe_dump({"collector": {"listener": {"shared_key_file": str(path)}}}))
    assert cli.main(["validate", "--config", str(cfg), "--level", "run"]) == 0
    out = capsys.readouterr().out
    listener = yaml.safe_load(out)["collector"]["listener"]
    assert listener["shared_key"] == "**********"
    assert listener["shared_key_file"] == str(path)
    assert 'pa"ss' not in out


def test_changing_another_setting_keeps_the_secret_read_from_the_file(tmp_path):
    """If this failed, assigning any setting of a model with a file secret (validated
    again on assignment) would raise "not both" or read the file again."""
    path = secret(tmp_path, "key", "k1")
    settings = load_yaml(tmp_path, {"collector": {"listener": {"shared_key_file": str(path)}}})
    path.write_text("k2")
    listener = settings.collector.listener
    listener.max_connections = 7
    assert listener.shared_key is not None
    assert listener.shared_key.get_secret_value() == "k1"
    with pytest.raises(ValueError, match="not both"):
        listener.shared_key = "inline"  # type: ignore[assignment]
