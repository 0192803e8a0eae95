"""Values the chart is rendered with in the tests, and helpers to read the manifests.

Secrets are referenced by name only; ``SECRETS`` holds the values a cluster would have in
them, which only the simulated kubelet (``pod_env``, ``pod_files``) ever sees. Each holds
a quote, a backslash and a newline: what broke JSON environment variables must reach the
process intact. Secrets the chart generates itself are read from the rendered manifests.
"""

from __future__ import annotations

import base64
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

HOSTILE = '"\\\n'
"""A quote, a backslash and a newline: the characters JSON and shell quoting trip on."""
SECRETS: dict[tuple[str, str], str] = {
    ("kloghub-forward", "shared-key"): f"forward-key{HOSTILE}7f3a9c",
    ("es-creds", "password"): f"es-password{HOSTILE}51be0d",
    ("es-creds", "api-key"): "ZXMtaWQ6ZXMta2V5LTk5YjE=",
    ("os-creds", "password"): f"os-pass{HOSTILE}word-c0ffee",
    ("splunk-hec", "token"): "00000000-hec-token-4e1d",
    ("edge-user", "password"): f"edge{HOSTILE}pw-b7e2",
    ("agent-users", "agent"): f"agent{HOSTILE}pw-1a2b",
    ("agent-users", "control-plane"): f"control{HOSTILE}plane-pw-3c4d",
    ("kloghub-slack", "url"): f"https://hooks.example/services/T0/B0/s{HOSTILE}3cr3t",
    ("kloghub-am", "url"): "http://alertmanager.monitoring:9093",
    ("kloghub-am", "token"): f"am-token{HOSTILE}9f8e",
    # Certificates are read when a daemon starts, not by the loader: any text stands in.
    ("kloghub-forward-tls", "ca.crt"): "-----BEGIN CERTIFICATE-----\n(test)\n",
    ("kloghub-forward-tls", "tls.crt"): "-----BEGIN CERTIFICATE-----\n(test)\n",
    ("kloghub-forward-tls", "tls.key"): "-----BEGIN PRIVATE KEY-----\n(test)\n",
    ("backend-ca", "ca.crt"): "-----BEGIN CERTIFICATE-----\n(test)\n",
    # What cert-manager writes for the Certificate the chart renders (run-cert-manager).
    ("kl-kloghub-forward-tls", "ca.crt"): "-----BEGIN CERTIFICATE-----\n(test)\n",
    ("kl-kloghub-forward-tls", "tls.crt"): "-----BEGIN CERTIFICATE-----\n(test)\n",
    ("kl-kloghub-forward-tls", "tls.key"): "-----BEGIN PRIVATE KEY-----\n(test)\n",
}


def sigma_rule(title: str, uid: str) -> str:
    """A small Sigma rule of an operator's own (an audit verb on a resource)."""
    return (
        f"title: {title}\nid: {uid}\nlevel: low\n"
        "logsource: {product: kubernetes, service: audit}\n"
        "detection:\n  sel: {verb: delete, objectRef.resource: persistentvolumes}\n"
        "  condition: sel\n"
    )


CONFIGMAPS: dict[str, dict[str, str]] = {
    # An operator's own ConfigMap of Sigma rules (detectionRules.configMaps).
    "my-sigma-rules": {
        "pv-deleted.yml": sigma_rule("PV deleted", "6d1f7c38-3f7e-4c1e-9c77-2b1f0d6a5e01"),
    },
}
CERTIFICATES = frozenset(key for key in SECRETS if key[1].endswith((".crt", ".key")))
NODE = "node-a"

FORWARD_AUTH = {"sharedKeySecret": {"name": "kloghub-forward", "key": "shared-key"}}
CA = {"caSecret": {"name": "backend-ca", "key": "ca.crt"}, "verify": True}
NOTIFICATIONS: list[dict[str, Any]] = [
    {"type": "slack", "urlSecret": {"name": "kloghub-slack", "key": "url"}},
    {
        "type": "alertmanager",
        "urlSecret": {"name": "kloghub-am", "key": "url"},
        "tokenSecret": {"name": "kloghub-am", "key": "token"},
        "tls": CA,
        "settings": {"group_wait": "10s", "name": "am"},
    },
]
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
    "run-cert-manager": {"level": "run", "certManager": {"enabled": True}},
    "walk-open": {
        "level": "walk",
        "forward": {"tls": {"enabled": False, "secretName": "", "verify": True}},
        "networkPolicy": {"enabled": False},
    },
    "everything": {
        "level": "run",
        "forward": {
            **FORWARD_AUTH,
            "agentUsersSecret": {"name": "agent-users"},
            "users": [
                {"username": "edge", "passwordSecret": {"name": "edge-user", "key": "password"}}
            ],
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
        "notifications": NOTIFICATIONS,
        "detectionRules": {
            "inline": {"own.yml": sigma_rule("Own rule", "8e3b2a1c-5d4f-4a6b-9c8d-7e6f5a4b3c2d")},
            "configMaps": ["my-sigma-rules"],
        },
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


def _secret_data(manifests: list[Manifest], name: str) -> dict[str, str]:
    """The keys of Secret ``name``: rendered by the chart, or one of ``SECRETS``."""
    for m in find(manifests, "Secret"):
        if m["metadata"]["name"] == name:
            data = {k: base64.b64decode(v).decode() for k, v in (m.get("data") or {}).items()}
            return {**data, **(m.get("stringData") or {})}
    found = {key: value for (secret, key), value in SECRETS.items() if secret == name}
    assert found, f"the pod mounts Secret {name}, which neither the chart nor SECRETS has"
    return found


def _secret_files(
    manifests: list[Manifest], name: str, items: list[dict[str, Any]] | None
) -> dict[str, str]:
    data = _secret_data(manifests, name)
    if items is None:
        return data
    return {item["path"]: data[item["key"]] for item in items}


def _configmap_data(manifests: list[Manifest], name: str) -> dict[str, str]:
    """The keys of ConfigMap ``name``: rendered by the chart, or one of ``CONFIGMAPS``."""
    for m in find(manifests, "ConfigMap"):
        if m["metadata"]["name"] == name:
            return dict(m.get("data") or {})
    assert name in CONFIGMAPS, f"the pod mounts ConfigMap {name}, which the chart does not make"
    return CONFIGMAPS[name]


def _configmap_volume(directory: Path, data: dict[str, str]) -> None:
    """A ConfigMap volume as the kubelet lays it out: the files in ``..<timestamp>/``,
    ``..data`` linking to it, and each key a link through ``..data``."""
    stamp = directory / "..2026_12_03_10_00_00.000000001"
    stamp.mkdir(parents=True, exist_ok=True)
    for key, content in data.items():
        (stamp / key).write_text(content, encoding="utf-8")
        (directory / key).unlink(missing_ok=True)
        (directory / key).symlink_to(f"..data/{key}")
    (directory / "..data").unlink(missing_ok=True)
    (directory / "..data").symlink_to(stamp.name)


def pod_files(manifests: list[Manifest], workload: Manifest, root: Path) -> dict[str, Path]:
    """Writes the files of the first container's Secret volumes under ``root`` as the
    kubelet mounts them (secret and projected volumes, ``items`` honoured, content byte
    for byte); returns each mount path with the directory that stands for it."""
    spec = pod_spec(workload)
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounted: dict[str, Path] = {}
    for mount in spec["containers"][0].get("volumeMounts", []):
        volume = volumes.get(mount["name"], {})
        files: dict[str, str] = {}
        if "secret" in volume:
            source = volume["secret"]
            files = _secret_files(manifests, source["secretName"], source.get("items"))
        elif "projected" in volume:
            for part in volume["projected"]["sources"]:
                if "secret" not in part:
                    continue  # a podCertificate: the kubelet writes it once the pod runs
                source = part["secret"]
                files |= _secret_files(manifests, source["name"], source.get("items"))
        elif "configMap" in volume and mount["name"] != "config":
            directory = root / mount["mountPath"].lstrip("/")
            _configmap_volume(directory, _configmap_data(manifests, volume["configMap"]["name"]))
            mounted[mount["mountPath"]] = directory
            continue
        else:
            continue
        directory = root / mount["mountPath"].lstrip("/")
        directory.mkdir(parents=True, exist_ok=True)
        for path, content in files.items():
            (directory / path).parent.mkdir(parents=True, exist_ok=True)  # items' subfolders
            (directory / path).write_bytes(content.encode())
        mounted[mount["mountPath"]] = directory
    return mounted


def pod(manifests: list[Manifest], component: str, root: Path) -> tuple[str, dict[str, str]]:
    """The config file and environment that ``component``'s process sees, with the
    mounted Secret files written under ``root`` and their paths pointed there."""
    text = config_text(manifests, component)
    workload_ = workload(manifests, component)
    assert text is not None
    assert workload_ is not None
    for mount_path, directory in pod_files(manifests, workload_, root).items():
        text = text.replace(mount_path + "/", f"{directory}/")
    return text, pod_env(pod_spec(workload_)["containers"][0])


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
