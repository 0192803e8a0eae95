"""The detection stage of a pipeline: normalized document events in, alert events out.

The collector (and, at level crawl, the agent's node store) calls the stage on each batch
right after normalization, with the document events it already made; the alerts it
returns travel in the same batch to every sink, so an alert is acknowledged (and the
agent's checkpoint moves) only once it is as durable as the events that raised it.

Cost per event: the rules that can read a document are known from the rule's log source
when the rules load. With only audit rules (the default pack), a container or node log
costs one string comparison of its data stream; an audit document goes through the
audit rules' compiled matchers.

Alerts are ECS documents (:func:`kloghub.detect._alert.alert_document`) in the
``kloghub.alerts`` data stream of the pipeline's namespace. Ids derive from the rule and
the triggering document ids, so a resent chunk rewrites the same alerts. The alert of an
audit event about a pod is joined with that pod's current metadata (labels, node, owner
workload) from the container logs the pipeline has seen (``pods``), when there are any.

**The notification hook**: :attr:`Stage.on_alert` is the list of callables that receive
every alert document whose mode is ``alert`` — never ``dry-run`` — once it is stored in
every sink queue (:meth:`Stage.notify`, called by the pipeline after the push). A callable
must not block (hand the document to a queue and return); one that raises is counted in
``kloghub_alert_hook_errors_total`` and the others still run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from kloghub import config, core
from kloghub.detect import _alert, _engine, _rules
from kloghub.runtime import metrics

__all__ = ["AlertHook", "Stage"]

_log = logging.getLogger("kloghub.detect")

AlertHook = Callable[[dict[str, Any]], None]
"""Called with an alert document (mode ``alert``); must return at once."""

PodLookup = Callable[[str, str], Mapping[str, Any] | None]
"""``(namespace, pod name)`` → the pod's ``kubernetes.*`` fragment, or None."""

_AUDIT_PREFIX = "logs-kubernetes.audit_logs-"


class Stage:
    """A :class:`~kloghub.detect._engine.Detector` over document events."""

    def __init__(
        self,
        detector: _engine.Detector,
        namespace: str,
        *,
        pods: PodLookup | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.detector = detector
        self.namespace = namespace
        self.index = _alert.tag(namespace)
        self.on_alert: list[AlertHook] = []
        """Receivers of every alert (mode ``alert``) once it is stored: the notifier."""
        self._pods = pods
        self._clock = clock
        self._audit_only = detector.audit_only
        self._errors = detector.errors
        self._suppressed = detector.suppressed

    @classmethod
    def from_config(
        cls,
        cfg: config.DetectionsConfig,
        namespace: str,
        *,
        pods: PodLookup | None = None,
        where: str = "collector.detections",
    ) -> Stage:
        """Rules loaded and compiled; ``ConfigError`` (naming ``where``) for bad rules or
        settings."""
        try:
            detector = _engine.Detector.from_config(cfg, where=where)
        except _rules.LoadError as exc:
            raise core.ConfigError([f"{where}: {e}" for e in exc.errors]) from exc
        stage = cls(detector, namespace, pods=pods)
        _log.info("detections loaded", extra=stage.summary())
        return stage

    def summary(self) -> dict[str, Any]:
        """What is loaded: rule counts and modes (for logs and ``kloghub validate``)."""
        return self.detector.summary()

    def __call__(self, events: list[core.Event]) -> list[core.Event]:
        """The alert events the document events ``events`` raise (usually none)."""
        detector = self.detector
        audit_only = self._audit_only
        found: list[_engine.Alert] = []
        for event in events:
            if audit_only and not event.tag.startswith(_AUDIT_PREFIX):
                continue
            record = event.record
            raised = detector(record["id"], record["doc"], event.time_ns)
            if raised:
                found.extend(raised)
        self._count()
        if not found:
            return []
        now = self._clock()
        out = []
        for alert in found:
            alert_id, doc = _alert.alert_document(alert, self.namespace, now)
            doc["kloghub"]["alert"]["id"] = alert_id
            self._join(doc)
            size = len(orjson.dumps(doc, default=str))
            out.append(
                core.Event(self.index, alert.last_ns, {"id": alert_id, "doc": doc}, None, size)
            )
            metrics.ALERTS.labels(alert.mode).inc()
        return out

    def notify(self, alerts: list[core.Event]) -> None:
        """Hands each stored alert of mode ``alert`` to every :attr:`on_alert` hook."""
        hooks = self.on_alert
        if not hooks:
            return
        for event in alerts:
            doc = event.record["doc"]
            if doc["kloghub"]["alert"]["mode"] != "alert":
                continue
            for hook in hooks:
                try:
                    hook(doc)
                except Exception:  # noqa: BLE001 - a receiver must never stop ingestion
                    metrics.ALERT_HOOK_ERRORS.inc()
                    _log.warning("an alert hook failed", exc_info=True)

    def _count(self) -> None:
        detector = self.detector
        if detector.errors != self._errors:
            metrics.DETECTION_ERRORS.inc(detector.errors - self._errors)
            self._errors = detector.errors
        if detector.suppressed != self._suppressed:
            metrics.ALERTS_SUPPRESSED.inc(detector.suppressed - self._suppressed)
            self._suppressed = detector.suppressed

    def _join(self, doc: dict[str, Any]) -> None:
        """``kubernetes.namespace`` of the object an audit event is about and, for a pod,
        its metadata as the pipeline last saw it (the trigger's shared, read-only parts
        are replaced, never changed)."""
        kube = doc.get("kubernetes")
        audit = kube.get("audit") if type(kube) is dict else None
        ref = audit.get("objectRef") if type(audit) is dict else None
        if type(ref) is not dict:
            return
        namespace, name = ref.get("namespace"), ref.get("name")
        if type(namespace) is not str or not namespace:
            return
        joined: dict[str, Any] = {**kube, "namespace": namespace}  # type: ignore[dict-item]
        if ref.get("resource") == "pods" and type(name) is str and self._pods is not None:
            pod = self._pods(namespace, name)
            if pod is not None:
                joined.update((k, v) for k, v in pod.items() if k != "container")
                joined["audit"] = audit
        doc["kubernetes"] = joined
