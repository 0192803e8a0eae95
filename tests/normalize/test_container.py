"""Container and node logs: message, JSON application logs, metadata, Fluent Bit records."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from kloghub import config, core, normalize
from tests.normalize import _fixtures as fx

K8S = {
    "pod_name": "web-5d8f9c-x1",
    "namespace_name": "shop",
    "pod_id": "9f1c",
    "container_name": "app",
    "host": "node-7",
    "labels": {"app.kubernetes.io/name": "web", "pod-template-hash": "5d8f9c", "tier": "front"},
    "annotations": {"prometheus.io/scrape": "true"},
    "docker_id": "c" * 64,
    "container_image": "registry.local/web:1.2",
    "container_hash": "registry.local/web@sha256:" + "a" * 64,
}


def _event(log: Any, **extra: Any) -> core.Event:
    record = {
        "log": log,
        "stream": "stdout",
        "kubernetes": K8S,
        "kloghub": {
            "file": "/var/log/pods/shop_web_9f1c/app/0.log",
            "file_id": "f" * 16,
            "offset": 9,
        },
    }
    record.update(extra)
    return core.Event("kube.shop.web-5d8f9c-x1.app", 1_700_000_000_123_456_789, record)


def _doc(event: core.Event, **cfg: Any) -> dict[str, Any]:
    doc: dict[str, Any] = normalize.Normalizer(config.NormalizerConfig(**cfg))(event).record["doc"]
    return doc


def test_a_text_line_stays_text_with_its_time_and_origin() -> None:
    """A plain line becomes message with @timestamp from the line's time, the file path,
    stream and data stream; broken, the basic fields of every search would be wrong."""
    out = normalize.Normalizer(config.NormalizerConfig())(_event("GET / 200\n"))
    doc = out.record["doc"]
    assert doc["message"] == "GET / 200"
    assert doc["@timestamp"] == "2023-11-14T22:13:20.123456789Z"
    assert out.time_ns == 1_700_000_000_123_456_789
    assert doc["log"] == {"file": {"path": "/var/log/pods/shop_web_9f1c/app/0.log"}}
    assert doc["stream"] == "stdout"
    assert doc["data_stream"] == {
        "type": "logs",
        "dataset": "kubernetes.container_logs",
        "namespace": "default",
    }
    assert out.tag == "logs-kubernetes.container_logs-default"
    assert doc["ecs"] == {"version": normalize.ECS_VERSION}
    assert "json" not in doc
    assert "event.original" not in dict(fx.flatten(doc))


def test_a_json_line_is_taken_apart_into_ecs_fields() -> None:
    """level, msg, error and stack go to log.level, message and error.*, the rest under the
    JSON target; broken, application logs would be one opaque string."""
    line = orjson.dumps(
        {
            "level": "error",
            "msg": "payment failed",
            "error": {"message": "timeout", "type": "TimeoutError", "code": 504, "extra": 1},
            "stack": "at pay()\nat main()",
            "order": {"id": 42},
        }
    ).decode()
    doc = _doc(_event(line))
    assert doc["message"] == "payment failed"
    assert doc["log"]["level"] == "error"
    assert doc["error"] == {
        "message": "timeout",
        "type": "TimeoutError",
        "code": "504",
        "stack_trace": "at pay()\nat main()",
    }
    assert doc["json"] == {"order": {"id": 42}, "error": {"extra": 1}}


def test_severity_message_and_numeric_levels_are_understood() -> None:
    """severity and message (and pino's numbers) are read like level and msg; broken,
    common logging libraries' output would lose its level."""
    doc = _doc(_event('{"severity":"WARNING","message":"slow","ms":5}'))
    assert (doc["log"]["level"], doc["message"], doc["json"]) == ("WARNING", "slow", {"ms": 5})
    assert _doc(_event('{"level":50,"msg":"x"}'))["log"]["level"] == "error"


def test_the_json_target_is_configurable_and_parsing_can_be_off() -> None:
    """json_target moves the remaining keys; parse_json=false keeps JSON lines as text;
    broken, the configuration would be ignored."""
    line = '{"msg":"hi","k":"v"}'
    doc = _doc(_event(line), json_target="app.fields")
    assert doc["app"] == {"fields": {"k": "v"}} and doc["message"] == "hi"
    doc = _doc(_event(line), parse_json=False)
    assert doc["message"] == line and "json" not in doc and "log" in doc


def test_json_too_deep_or_too_long_for_a_flattened_field_stays_text() -> None:
    """A JSON line nested deeper, or with a value longer, than flattened fields accept
    stays text; broken, Elasticsearch would refuse the document."""
    deep = "{" + '"a":{' * 20 + '"b":1' + "}" * 20 + "}"
    long = orjson.dumps({"msg": "ok", "blob": "x" * 9000}).decode()
    for line in (deep, long):
        doc = _doc(_event(line))
        assert doc["message"] == line and "json" not in doc
    # A long message is fine: it goes to the text field, not the flattened one.
    doc = _doc(_event(orjson.dumps({"msg": "y" * 20000, "k": 1}).decode()))
    assert doc["message"] == "y" * 20000 and doc["json"] == {"k": 1}


def test_labels_and_annotations_are_de_dotted_and_name_the_service() -> None:
    """app.kubernetes.io/name becomes app_kubernetes_io/name and service.name, and the
    ReplicaSet owner names the Deployment; broken, label filters and service views fail."""
    doc = _doc(_event("x"), dedot=True)
    kube = doc["kubernetes"]
    assert kube["labels"]["app_kubernetes_io/name"] == "web"
    assert kube["annotations"] == {"prometheus_io/scrape": "true"}
    assert doc["service"] == {"name": "web"}
    event = _event("x")
    event.record["kloghub"]["owner"] = {"kind": "ReplicaSet", "name": "web-5d8f9c"}
    kube = _doc(event)["kubernetes"]
    assert kube["replicaset"] == {"name": "web-5d8f9c"}
    assert kube["deployment"] == {"name": "web"}
    event.record["kloghub"]["owner"] = {"kind": "Deployment", "name": "web"}  # as enrich sends
    kube = _doc(event)["kubernetes"]
    assert (kube["deployment"], kube["replicaset"]) == ({"name": "web"}, {"name": "web-5d8f9c"})
    assert _doc(_event("x"), dedot=False)["kubernetes"]["labels"]["app.kubernetes.io/name"] == "web"


def test_container_and_host_fields_come_from_the_pod_metadata() -> None:
    """docker_id, image, image digest and node fill container.* and host.*; broken,
    container-centric views and rules would find nothing."""
    doc = _doc(_event("x"))
    assert doc["container"] == {
        "id": "c" * 64,
        "name": "app",
        "image": {"name": "registry.local/web:1.2", "hash": {"all": ["sha256:" + "a" * 64]}},
    }
    assert doc["host"] == {"name": "node-7"}
    assert doc["orchestrator"] == {"type": "kubernetes", "namespace": "shop"}
    assert doc["kubernetes"]["pod"] == {"name": "web-5d8f9c-x1", "uid": "9f1c"}


def test_event_original_keeps_the_raw_bytes_when_configured() -> None:
    """preserve_original puts the line (the agent's raw bytes, decoded with replacement,
    when it sent them) in event.original; broken, the evidence of what was written is lost."""
    assert _doc(_event("plain\n"), preserve_original=True)["event"]["original"] == "plain"
    event = _event("caf\ufffd")
    event.record["kloghub"]["raw"] = b"caf\xe9 \xff"
    assert _doc(event, preserve_original=True)["event"]["original"] == "caf\ufffd \ufffd"
    assert "original" not in _doc(event)["event"]


def test_pod_annotations_route_but_never_into_other_kubernetes_streams() -> None:
    """elastic.co/dataset and elastic.co/namespace pick the data stream as in Elastic's
    integration, but a pod cannot send its logs into the audit stream; broken, a workload
    could forge audit events."""
    k8s = {
        **K8S,
        "annotations": {"elastic.co/dataset": "Nginx Access", "elastic.co/namespace": "web-prod"},
    }
    out = normalize.Normalizer(config.NormalizerConfig())(_event("x", kubernetes=k8s))
    assert out.tag == "logs-nginx_access-web_prod"
    k8s = {**K8S, "annotations": {"elastic.co/dataset": "kubernetes.audit_logs"}}
    out = normalize.Normalizer(config.NormalizerConfig())(_event("x", kubernetes=k8s))
    assert out.tag == "logs-kubernetes.container_logs-default"
    out = normalize.Normalizer(config.NormalizerConfig(namespace="prod"), reroute=False)(
        _event("x", kubernetes={**K8S, "annotations": {"elastic.co/dataset": "n"}})
    )
    assert out.tag == "logs-kubernetes.container_logs-prod"


def test_fluent_bit_records_are_normalized_like_kloghub_ones() -> None:
    """Records of Fluent Bit's kubernetes filter (no kloghub block, ownerReferences,
    kubernetes_namespace, Merge_Log keys) give the same kind of document; broken, clusters
    running Fluent Bit agents could not use the collector."""
    docs = {
        event.tag: normalize.Normalizer(config.NormalizerConfig())(event)
        for event in fx.fluent_bit_events()
    }
    base = docs["kube.var.log.containers.core_base_fluent-bit"].record["doc"]
    assert base["message"] == "Fluent Bit is logging"
    assert base["kubernetes"]["pod"] == {
        "name": "base",
        "uid": "e9f2963f-55f2-11e9-84c5-02e422b8a84a",
        "ip": "100.116.192.42",
    }
    assert base["container"]["image"]["hash"]["all"] == [
        "sha256:7ac0fd3569af866e9a6a22eb592744200d2dbe098cf066162453f8d0b06c531f"
    ]
    assert "kloghub" not in base and "log" not in base
    owned = docs["kube.var.log.containers.core_base-with-owner-references_fluent-bit"]
    assert owned.record["doc"]["kubernetes"]["daemonset"] == {"name": "fluentbit-max"}
    ns = docs["kube.var.log.containers.core_base-with-namespace-labels-and-annotations_fluent-bit"]
    assert ns.record["doc"]["kubernetes"]["namespace_labels"] == {
        "fake-namespace-label1": "label1",
        "fake-namespace-label2": "label2",
    }
    merged = docs["kube.options.merge.json"].record["doc"]
    assert merged["message"] == '{"text":"Simple text"}'
    assert merged["json"] == {"text": "Simple text"}
    escaped = docs["kube.var.log.containers.core_unescaping_json"].record["doc"]
    assert escaped["json"]["stringified-json"].startswith('{"stringified-json":')


def _fluent_bit_cri(**extra: Any) -> core.Event:
    """A record as Fluent Bit 5 sends it: tail with ``multiline.parser cri`` (which keeps
    the CRI tag as ``_p``) and the kubernetes filter; no kloghub block."""
    record = {"stream": "stdout", "log": "GET /health 200", "kubernetes": K8S, **extra}
    return core.Event(
        "kube.var.log.containers.web-5d8f9c-x1_shop_app-" + "c" * 64 + ".log", 1, record
    )


def test_fluent_bit_cri_tag_of_joined_partials_becomes_the_partial_flag() -> None:
    """Fluent Bit's ``_p: P`` (a line the runtime split, joined by the cri multiline
    parser) gives the same kloghub.flags as kloghub's own agent and leaves no ``json._p``;
    broken, every Fluent Bit document would carry a stray field and joined lines could
    not be found."""
    doc = _doc(_fluent_bit_cri(_p="P"))
    assert doc["kloghub"] == {"flags": ["partial"]}
    assert doc["message"] == "GET /health 200"
    assert "json" not in doc
    assert "_p" not in orjson.dumps(doc).decode()


def test_fluent_bit_cri_tag_of_a_full_line_leaves_no_trace() -> None:
    """``_p: F`` is an ordinary line: no flag, no field; broken, documents of Fluent Bit
    senders would differ from kloghub's for the same line."""
    doc = _doc(_fluent_bit_cri(_p="F"))
    assert "kloghub" not in doc
    assert "json" not in doc


def test_fluent_bit_cri_tag_stays_out_of_merged_application_fields() -> None:
    """With Fluent Bit's Merge_Log the application's keys sit next to ``_p``; they go to
    the JSON target and ``_p`` does not; broken, ``json._p`` would leak again."""
    doc = _doc(_fluent_bit_cri(_p="P", level="warn", user="ana"))
    assert doc["json"] == {"user": "ana"}
    assert doc["log"]["level"] == "warn"
    assert doc["kloghub"] == {"flags": ["partial"]}


def test_the_classic_cri_parsers_logtag_marks_a_partial_too() -> None:
    """Fluent Bit's regex ``cri`` parser names the tag ``logtag``; ``P`` there is a
    partial line as well; broken, the same line would be flagged or not depending on
    the sender's parser."""
    assert _doc(_fluent_bit_cri(logtag="P"))["kloghub"] == {"flags": ["partial"]}
    assert "kloghub" not in _doc(_fluent_bit_cri(logtag="F"))


def test_kloghub_agent_flags_are_not_doubled_by_a_cri_tag() -> None:
    """A record with kloghub's own flags is taken at its word; broken, a record with both
    would say ``partial`` twice."""
    event = _event("x", _p="P")
    event.record["kloghub"]["flags"] = ["partial"]
    assert _doc(event)["kloghub"]["flags"] == ["partial"]


def test_a_record_without_pod_metadata_takes_it_from_the_tag() -> None:
    """kube.<ns>.<pod>.<container> tags fill the pod fields when the record has no
    kubernetes map; broken, such logs could not be told apart."""
    event = core.Event("kube.shop.web.v2.app", 1, {"log": "x"})
    doc = normalize.Normalizer(config.NormalizerConfig())(event).record["doc"]
    assert doc["kubernetes"]["pod"] == {"name": "web.v2"}
    assert doc["kubernetes"]["namespace"] == "shop"


def test_node_logs_go_to_their_own_stream() -> None:
    """node.* tags become logs-kubernetes.node_logs documents with the node as host;
    broken, kubelet logs would be mixed with containers' or lost."""
    event = next(e for e in fx.synthetic_events() if e.tag.startswith("node."))
    out = normalize.Normalizer(config.NormalizerConfig(namespace="Prod"))(event)
    assert out.tag == "logs-kubernetes.node_logs-prod"
    doc = out.record["doc"]
    assert doc["host"] == {"name": "node-1"} and doc["event"]["dataset"] == "kubernetes.node_logs"
    assert doc["log"]["file"]["path"] == "/var/log/kubelet.log"


def test_the_output_event_keeps_the_finalizer_and_a_size() -> None:
    """The document event carries the input's finalizer and a size near its JSON size;
    broken, acknowledgements would never reach the agent, or batches be mis-sized."""
    seen: list[core.Delivery] = []
    finalizer = core.Finalizer(seen.append, count=1)
    event = _event('{"msg":"hello","user":"ann"}')
    event.finalizer = finalizer
    out = normalize.Normalizer(config.NormalizerConfig())(event)
    assert out.finalizer is finalizer
    size = len(orjson.dumps(out.record))
    assert size / 2 <= out.size <= size * 2


_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary()
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=5) | st.binary(max_size=3), inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    tag=st.sampled_from(["kube.a.b.c", "audit", "node.x", "other", "kube.", ""]),
    time_ns=st.one_of(st.integers(), st.floats(), st.none()),
    record=st.dictionaries(
        st.sampled_from(["log", "stream", "kubernetes", "kloghub", "time", "msg", "x"]),
        _VALUES,
        max_size=5,
    ),
)
def test_any_input_gives_a_serializable_document_and_never_raises(
    tag: str, time_ns: Any, record: dict[str, Any]
) -> None:
    """Whatever a Forward client sends, the normalizer returns a document that serializes;
    broken, one odd record would crash the collector or poison a bulk request."""
    out = normalize.Normalizer(config.NormalizerConfig(preserve_original=True))(
        core.Event(tag, time_ns, record)  # type: ignore[arg-type]
    )
    assert isinstance(out.record["id"], str) and out.record["id"]
    body = orjson.dumps(out.record["doc"])
    assert b'"@timestamp"' in body and out.tag.startswith("logs-kubernetes.")


def test_absurdly_nested_records_still_give_a_document() -> None:
    """Records nested hundreds of levels deep (msgpack allows it) become a document that
    serializes, in every kind of stream; broken, one crafted record would crash the
    collector or poison a bulk request."""
    deep: Any = "leaf"
    for _ in range(900):
        deep = [deep]
    normalizer = normalize.Normalizer(config.NormalizerConfig(preserve_original=True))
    for tag, record in (
        ("kube.a.b.c", {"log": "x", "extra": deep}),
        ("kube.a.b.c", {"log": "x", "kubernetes": {"labels": {"a": deep}}}),
        ("audit", {"log": '{"kind":"Event","x":' + "[" * 300 + "1" + "]" * 300 + "}"}),
        ("audit", {"log": '{"kind":"Event","x":' + "[" * 900 + "1" + "]" * 900 + "}"}),
        ("node.x", {"x": deep}),
    ):
        out = normalizer(core.Event(tag, 1, record))
        assert orjson.dumps(out.record["doc"])
