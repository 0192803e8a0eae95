"""kloghub's documents against the ones Elastic's Kubernetes integration produces.

For every field both produce, name and value must match (times compared as instants).
Every field Elastic produces that kloghub does not, or produces differently on purpose,
is named in ``DIFFERENCES`` with the reason (``field|case`` when it holds for one fixture
only); anything else fails the test.
"""

from __future__ import annotations

from typing import Any

import pytest

from kloghub import config, normalize, parse
from tests.normalize import _fixtures as fx

DIFFERENCES = {
    # container_logs/sample_event.json: what Elastic Agent adds about itself or learns from
    # API objects that Fluent Bit's layout does not carry.
    "agent.*": "Elastic Agent describes itself; kloghub's agent is not an Elastic Agent",
    "elastic_agent.*": "Elastic Agent's identity",
    "input.type": "Filebeat's input name (filestream)",
    "event.agent_id_status": "set by Fleet's final pipeline for Elastic Agent data",
    "log.offset": "the start offset of the line; kloghub keeps the end offset in kloghub.offset",
    "container.runtime": "Fluent Bit's layout has no runtime (its docker_id has no scheme)",
    "kubernetes.node.uid": "node objects are not watched for their uid",
    "kubernetes.node.hostname": "node objects are not watched for their kernel hostname",
    "kubernetes.namespace_uid": "Fluent Bit's namespace metadata has no uid",
    "orchestrator.cluster.url": "the collector does not know the API server's address",
    "ecs.version": "kloghub follows ECS 9.4, the sample was made for ECS 8.0",
    "event.ingested": "the time the document was made, different in every run",
    # audit_logs: the pipeline test's config adds a tag kloghub has no use for.
    "tags": "Elastic's test config adds preserve_original_event; kloghub keeps event.original "
    "when normalizer.preserve_original is set, without a tag",
    # AKS: Elastic takes the diagnostic record's `time` (cut to milliseconds); kloghub takes
    # stageTimestamp, the time the API server reports for the stage, as for every audit event.
    "@timestamp|aks": "audit @timestamp is stageTimestamp, not the AKS record's time",
}
TIME_FIELDS = {"@timestamp", "kubernetes.audit.requestReceivedTimestamp"}


def _explained(path: str, case: str) -> bool:
    if f"{path}|{case}" in DIFFERENCES or path in DIFFERENCES:
        return True
    return any(key.endswith(".*") and path.startswith(key[:-1]) for key in DIFFERENCES)


def _same(path: str, ours: Any, theirs: Any) -> bool:
    if path in TIME_FIELDS and isinstance(ours, str) and isinstance(theirs, str):
        return parse.parse_rfc3339(ours.encode()) == parse.parse_rfc3339(theirs.encode())
    return bool(ours == theirs)


def _compare(ours: dict[str, Any], theirs: dict[str, Any], case: str) -> set[str]:
    """Asserts the rule of the module; returns the paths both documents have."""
    mine = dict(fx.flatten(ours))
    common = set()
    for path, value in fx.flatten(theirs):
        if _explained(path, case):
            continue
        assert path in mine, f"{case}: Elastic has {path}={value!r}, kloghub has no such field"
        assert _same(path, mine[path], value), (
            f"{case}: {path} is {mine[path]!r} in kloghub, {value!r} in Elastic's document"
        )
        common.add(path)
    return common


def test_container_logs_match_the_nginx_pipeline_test() -> None:
    """Container logs route, name services and de-dot labels as Elastic's pipeline test
    expects; broken, Kibana's Kubernetes dashboards would not find kloghub's documents."""
    normalizer = normalize.Normalizer(config.NormalizerConfig())
    docs = [normalizer(event) for event in fx.nginx_events()]
    wanted = fx.expected(fx.ELASTIC / "container_logs" / "test-nginx.log-expected.json")
    assert len(docs) == len(wanted) == 4
    for doc, theirs in zip(docs, wanted, strict=True):
        common = _compare(doc.record["doc"], theirs, "nginx")
        assert {
            "message",
            "data_stream.dataset",
            "data_stream.namespace",
            "service.name",
            "kubernetes.labels.app_kubernetes_io/name",
            "kubernetes.annotations.elastic_co/dataset",
        } <= common
        assert doc.tag == "logs-kubernetes.container_logs.nginx-nginx"


def test_container_logs_match_the_sample_document() -> None:
    """A containerd log line with full pod metadata gives Elastic's sample document
    (pod, node, namespace, workload, container, file, time); broken, searches and rules
    written against Elastic's fields would miss kloghub's data."""
    event, theirs = fx.container_sample()
    doc = normalize.Normalizer(config.NormalizerConfig(), cluster_name="kind")(event)
    common = _compare(doc.record["doc"], theirs, "container sample")
    assert {
        "@timestamp",
        "container.id",
        "container.image.name",
        "kubernetes.pod.uid",
        "kubernetes.pod.ip",
        "kubernetes.node.name",
        "kubernetes.node.labels.kubernetes_io/hostname",
        "kubernetes.namespace_labels.kubernetes_io/metadata_name",
        "kubernetes.deployment.name",
        "kubernetes.replicaset.name",
        "log.file.path",
        "orchestrator.cluster.name",
        "event.dataset",
    } <= common


@pytest.mark.parametrize(
    ("name", "case"),
    [("test-audit.log", "audit"), ("test-kube-audit.log", "aks")],
)
def test_audit_logs_match_the_pipeline_tests(name: str, case: str) -> None:
    """Native, GKE and AKS audit events give Elastic's kubernetes.audit.* and ECS fields;
    broken, Elastic Security's Kubernetes rules would not fire on kloghub's audit data."""
    normalizer = normalize.Normalizer(config.NormalizerConfig(preserve_original=True))
    lines = fx.audit_lines(name)
    wanted = fx.expected(fx.ELASTIC / "audit_logs" / f"{name}-expected.json")
    assert len(lines) == len(wanted)
    for offset, (line, theirs) in enumerate(zip(lines, wanted, strict=True)):
        doc = normalizer(fx.audit_event(line, offset))
        assert doc.tag == "logs-kubernetes.audit_logs-default"
        common = _compare(doc.record["doc"], theirs, case)
        assert {"event.original", "event.outcome", "kubernetes.audit.auditID"} <= common


def test_every_named_difference_is_still_a_difference() -> None:
    """Each entry of DIFFERENCES names a field Elastic produces and kloghub does not match;
    broken, the list would excuse mismatches that no longer exist (or never did)."""
    normalizer = normalize.Normalizer(config.NormalizerConfig(preserve_original=True))
    event, sample = fx.container_sample()
    pairs = [(normalizer(event).record["doc"], sample, "container sample")]
    pairs += [
        (normalizer(e).record["doc"], t, "nginx")
        for e, t in zip(
            fx.nginx_events(),
            fx.expected(fx.ELASTIC / "container_logs" / "test-nginx.log-expected.json"),
            strict=True,
        )
    ]
    for name, case in (("test-audit.log", "audit"), ("test-kube-audit.log", "aks")):
        expected = fx.expected(fx.ELASTIC / "audit_logs" / f"{name}-expected.json")
        for offset, (line, theirs) in enumerate(zip(fx.audit_lines(name), expected, strict=True)):
            pairs.append((normalizer(fx.audit_event(line, offset)).record["doc"], theirs, case))
    used = set()
    for ours, theirs, case in pairs:
        mine = dict(fx.flatten(ours))
        for path, value in fx.flatten(theirs):
            for key in DIFFERENCES:
                field, _, only = key.partition("|")
                hit = path.startswith(field[:-1]) if field.endswith(".*") else path == field
                if hit and (not only or only == case):
                    assert path not in mine or not _same(path, mine[path], value), (
                        f"{key} is excused but kloghub matches Elastic there"
                    )
                    used.add(key)
    assert used == set(DIFFERENCES)
