"""Helm for the chart tests, and the chart rendered with the values of each scenario.

Helm comes from ``KLOGHUB_HELM`` or the cache that ``scripts/get_helm.py`` fills. Without
it the chart tests are skipped on a developer machine and fail in CI (``CI=true``).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "kloghub"
RELEASE = "kl"
NAMESPACE = "logging"
KUBE_VERSION = "1.31.0"

Manifests = list[dict[str, Any]]


def _find_helm() -> Path | None:
    given = os.environ.get("KLOGHUB_HELM")
    if given:
        return Path(given)
    cache = os.environ.get("KLOGHUB_CACHE") or str(Path.home() / ".cache" / "kloghub")
    path = Path(cache).expanduser() / "bin" / "helm"
    return path if path.exists() else None


def missing(message: str) -> NoReturn:
    """A tool the tests need is missing: skip on a developer machine, fail in CI."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def helm() -> Path:
    path = _find_helm()
    if path is None or not path.exists():
        missing(
            "helm is not installed for the chart tests: run `python3 scripts/get_helm.py` "
            "(builds it once from the Go module proxy) or set KLOGHUB_HELM=/path/to/helm"
        )
    return path


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm), *args], capture_output=True, text=True, timeout=120, check=False
    )


def template(
    helm: Path, values: dict[str, Any], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """``helm template`` of the chart with ``values`` (as a values file)."""
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return run_helm(
        helm,
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        KUBE_VERSION,
        "--values",
        str(path),
    )


@pytest.fixture(scope="session")
def render(
    helm: Path, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[dict[str, Any]], Manifests]:
    """Render the chart with some values and parse every manifest (cached per values)."""
    cache: dict[str, Manifests] = {}

    def _render(values: dict[str, Any]) -> Manifests:
        key = json.dumps(values, sort_keys=True)
        if key not in cache:
            result = template(helm, values, tmp_path_factory.mktemp("render"))
            assert result.returncode == 0, result.stderr
            cache[key] = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
        return cache[key]

    return _render
