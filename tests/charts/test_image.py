"""agent/Dockerfile, checked without a Docker engine: stages, user, tools, entrypoint."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import tomllib
from typing import Any

import pytest

from tests.charts import _dockerfile

BUILD_TOOLS = ("gcc", "g++", "cc", "make", "build-essential", "clang", "python3-dev", "git")


def pyproject() -> dict[str, Any]:
    text = (_dockerfile.REPO / "pyproject.toml").read_text(encoding="utf-8")
    return dict(tomllib.loads(text)["project"])


@pytest.fixture(scope="module")
def stages() -> list[_dockerfile.Stage]:
    return _dockerfile.stages()


def test_dockerfile_builds_the_wheel_in_a_stage_of_its_own(stages):
    """If this failed, the image would carry the source tree, the compilers or pip."""
    assert len(stages) >= 2
    build = stages[0]
    assert build.name
    runs = " ".join(build.args("RUN"))
    assert "pip wheel" in runs
    assert "cargo" in runs, "the build stage has the Rust toolchain for the kernels"
    final = stages[-1]
    (copy,) = final.args("COPY")
    assert copy.split() == [f"--from={build.name}", "/opt/kloghub", "/opt/kloghub"], copy
    assert "pip install" not in " ".join(final.args("RUN")), "nothing is installed at the end"


def test_base_image_is_one_build_argument_defaulting_to_a_supported_slim_python():
    """If this failed, the two stages could run different Pythons (the virtualenv built in
    the first would not run in the second) or the default base would be unsupported."""
    project = pyproject()
    minimum = tuple(int(p) for p in project["requires-python"].removeprefix(">=").split("."))
    text = _dockerfile.DOCKERFILE.read_text(encoding="utf-8")
    assert [ln for ln in text.splitlines() if ln.startswith("FROM ")] == [
        "FROM ${BASE_IMAGE} AS build",
        "FROM ${BASE_IMAGE}",
    ]
    global_args, _ = _dockerfile.parse(text)
    match = re.fullmatch(r"python:(\d+)\.(\d+)-slim-\w+", global_args["BASE_IMAGE"])
    assert match, global_args["BASE_IMAGE"]
    assert (int(match.group(1)), int(match.group(2))) >= minimum


def test_final_stage_runs_as_a_non_root_user(stages):
    """If this failed, the collector (and anything run from the image) would run as root."""
    (user,) = stages[-1].args("USER")
    uid = user.split(":")[0]
    assert uid.isdigit(), "a numeric UID lets Kubernetes check runAsNonRoot"
    assert int(uid) >= 1000


def test_final_stage_installs_no_build_tools(stages):
    """If this failed, an attacker in the container would find a compiler ready to use."""
    for instruction, arg in stages[-1].instructions:
        if instruction != "RUN":
            continue
        words = set(re.split(r"[\s;&|]+", arg))
        assert not words & set(BUILD_TOOLS), arg
        assert "apt-get install" not in arg or "--no-install-recommends" in arg


def test_entrypoint_is_the_console_script_of_the_package(stages):
    """If this failed, the chart's `args: [agent, ...]` would not reach the kloghub command."""
    project = tomllib.loads((_dockerfile.REPO / "pyproject.toml").read_text(encoding="utf-8"))[
        "project"
    ]
    (entrypoint,) = stages[-1].args("ENTRYPOINT")
    assert json.loads(entrypoint) == [next(iter(project["scripts"]))]
    assert project["scripts"]["kloghub"] == "kloghub.cli:main"


def test_dockerignore_sends_only_what_the_build_copies():
    """If this failed, the build would copy .venv, caches and state into its context."""
    ignore = (_dockerfile.DOCKERFILE.parent / "Dockerfile.dockerignore").read_text(encoding="utf-8")
    lines = [ln for ln in ignore.splitlines() if ln and not ln.startswith("#")]
    assert lines[0] == "*"
    copied = set()
    for stage in _dockerfile.stages():
        for copy in stage.args("COPY"):
            if copy.startswith("--from="):
                continue  # from another stage, not from the build context
            words = [w for w in shlex.split(copy) if not w.startswith("--")]
            copied |= {w.rstrip("/") for w in words[:-1]}
    for path in copied:
        assert f"!{path}" in lines or f"!{path}/" in lines, path


def _image_script() -> Any:
    spec = importlib.util.spec_from_file_location("image", _dockerfile.REPO / "scripts/image.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_image_content_key_changes_with_the_build_context_and_the_base_only(tmp_path, monkeypatch):
    """If this failed, `make test` would reuse an image built from other sources (or
    rebuild it for every bytecode file and build output)."""
    image = _image_script()
    for name in ("pyproject.toml", "README.md", "agent/Dockerfile", "agent/Dockerfile.dockerignore",
                 "native/Cargo.toml", "native/src/lib.rs", "src/kloghub/__init__.py"):  # fmt: skip
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    monkeypatch.setattr(image, "REPO", tmp_path)
    monkeypatch.setattr(image, "DOCKERFILE", tmp_path / "agent/Dockerfile")
    monkeypatch.setattr(image, "IGNOREFILE", tmp_path / "agent/Dockerfile.dockerignore")
    monkeypatch.setattr(image, "image_id", lambda ref: f"id-of-{ref}")
    key = image.content_key("base")
    for name in ("src/kloghub/__pycache__/x.pyc", "src/kloghub/_native.abi3.so",
                 "native/target/release/x", "bench/x.py", ".venv/x"):  # fmt: skip
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("build output")
    assert image.content_key("base") == key
    assert image.content_key("other-base") != key
    for name in ("src/kloghub/__init__.py", "native/src/lib.rs", "agent/Dockerfile", "README.md"):
        before = (tmp_path / name).read_text()
        (tmp_path / name).write_text(before + " ")
        assert image.content_key("base") != key, name
        (tmp_path / name).write_text(before)
    assert image.content_key("base") == key


def test_image_script_hashes_what_the_ignore_file_lets_into_the_build():
    """If this failed, a file the build copies could change without a rebuild."""
    image = _image_script()
    ignore = (_dockerfile.DOCKERFILE.parent / "Dockerfile.dockerignore").read_text(encoding="utf-8")
    allowed = {ln[1:].rstrip("/") for ln in ignore.splitlines() if ln.startswith("!")}
    assert allowed == set(image.CONTEXT_FILES) | set(image.CONTEXT_TREES)
