"""Values the chart is rendered with in the tests, and helpers to read the manifests.

Secrets are referenced by name only; ``SECRETS`` holds the values a cluster would have in
them, which only the simulated kubelet (``pod_env``) ever sees.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kloghub import config

Manifest = dict[str, Any]

SECRETS: dict[tuple[str, str], str] = {
    ("kloghub-forward", "shared-key"): "forward-key-7f3a9c",
    ("es-creds", "password"): "es-password-51be0d",
    ("es-creds", "api-key"): "ZXMtaWQ6ZXMta2V5LTk5YjE=",
    ("os-creds", "password"): "os-password-c0ffee",
    ("splunk-hec", "token"): "00000000-hec-token-4e1d",
}
NODE = "node-a"

FORWARD_AUTH = {"sharedKeySecret": {"name": "kloghub-forward", "key": "shared-key"}}
CA = {"caSecret": {"name": "backend-ca", "key": "ca.crt"}, "verify": True}
BACKENDS: dict[str, dict[str, Any]] = {
    "elasticsearch": {
        "enabled": True,
        "url": "https://es.search.svc:9200",
        "username": "elastic",
        "passwordSecret": {"name": "es-creds", "key": "password"},
        "tls": CA,
    },
    "opensearch": {
        "enabled": True,
        "url": "https://opensearch.search.svc:9200",
        "username": "admin",
        "passwordSecret": {"name": "os-creds", "key": "password"},
        "tls": CA,
    },
    "splunk": {
        "enabled": True,
        "url": "https://hec.splunk.svc:8088",
        "tokenSecret": {"name": "splunk-hec", "key": "token"},
        "index": "kubernetes",
        "indexerAck": True,
    },
}

SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "crawl": {"level": "crawl"},
    "walk": {"level": "walk"},
    "run": {"level": "run"},
    **{
        f"run-{name}": {"level": "run", "forward": FORWARD_AUTH, "backends": {name: block}}
        for name, block in BACKENDS.items()
    },
    "run-elasticsearch-api-key": {
        "level": "run",
        "backends": {
            "elasticsearch": {
                "enabled": True,
                "url": "https://es.search.svc:9200",
                "apiKeySecret": {"name": "es-creds", "key": "api-key"},
            }
        },
    },
    "walk-deployment": {"level": "walk", "collector": {"kind": "Deployment"}},
    "everything": {
        "level": "run",
        "forward": {
            **FORWARD_AUTH,
            "tls": {"enabled": True, "secretName": "kloghub-forward-tls", "verify": True},
        },
        "agent": {
            "config": {
                "enrichment": {"namespace_metadata": True, "node_labels": True},
                "filters": {"exclude_namespaces": ["kube-system"]},
                "buffer": {"max_bytes": "512MiB", "when_full": "block"},
            },
            "output": {"compress": "gzip", "flush_interval": "2s"},
            "dockerLogs": True,
            "drainTimeoutSeconds": 45,
        },
        "collector": {
            "config": {"normalizer": {"namespace": "prod"}, "log_level": "debug"},
            "autoscaling": {"enabled": True},
        },
        "backends": {
            "elasticsearch": {**BACKENDS["elasticsearch"], "sink": {"concurrency": 4}},
            "splunk": BACKENDS["splunk"],
            "store": {"sink": {"retention": "14d"}},
        },
        "metrics": {"serviceMonitor": {"enabled": True}},
    },
}
LEVELS = ("crawl", "walk", "run")
SECRET_KEYS = frozenset({"shared_key", "password", "token", "api_key"})


# --------------------------------------------------------------------------- manifests


def level_of(values: dict[str, Any]) -> str:
    return str(values.get("level", "walk"))


def find(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def workload(manifests: list[Manifest], component: str) -> Manifest | None:
    """The DaemonSet, StatefulSet or Deployment of ``agent`` or ``collector``."""
    for m in manifests:
        labels = m["metadata"].get("labels", {})
        if (
            m["kind"] in ("DaemonSet", "StatefulSet", "Deployment")
            and labels.get("app.kubernetes.io/component") == component
        ):
            return m
    return None


def pod_spec(manifest: Manifest) -> dict[str, Any]:
    return manifest["spec"]["template"]["spec"]


def all_containers(manifests: list[Manifest]) -> list[tuple[Manifest, dict[str, Any]]]:
    """(workload, container) for every container and init container of every workload."""
    out = []
    for m in manifests:
        if m["kind"] in ("DaemonSet", "StatefulSet", "Deployment", "Job", "CronJob", "Pod"):
            spec = pod_spec(m)
            out += [(m, c) for c in spec.get("initContainers", []) + spec["containers"]]
    return out


def config_text(manifests: list[Manifest], component: str) -> str | None:
    """The kloghub.yaml that the chart renders for ``agent`` or ``collector``."""
    for m in find(manifests, "ConfigMap"):
        if m["metadata"]["labels"].get("app.kubernetes.io/component") == component:
            return str(m["data"]["kloghub.yaml"])
    return None


# --------------------------------------------------------------------------- the kubelet

_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def pod_env(container: dict[str, Any]) -> dict[str, str]:
    """The environment the kubelet gives the container: downward API, Secrets, $(VAR)."""
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = _REF.sub(
                lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)),
                item["value"],
            )
            continue
        source = item["valueFrom"]
        if "fieldRef" in source:
            assert source["fieldRef"]["fieldPath"] == "spec.nodeName", source
            env[item["name"]] = NODE
        else:
            ref = source["secretKeyRef"]
            env[item["name"]] = SECRETS[(ref["name"], ref["key"])]
    return env


def validate(
    text: str, level: str, tmp_path: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``kloghub validate --config FILE --level LEVEL`` as a separate process."""
    path = tmp_path / f"kloghub-{level}.yaml"
    path.write_text(text, encoding="utf-8")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KLOGHUB_")}
    return subprocess.run(
        [sys.executable, "-m", "kloghub", "validate", "--config", str(path), "--level", level],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, **(env or {})},
        check=False,
    )


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    try:
        for key in [k for k in os.environ if k.startswith("KLOGHUB_")]:
            del os.environ[key]
        os.environ.update(env)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def load(config_text: str, tmp_path: Path, env: dict[str, str] | None = None) -> config.Settings:
    """The settings a pod would run with: the loader on the file and the pod's environment."""
    path = tmp_path / "kloghub.yaml"
    path.write_text(config_text, encoding="utf-8")
    with _environment(env or {}):
        return config.load(path)
