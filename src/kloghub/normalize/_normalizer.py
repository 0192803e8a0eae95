"""The normalizer: one input event (Fluent Bit's kubernetes layout) → one ECS document event.

The output event's ``tag`` is the data stream, ``time_ns`` the document's ``@timestamp``,
``record`` is ``{"id": <document id>, "doc": <ECS document>}``; the finalizer is the input's.
Documents share read-only sub-dicts (the pod metadata of a container): never mutate them.

Given the batch's :class:`core.Origin` (records received over the network), the collector,
not the sender, decides provenance: ``host.name`` and ``kubernetes.node.name`` are the
proven node (the sender's differing claim is kept in ``kloghub.claimed_host``),
``kloghub.sender`` says how the sender authenticated, document ids are scoped by the
sender's identity (``_ids``), and audit events from a sender that may not send them are
stored as node logs flagged ``policy_violation`` (``kloghub_policy_violations_total``).
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import orjson

from kloghub import config, core, runtime
from kloghub.normalize import _applog, _audit, _ids, _kubernetes, _times

__all__ = ["ECS_VERSION", "EXTENSION_FIELDS", "ROOT_FIELDS", "Normalizer", "target_path"]

log = logging.getLogger(__name__)

ECS_VERSION = "9.4.0"
"""The ECS version the documents conform to (``ecs.version``)."""

EXTENSION_FIELDS = ("kubernetes", "kloghub", "stream")
"""Top-level fields kloghub emits that are not ECS fields (plus the JSON target):

- ``kubernetes.*``: Elastic's Kubernetes integration fields (pod metadata, ``audit``).
- ``kloghub.*``: the source record's provenance: ``file_id``, ``offset`` (end offset of the
  record in its file) and ``flags`` (``partial``, ``truncated``, ``parse_error``,
  ``invalid_utf8``, ``multiline``, ``time_out_of_range``, ``policy_violation``) — the
  sender's claims — and what the collector established: ``sender.method``
  (``certificate``, ``password``, ``shared_key``, ``none``), ``sender.identity``, and
  ``claimed_host`` when the sender claimed another node than the one it proved.
- ``stream``: ``stdout`` / ``stderr``, as Filebeat's container input names it.
- the JSON target (``json`` by default): the keys of JSON application logs that have no
  ECS field, mapped as one ``flattened`` (``flat_object``) field.
"""

ROOT_FIELDS = frozenset(
    (
        *("@timestamp", "agent", "client", "cloud", "container", "data_stream", "destination"),
        *("device", "dll", "dns", "ecs", "email", "entity", "error", "event", "faas", "file"),
        *("gen_ai", "group", "host", "http", "labels", "log", "message", "network", "observer"),
        *("orchestrator", "organization", "package", "process", "registry", "related", "rule"),
        *("server", "service", "source", "span", "tags", "threat", "tls", "trace"),
        *("transaction", "url", "user", "user_agent", "volume", "vulnerability"),
    )
)
"""ECS 9.4's top-level names: the JSON target may not be one of them (nor an extension)."""

_KNOWN_KEYS = frozenset(
    (
        *("log", "stream", "time", "kubernetes", "kloghub", "kubernetes_namespace", "logtag"),
        *("date", "_p"),
    )
)
"""Record keys with a meaning; others (Fluent Bit's ``Merge_Log``) are application fields.

Fluent Bit's tail with ``multiline.parser cri`` keeps the CRI tag as ``_p`` (``logtag``
with the classic ``cri`` regex parser): ``P`` — the record is made of partial lines —
becomes the ``partial`` flag kloghub's agent sets; neither key reaches the document.
"""
_FLB_CONTAINER_FILE = re.compile(
    r"(?P<pod>[^_]+)_(?P<ns>[^_]+)_(?P<container>.+)-[0-9a-f]{64}\.log$"
)
_AUDIT, _CONTAINER, _NODE = 0, 1, 2
_DOC_OVERHEAD = 320
_FILES_MAX = 65536


def target_path(json_target: str) -> tuple[str, ...]:
    parts = tuple(json_target.split(".")) if json_target else ("json",)
    if any(not part for part in parts):
        raise core.ConfigError([f"normalizer.json_target {json_target!r} has an empty segment"])
    if parts[0] in ROOT_FIELDS or (parts[0] in EXTENSION_FIELDS and parts[0] != "kloghub"):
        raise core.ConfigError(
            [f"normalizer.json_target {json_target!r} would overwrite ECS or kubernetes fields"]
        )
    return parts


def _k8s_from_tag(tag: str) -> dict[str, Any]:
    """Pod, namespace and container from ``kube.<ns>.<pod>.<container>`` or Fluent Bit's
    ``kube.var.log.containers.<pod>_<ns>_<container>-<id>.log``, for records without a
    ``kubernetes`` map."""
    rest = tag[5:]
    if rest.startswith("var.log.containers."):
        match = _FLB_CONTAINER_FILE.search(rest)
        if match is None:
            return {}
        return {
            "pod_name": match["pod"],
            "namespace_name": match["ns"],
            "container_name": match["container"],
        }
    parts = rest.split(".")
    if len(parts) < 3:
        return {}
    return {
        "namespace_name": parts[0],
        "pod_name": ".".join(parts[1:-1]),
        "container_name": parts[-1],
    }


def _jsonable(value: Any, depth: int = 0) -> Any:  # noqa: PLR0911 - one case per type
    """Foreign record values made serializable: bytes and unknown types as text, keys as
    text, nesting past the field-type limit as JSON text."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        return value if -(2**63) <= value < 2**64 else str(value)
    if kind is float:
        return value
    if kind is bytes:
        return value.decode("utf-8", "replace")
    if kind is dict or kind is list:
        if depth >= _applog.MAX_DEPTH:
            return _nested_text(value)
        if kind is dict:
            return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
        return [_jsonable(v, depth + 1) for v in value]
    if isinstance(value, int):  # EventTime and other int subclasses
        return int(value)
    return str(value)


def _nested_text(value: Any) -> str:
    """A subtree too deep for a flattened field, as JSON text (or a note, past orjson's
    own nesting limit)."""
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except (TypeError, orjson.JSONEncodeError, RecursionError):
        return "[nested too deep to keep]"


def _text(value: Any) -> str | None:
    if type(value) is str:
        return value
    if type(value) is bytes:
        return value.decode("utf-8", "replace")
    return None


def _cri_partial(record: dict[str, Any]) -> bool:
    """Whether a foreign sender (Fluent Bit) marked the record as built from CRI ``P``
    lines: ``_p`` (multiline parser ``cri``) or ``logtag`` (regex parser ``cri``)."""
    tag = record.get("_p")
    if tag is None:
        tag = record.get("logtag")
    return type(tag) is str and tag[:1] == "P"


def _strip_newline(text: str) -> str:
    if text.endswith("\n"):
        text = text[:-2] if text.endswith("\r\n") else text[:-1]
    return text


class Normalizer:
    """Compiles the configuration once; each call maps one event. Never raises on input.

    Documents of one container share their metadata sub-dicts (``kubernetes``,
    ``container``, ``data_stream``…): treat every document as read-only.
    ``cluster_name`` fills ``orchestrator.cluster.name``; ``reroute`` lets the
    ``elastic.co/dataset`` and ``elastic.co/namespace`` pod annotations (or labels) choose
    the data stream of container logs, as Elastic's integration does.
    """

    def __init__(
        self,
        cfg: config.NormalizerConfig,
        *,
        cluster_name: str | None = None,
        reroute: bool = True,
    ) -> None:
        self._parse_json = cfg.parse_json
        self._preserve = cfg.preserve_original
        self._dedot = cfg.dedot
        self._target = target_path(cfg.json_target)
        namespace = _kubernetes.reroute_part(cfg.namespace) or "default"
        self._namespace = namespace
        self._cluster = {"name": cluster_name} if cluster_name else None
        self._ecs = {"version": ECS_VERSION}
        self._meta = _kubernetes.MetaCache(
            dedot_keys=cfg.dedot,
            default_namespace=namespace,
            reroute=reroute,
            cluster_name=cluster_name,
            ecs=self._ecs,
        )
        self._files: dict[str, dict[str, Any]] = {}
        self._now_ms = -1
        self._now_text = ""
        self._node_stream = {
            "type": "logs",
            "dataset": "kubernetes.node_logs",
            "namespace": namespace,
        }
        self._node_index = f"logs-kubernetes.node_logs-{namespace}"
        self._audit_stream = {
            "type": "logs",
            "dataset": "kubernetes.audit_logs",
            "namespace": namespace,
        }
        self._audit_index = f"logs-kubernetes.audit_logs-{namespace}"
        self._timestamp = _times.Rfc3339(9)
        self._ingested = _times.Rfc3339(3)
        self._audit_errors = runtime.metrics.PARSE_ERRORS.labels(format="audit")
        self._failures = runtime.metrics.PARSE_ERRORS.labels(format="normalize")
        self._audit_refused = runtime.metrics.POLICY_VIOLATIONS.labels(reason="audit_sender")
        self._scope = ""
        self._senders: dict[core.Origin, dict[str, Any]] = {}
        self._last_origin: core.Origin | None = None
        self._last_sender: dict[str, Any] = {}

    @property
    def namespace(self) -> str:
        """The data stream namespace of the documents (``logs-<dataset>-<namespace>``)."""
        return self._namespace

    def pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The ``kubernetes.*`` fragment (pod, namespace, labels, node, owner workloads) of
        the pod ``namespace/name`` from the container logs seen so far; read-only."""
        meta = self._meta.pod(namespace, name)
        return meta.kubernetes if meta is not None else None

    @property
    def parse_json(self) -> bool:
        """Whether JSON application lines are parsed (``normalizer.parse_json``)."""
        return self._parse_json

    @property
    def json_target(self) -> tuple[str, ...]:
        """The path of the object that holds a JSON line's keys without an ECS field."""
        return self._target

    @property
    def metadata_generation(self) -> int:
        """Changes when the pod metadata cache was emptied: whatever was made from its
        entries (the compiled path's templates) must be made again, so that :meth:`pod`
        knows every pod whose logs keep coming."""
        return self._meta.generation

    def ingested(self) -> str:
        """``event.ingested`` of the documents made now."""
        return self._now()

    def shape_document(
        self, event: core.Event, origin: core.Origin | None, ingested: str
    ) -> core.Event | None:
        """The document of ``event`` with ``event.ingested`` set to ``ingested``, or None
        for an audit event (its document depends on the whole line): what the collector's
        compiled path (``collector._fastpath``) makes its templates of."""
        record = event.record
        tag = event.tag if type(event.tag) is str else str(event.tag)
        if type(record) is not dict or self._kind(tag, record) == _AUDIT:
            return None
        self._now = lambda: ingested  # type: ignore[method-assign]
        try:
            return self(event, origin)
        finally:
            del self._now

    # ------------------------------------------------------------------ entry point

    def __call__(self, event: core.Event, origin: core.Origin | None = None) -> core.Event:
        """The document of ``event``; ``origin``: who sent it (None: read locally)."""
        self._scope = origin.namespace if origin is not None else ""
        try:
            record = event.record
            if type(record) is not dict:
                self._failures.inc()
                return self._fallback(event, TypeError(f"the record is a {type(record).__name__}"))
            tag = event.tag if type(event.tag) is str else str(event.tag)
            kind = self._kind(tag, record)
            if kind == _CONTAINER:
                out = self._container(event, tag, record)
            elif kind == _AUDIT:
                if origin is not None and not origin.may_send_audit:
                    self._audit_refused.inc()
                    out = self._node(event, tag, record, ["policy_violation"])
                else:
                    out = self._audit(event, tag, record)
            else:
                out = self._node(event, tag, record)
        except Exception as exc:  # noqa: BLE001 - a bug or an unforeseen input must not stop the collector
            self._failures.inc()
            log.debug("event could not be normalized", extra={"error": repr(exc)})
            fallback = self._fallback(event, exc)
            if origin is not None:
                self._attest(fallback.record["doc"], origin)
            return fallback
        if origin is not None:
            self._attest(out.record["doc"], origin)
        return out

    def _sender(self, origin: core.Origin) -> dict[str, Any]:
        """The shared ``kloghub.sender`` of an origin (one dict per sender)."""
        sender = self._senders.get(origin)
        if sender is None:
            if len(self._senders) >= _FILES_MAX:
                self._senders.clear()
            sender = {"method": origin.method}
            if origin.identity is not None:
                sender["identity"] = origin.identity
            self._senders[origin] = sender
        return sender

    def _attest(self, doc: dict[str, Any], origin: core.Origin) -> None:
        """What the collector established about the sender replaces what it claimed."""
        kh = doc.get("kloghub")
        if type(kh) is not dict:
            kh = doc["kloghub"] = {}
        if origin is self._last_origin:
            sender = self._last_sender
        else:
            sender = self._sender(origin)
            self._last_origin, self._last_sender = origin, sender
        kh["sender"] = sender
        node = origin.node
        if node is None:
            return
        host = doc.get("host")
        claimed = host.get("name") if type(host) is dict else None
        if claimed != node:
            doc["host"] = {"name": node}
        k8s = doc.get("kubernetes")
        if type(k8s) is dict:
            k8s_node = k8s.get("node")
            named = k8s_node.get("name") if type(k8s_node) is dict else None
            if named is not None and named != node:
                claimed = claimed if claimed not in (None, node) else named
                # The claimed node's labels are not this node's: only the name is kept.
                doc["kubernetes"] = {**k8s, "node": {"name": node}}
            elif named is None and "pod" in k8s:
                doc["kubernetes"] = {**k8s, "node": {"name": node}}
        if claimed is not None and claimed != node:
            kh["claimed_host"] = claimed

    @staticmethod
    def _kind(tag: str, record: dict[str, Any]) -> int:
        if tag.startswith("kube."):
            return _CONTAINER
        if tag == "audit" or tag.startswith("audit."):
            return _AUDIT
        if tag.startswith("node."):
            return _NODE
        if type(record.get("kubernetes")) is dict:
            return _CONTAINER
        if _audit.looks_like_audit(record):
            return _AUDIT
        return _NODE

    # ------------------------------------------------------------------ shared parts

    @staticmethod
    def _event_time(time_ns: Any) -> tuple[int, list[str] | None]:
        """A time ``date_nanos`` takes: the event's, or now (flagged) when it is not one."""
        if type(time_ns) is int and 0 <= time_ns < _times.MAX_NS:
            return time_ns, None
        return time.time_ns(), ["time_out_of_range"]

    def _now(self) -> str:
        """``event.ingested``: the current time, formatted once per millisecond."""
        now_ms = time.time_ns() // 1_000_000
        if now_ms != self._now_ms:
            self._now_ms = now_ms
            self._now_text = self._ingested(now_ms * 1_000_000)
        return self._now_text

    def _file(self, path: str) -> dict[str, Any]:
        """The shared ``{"file": {"path": path}}`` of a log file."""
        log_field = self._files.get(path)
        if log_field is None:
            if len(self._files) >= _FILES_MAX:
                self._files.clear()
            log_field = self._files[path] = {"file": {"path": path}}
        return log_field

    def _provenance(
        self,
        doc: dict[str, Any],
        log_field: dict[str, Any],
        kh: dict[str, Any] | None,
        flags: list[str] | None,
        stage: str | None = None,
    ) -> str | None:
        """Adds ``log`` (the file) and ``kloghub.*``; returns the id when offsets give one."""
        doc_id = None
        if kh is not None:
            path = kh.get("file")
            if type(path) is str and path:
                if log_field:
                    log_field.update(self._file(path))
                else:
                    log_field = self._file(path)
            file_id, offset = kh.get("file_id"), kh.get("offset")
            provenance: dict[str, Any] = {}
            if type(file_id) is str and file_id:
                provenance["file_id"] = file_id
                if type(offset) is int and 0 <= offset < 2**63:
                    provenance["offset"] = offset
                    doc_id = _ids.offset_id(file_id, offset, stage, self._scope)
            kh_flags = kh.get("flags")
            if type(kh_flags) is list and kh_flags:
                provenance["flags"] = [str(f) for f in kh_flags] + (flags or [])
            elif flags:
                provenance["flags"] = flags
            if provenance:
                doc["kloghub"] = provenance
        elif flags:
            doc["kloghub"] = {"flags": flags}
        if log_field:
            doc["log"] = log_field
        return doc_id

    def _original(self, kh: dict[str, Any] | None, text: str | None, record: dict[str, Any]) -> str:
        raw = kh.get("raw") if kh is not None else None
        if type(raw) is bytes:
            return _strip_newline(raw.decode("utf-8", "replace"))
        if text is not None:
            return _strip_newline(text)
        plain = {k: v for k, v in record.items() if k != "kloghub"}
        return orjson.dumps(_jsonable(plain)).decode()

    def _finish(
        self,
        event: core.Event,
        tag: str,
        record: dict[str, Any],
        *,
        kh: dict[str, Any] | None,
        text: str | None,
        out: tuple[str, int, dict[str, Any], str | None, int],
    ) -> core.Event:
        """``event.original`` when configured, the id, and the document event."""
        index, time_ns, doc, doc_id, size = out
        if self._preserve:
            original = self._original(kh, text, record)
            doc["event"]["original"] = original
            size += len(original)
        if doc_id is None:
            doc_id = _ids.document_id(tag, event.time_ns, record, scope=self._scope)
        return core.Event(index, time_ns, {"id": doc_id, "doc": doc}, event.finalizer, size)

    @staticmethod
    def _host(kh: dict[str, Any] | None, record: dict[str, Any]) -> dict[str, Any] | None:
        for value in (
            kh.get("host") if kh is not None else None,
            record.get("host"),
            record.get("hostname"),
        ):
            if type(value) is str and value:
                return {"name": value}
        return None

    def _put_target(self, doc: dict[str, Any], rest: dict[str, Any]) -> None:
        node = doc
        for part in self._target[:-1]:
            child = node.get(part)
            if type(child) is not dict:
                child = node[part] = {}
            node = child
        node[self._target[-1]] = rest

    def _app_fields(
        self, doc: dict[str, Any], log_field: dict[str, Any], app: _applog.AppLog
    ) -> None:
        if app.message is not None:
            doc["message"] = app.message
        if app.level is not None:
            log_field["level"] = app.level
        if app.error is not None:
            doc["error"] = app.error
        if app.rest:
            self._put_target(doc, app.rest)

    def _body(
        self,
        doc: dict[str, Any],
        log_field: dict[str, Any],
        text: str | None,
        record: dict[str, Any],
    ) -> int:
        """Fills ``message`` and what a JSON body gives; returns the body's size.

        The body is the ``log`` line, or — records of Fluent Bit's ``Merge_Log`` — the
        application's keys already lifted into the record (with or without ``log``).
        """
        line = text if text is None or text[-1:] != "\n" else _strip_newline(text)
        if _KNOWN_KEYS.issuperset(record):
            doc["message"] = line if line is not None else ""
            if self._parse_json and line is not None and line[:1] == "{":
                app = _applog.parse(line)
                if app is not None:
                    self._app_fields(doc, log_field, app)
            return len(line) if line is not None else 0
        fields = {str(k): _jsonable(v) for k, v in record.items() if k not in _KNOWN_KEYS}
        serialized = orjson.dumps(fields).decode()
        if self._parse_json:
            app = _applog.from_object(fields)
        elif _applog.within_limits(fields):
            app = _applog.AppLog(None, None, None, fields)
        else:
            app = None
        if app is None:
            # Beyond what a flattened field takes: the line (or the keys as JSON) is text.
            doc["message"] = line if line is not None else serialized
        else:
            doc["message"] = line if line is not None else ""
            self._app_fields(doc, log_field, app)
        return len(serialized) + (len(line) if line is not None else 0)

    # ------------------------------------------------------------------ container logs

    def _container(self, event: core.Event, tag: str, record: dict[str, Any]) -> core.Event:
        kh = record.get("kloghub")
        if type(kh) is not dict:
            kh = None
        k8s = record.get("kubernetes")
        if type(k8s) is not dict:
            k8s = _k8s_from_tag(tag)
        meta = self._meta.get(
            k8s, kh.get("owner") if kh is not None else None, record.get("kubernetes_namespace")
        )
        doc = meta.base.copy()
        time_ns = event.time_ns
        if type(time_ns) is int and 0 <= time_ns < _times.MAX_NS:
            flags = None
        else:
            time_ns, flags = self._event_time(time_ns)
        doc["@timestamp"] = self._timestamp(time_ns)
        doc["event"] = {"dataset": meta.dataset, "ingested": self._now()}
        if meta.host is None:
            host = self._host(kh, record)
            if host is not None:
                doc["host"] = host
        stream = record.get("stream")
        if type(stream) is str and stream:
            doc["stream"] = stream
        text = record.get("log")
        if type(text) is not str:
            text = _text(text)
        log_field: dict[str, Any] = {}
        size = self._body(doc, log_field, text, record) + meta.size + _DOC_OVERHEAD
        if kh is None and _cri_partial(record):
            flags = [*(flags or ()), "partial"]
        doc_id = self._provenance(doc, log_field, kh, flags)
        if doc_id is not None and not self._preserve:  # the usual case, without _finish
            return core.Event(
                meta.index, time_ns, {"id": doc_id, "doc": doc}, event.finalizer, size
            )
        return self._finish(
            event, tag, record, kh=kh, text=text, out=(meta.index, time_ns, doc, doc_id, size)
        )

    # ------------------------------------------------------------------ node logs

    def _node(
        self,
        event: core.Event,
        tag: str,
        record: dict[str, Any],
        extra_flags: list[str] | None = None,
    ) -> core.Event:
        kh = record.get("kloghub")
        if type(kh) is not dict:
            kh = None
        time_ns, flags = self._event_time(event.time_ns)
        if extra_flags:
            flags = [*(flags or ()), *extra_flags]
        doc: dict[str, Any] = {
            "@timestamp": self._timestamp(time_ns),
            "data_stream": self._node_stream,
            "ecs": self._ecs,
            "event": {"dataset": "kubernetes.node_logs", "ingested": self._now()},
        }
        host = self._host(kh, record)
        if host is not None:
            doc["host"] = host
        if self._cluster is not None:
            doc["orchestrator"] = {"type": "kubernetes", "cluster": self._cluster}
        text = _text(record.get("log"))
        log_field: dict[str, Any] = {}
        size = self._body(doc, log_field, text, record) + _DOC_OVERHEAD
        doc_id = self._provenance(doc, log_field, kh, flags)
        return self._finish(
            event, tag, record, kh=kh, text=text, out=(self._node_index, time_ns, doc, doc_id, size)
        )

    # ------------------------------------------------------------------ audit logs

    def _audit(self, event: core.Event, tag: str, record: dict[str, Any]) -> core.Event:
        kh = record.get("kloghub")
        if type(kh) is not dict:
            kh = None
        text = _text(record.get("log"))
        parsed: Any = None
        if text is not None:
            try:
                parsed = orjson.loads(text)
            except orjson.JSONDecodeError:
                parsed = None
        elif _audit.looks_like_audit(record):
            parsed = {k: v for k, v in record.items() if k not in _KNOWN_KEYS}
        result = _audit.from_event(parsed, self._dedot) if type(parsed) is dict else None
        doc: dict[str, Any]
        stage = None
        if result is None:
            self._audit_errors.inc()
            time_ns, flags = self._event_time(event.time_ns)
            doc = {
                "message": _strip_newline(text) if text is not None else "",
                "event": {"kind": "pipeline_error"},
                "error": {"message": "the audit log line is not an audit event (JSON object)"},
            }
        else:
            event_time = result.time_ns if result.time_ns is not None else event.time_ns
            time_ns, flags = self._event_time(event_time)
            doc = result.fields
            if self._cluster is not None and "cluster" not in doc["orchestrator"]:
                doc["orchestrator"]["cluster"] = self._cluster
            stage = result.stage
        doc["@timestamp"] = self._timestamp(time_ns)
        doc["event"]["dataset"] = "kubernetes.audit_logs"
        doc["event"]["ingested"] = self._now()
        doc["data_stream"] = self._audit_stream
        doc["ecs"] = self._ecs
        host = self._host(kh, record)
        if host is not None:
            doc["host"] = host
        size = (len(text) if text is not None else 1024) * 2 + _DOC_OVERHEAD
        doc_id = self._provenance(doc, {}, kh, flags, stage)
        if doc_id is None:
            doc_id = _ids.document_id(tag, event.time_ns, record, stage, self._scope)
        return self._finish(
            event,
            tag,
            record,
            kh=kh,
            text=text,
            out=(self._audit_index, time_ns, doc, doc_id, size),
        )

    # ------------------------------------------------------------------ last resort

    def _fallback(self, event: core.Event, exc: Exception) -> core.Event:
        """A document that keeps the line when normalizing failed (a bug, or input no rule
        foresaw): ``event.kind: pipeline_error`` and the reason in ``error.message``."""
        record = event.record if type(event.record) is dict else {"log": event.record}
        tag = event.tag if type(event.tag) is str else str(event.tag)
        kind = self._kind(tag, record)
        if kind == _AUDIT:
            stream, index = self._audit_stream, self._audit_index
        elif kind == _NODE:
            stream, index = self._node_stream, self._node_index
        else:
            stream = {
                "type": "logs",
                "dataset": "kubernetes.container_logs",
                "namespace": self._namespace,
            }
            index = f"logs-kubernetes.container_logs-{self._namespace}"
        time_ns = event.time_ns
        if type(time_ns) is not int or not 0 <= time_ns < _times.MAX_NS:
            time_ns = time.time_ns()
        text = _text(record.get("log"))
        if text is None:
            text = orjson.dumps(_jsonable(record)).decode()
        doc = {
            "@timestamp": _times.Rfc3339(9)(time_ns),
            "message": text,
            "data_stream": stream,
            "ecs": self._ecs,
            "event": {
                "kind": "pipeline_error",
                "dataset": stream["dataset"],
                "ingested": _times.Rfc3339(3)(time.time_ns()),
            },
            "error": {"message": f"kloghub could not normalize this event: {exc!r}"[:1000]},
        }
        scope = self._scope
        try:
            doc_id = _ids.document_id(tag, time_ns, record, scope=scope)
        except Exception:  # noqa: BLE001 - the id of an event that broke everything else
            doc_id = _ids.document_id(tag, time_ns, {"log": text}, scope=scope)
        return core.Event(
            index, time_ns, {"id": doc_id, "doc": doc}, event.finalizer, len(text) + 400
        )
