"""Inputs built from the copied fixtures, and helpers to compare documents.

Elastic's pipeline tests feed the ingest pipeline with what Elastic Agent already made of
a line (``message``, de-dotted ``kubernetes.*``); kloghub receives Fluent Bit's layout
with the API's keys. The builders here turn the former into the latter, nothing more.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from kloghub import config, core, normalize, parse

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
ELASTIC = FIXTURES / "elastic-kubernetes"
FLUENT_BIT = FIXTURES / "fluent-bit"
ECS_FLAT = FIXTURES / "ecs" / "ecs_flat.yml"
AUDIT_FILE = "/var/log/kubernetes/audit/audit.log"


def redot(key: str) -> str:
    """The API's label key of an Elastic de-dotted one (``app_kubernetes_io/name`` →
    ``app.kubernetes.io/name``): dots come back in the prefix, which is a DNS name."""
    if "/" not in key:
        return key
    prefix, name = key.split("/", 1)
    return prefix.replace("_", ".") + "/" + name


def redot_map(mapping: dict[str, Any]) -> dict[str, Any]:
    return {redot(key): value for key, value in mapping.items()}


def expected(path: Path) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = json.loads(path.read_text())["expected"]
    return docs


def kloghub_block(offset: int, file: str, file_id: str = "0123456789abcdef") -> dict[str, Any]:
    return {"file": file, "file_id": file_id, "offset": offset}


def nginx_events() -> list[core.Event]:
    """test-nginx.log with test-common-config.yml's pod metadata, as an agent sends it."""
    common = yaml.safe_load((ELASTIC / "container_logs" / "test-common-config.yml").read_text())
    k8s = {
        "pod_name": "nginx-7c5ddbdf54-x2x7m",
        "namespace_name": "default",
        "container_name": "nginx",
        "labels": redot_map(common["fields"]["kubernetes"]["labels"]),
        "annotations": redot_map(common["fields"]["kubernetes"]["annotations"]),
    }
    lines = (ELASTIC / "container_logs" / "test-nginx.log").read_text().split("\n")
    path = "/var/log/pods/default_nginx-7c5ddbdf54-x2x7m_0f0e/nginx/0.log"
    return [
        core.Event(
            "kube.default.nginx-7c5ddbdf54-x2x7m.nginx",
            1_690_298_651_000_000_000 + i,
            {"log": line, "stream": "stderr", "kubernetes": k8s, "kloghub": kloghub_block(i, path)},
        )
        for i, line in enumerate(lines)
    ]


def container_sample() -> tuple[core.Event, dict[str, Any]]:
    """Elastic's container_logs sample document, and the Fluent Bit record behind it."""
    doc = json.loads((ELASTIC / "container_logs" / "sample_event.json").read_text())
    kube = doc["kubernetes"]
    record = {
        "log": doc["message"] + "\n",
        "stream": "stdout",
        "kubernetes": {
            "pod_name": kube["pod"]["name"],
            "namespace_name": kube["namespace"],
            "pod_id": kube["pod"]["uid"],
            "pod_ip": kube["pod"]["ip"],
            "labels": redot_map(kube["labels"]),
            "host": kube["node"]["name"],
            "container_name": kube["container"]["name"],
            "docker_id": doc["container"]["id"],
            "container_image": doc["container"]["image"]["name"],
            "node_labels": redot_map(kube["node"]["labels"]),
            "namespace_labels": redot_map(kube["namespace_labels"]),
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": kube["replicaset"]["name"]}
            ],
        },
        "kloghub": kloghub_block(doc["log"]["offset"], doc["log"]["file"]["path"]),
    }
    time_ns = parse.parse_rfc3339(doc["@timestamp"].encode())
    assert time_ns is not None
    return core.Event("kube.default.nginx.nginx", time_ns, record), doc


def audit_event(line: str, offset: int) -> core.Event:
    return core.Event(
        "audit",
        1_700_000_000_000_000_000 + offset,
        {
            "log": line,
            "stream": "",
            "kloghub": kloghub_block(offset, AUDIT_FILE, "a0d17f11e0000001"),
        },
    )


def audit_lines(name: str) -> list[str]:
    return [line for line in (ELASTIC / "audit_logs" / name).read_text().split("\n") if line]


def audit_sample_line() -> str:
    """The audit event behind Elastic's audit_logs sample document (annotations re-dotted)."""
    doc = json.loads((ELASTIC / "audit_logs" / "sample_event.json").read_text())
    event = dict(doc["kubernetes"]["audit"])
    event["annotations"] = {
        key.replace("_", "."): value for key, value in event["annotations"].items()
    }
    return json.dumps(event)


def fluent_bit_events() -> list[core.Event]:
    """The records Fluent Bit's kubernetes filter produces in its own runtime tests."""
    events = []
    for path in sorted((FLUENT_BIT).glob("core_*.out")):
        time_s, record = json.loads(path.read_text())
        events.append(
            core.Event("kube.var.log.containers." + path.stem, round(time_s * 1e9), record)
        )
    merged = json.loads((FLUENT_BIT / "options_merge-log-enabled_json.log").read_text())
    merged_record = {"log": merged["log"], "stream": merged["stream"], "text": "Simple text"}
    events.append(core.Event("kube.options.merge.json", 1_554_141_513_598_656_444, merged_record))
    return events


def synthetic_events() -> list[core.Event]:
    """Application, node and odd records that the fixtures lack."""
    k8s = {
        "pod_name": "api-0",
        "namespace_name": "shop",
        "container_name": "api",
        "host": "node-1",
        "container_runtime": "containerd",
    }
    lines = [
        '{"level":"error","msg":"payment failed","order":42,"error":{"message":"timeout",'
        '"type":"TimeoutError","code":504,"stack":"at pay()\\nat main()"},"ctx":{"user":"ann"}}',
        '{"severity":"WARNING","message":"slow","latency_ms":1234.5}',
        '{"level":30,"msg":"pino says hi","pid":1}',
        "plain text line with a { brace",
        '["a","json","array"]',
    ]
    events = [
        core.Event(
            "kube.shop.api-0.api",
            1_700_000_000_000_000_000 + i,
            {
                "log": line,
                "stream": "stdout",
                "kubernetes": k8s,
                "kloghub": kloghub_block(100 + i, "/var/log/pods/shop_api-0_1/api/0.log"),
            },
        )
        for i, line in enumerate(lines)
    ]
    events.append(
        core.Event(
            "node.kubelet.log",
            1_700_000_000_500_000_000,
            {
                "log": "I1127 07:00:00.000000 1 kubelet.go:1] started",
                "stream": "",
                "kloghub": {**kloghub_block(7, "/var/log/kubelet.log"), "host": "node-1"},
            },
        )
    )
    events.append(
        core.Event(
            "kube.shop.api-0.api",
            1_700_000_000_600_000_000,
            {
                "log": "caf\ufffd",
                "stream": "stderr",
                "kubernetes": k8s,
                "kloghub": {
                    **kloghub_block(200, "/var/log/pods/shop_api-0_1/api/0.log"),
                    "flags": ["invalid_utf8"],
                    "raw": b"caf\xe9",
                },
            },
        )
    )
    return events


def all_documents(cfg: config.NormalizerConfig | None = None) -> list[core.Event]:
    """Normalized documents of every fixture input."""
    normalizer = normalize.Normalizer(cfg or config.NormalizerConfig(preserve_original=True))
    inputs = [*nginx_events(), container_sample()[0]]
    offset = 0
    for name in ("test-audit.log", "test-kube-audit.log", "test-audit.log.0b97ab02"):
        for line in audit_lines(name):
            inputs.append(audit_event(line, offset))
            offset += 1
    inputs.append(audit_event(audit_sample_line(), offset))
    inputs.extend(fluent_bit_events())
    inputs.extend(synthetic_events())
    return [normalizer(event) for event in inputs]


def flatten(doc: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted path, leaf value)`` pairs; lists are leaves."""
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from flatten(value, path + ".")
        else:
            yield path, value


@cache
def ecs_fields() -> dict[str, dict[str, Any]]:
    fields: dict[str, dict[str, Any]] = yaml.load(ECS_FLAT.read_text(), Loader=yaml.CSafeLoader)
    return fields


def is_ip(value: Any) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True
