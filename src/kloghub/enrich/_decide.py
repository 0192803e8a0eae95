"""File → pod → record fields and per-file decisions, from the cache alone.

Lookup (which pod?) is separate from decoration (what to add?), and both read only the
cache: no API call is ever made for a file. :meth:`Enricher.decide` runs once per file
and again when the cache's ``generation`` moved; the source keeps the result.

Lookup:

- ``/var/log/pods/<ns>_<pod>_<uid>/<container>/<restart>.log`` carries the UID: exact.
  The container id comes from the pod status (the current container when ``<restart>``
  is the restart count, the previous one when it is one less).
- ``/var/log/containers/<pod>_<ns>_<container>-<id>.log``: by (namespace, name); when
  several pods had that name (a StatefulSet pod recreated), the one whose status lists
  the container id, else the live one.
- A link name the kubelet cut at 251 characters (long pod, namespace and container
  names) does not parse; it is matched against the link names of the cached pods, cut
  the same way. Without a match only the pod name and namespace before the cut are set.

Fields that the path carries are always set, also when the API server is unreachable or
not used (level ``crawl``). Annotations of the pod:

- ``kloghub.io/exclude: "true"`` (and ``fluentbit.io/exclude: "true"``, for
  migrations): the pod's files are not shipped.
- ``kloghub.io/exclude-containers: a,b``: these containers' files are not shipped.
- ``kloghub.io/parser: json|text``: how the collector reads the message (``json`` also
  turns multiline joining off for the file, one JSON document being one line).
- ``kloghub.io/multiline: java|python|go|<regex>``: join stack traces in this pod's files
  with these built-in rules (comma-separated), or with a custom first-line regex.

An annotation with a value that makes no sense is ignored, with one warning per pod.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from kloghub import config
from kloghub.enrich import _cache, _pod

__all__ = ["ANNOTATIONS", "Enricher", "FileDecision", "PathFields", "annotation_decisions"]

_log = logging.getLogger("kloghub.enrich")

EXCLUDE = "kloghub.io/exclude"
EXCLUDE_CONTAINERS = "kloghub.io/exclude-containers"
PARSER = "kloghub.io/parser"
MULTILINE = "kloghub.io/multiline"
FLUENTBIT_EXCLUDE = "fluentbit.io/exclude"
ANNOTATIONS = (EXCLUDE, EXCLUDE_CONTAINERS, PARSER, MULTILINE, FLUENTBIT_EXCLUDE)
"""The pod annotations the agent reads."""

_RULES = frozenset({"java", "python", "go"})
_PARSERS = frozenset({"json", "text"})


class PathFields(Protocol):
    """What the file path told (``kloghub.sources.PathMeta`` has this shape)."""

    @property
    def namespace(self) -> str | None: ...
    @property
    def pod(self) -> str | None: ...
    @property
    def pod_uid(self) -> str | None: ...
    @property
    def container(self) -> str | None: ...
    @property
    def container_id(self) -> str | None: ...
    @property
    def restart(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class FileDecision:
    """Everything the source needs for one container log file.

    ``kubernetes`` is shared by every record of the file: never mutate it.
    """

    kubernetes: dict[str, Any]
    """Fluent Bit's kubernetes map (only the keys that are known)."""
    owner: dict[str, str] | None
    """``{"kind": ..., "name": ...}`` for ``kloghub.owner``."""
    namespace: str | None
    pod: str | None
    container: str | None
    labels: Mapping[str, str] | None
    """The pod's labels; ``None`` when the pod is not known (not an empty selector)."""
    exclude: str | None
    """Why the file is not shipped (``annotation``), or ``None``."""
    parser: str | None
    """``json`` or ``text`` from ``kloghub.io/parser``."""
    multiline: config.MultilineConfig | None
    """The pod's own multiline rules, or ``None`` for the configured default."""
    signature: tuple[Any, ...]
    """Equal signatures give equal decisions: the source rebuilds nothing when it holds."""


@dataclass(frozen=True, slots=True)
class _Annotated:
    exclude: bool
    exclude_containers: frozenset[str]
    parser: str | None
    multiline: config.MultilineConfig | None


_NOTHING = _Annotated(exclude=False, exclude_containers=frozenset(), parser=None, multiline=None)


def annotation_decisions(annotations: Mapping[str, str], pod: str = "?") -> _Annotated:
    """What a pod's annotations ask for (invalid values ignored with a warning)."""
    if not any(key in annotations for key in ANNOTATIONS):
        return _NOTHING
    exclude = any(
        annotations.get(key, "").strip().lower() == "true" for key in (EXCLUDE, FLUENTBIT_EXCLUDE)
    )
    containers = frozenset(
        part.strip() for part in annotations.get(EXCLUDE_CONTAINERS, "").split(",") if part.strip()
    )
    parser = annotations.get(PARSER, "").strip().lower() or None
    if parser is not None and parser not in _PARSERS:
        _log.warning(
            "ignoring an unknown parser annotation",
            extra={"pod": pod, "annotation": PARSER, "value": parser},
        )
        parser = None
    multiline = _multiline(annotations.get(MULTILINE, "").strip(), pod)
    return _Annotated(exclude, containers, parser, multiline)


def _multiline(value: str, pod: str) -> config.MultilineConfig | None:
    if not value:
        return None
    names = [part.strip().lower() for part in value.split(",")]
    if all(name in _RULES for name in names):
        return config.MultilineConfig(enabled=True, rules=names)
    try:
        re.compile(value)
    except re.error as exc:
        _log.warning(
            "ignoring a multiline annotation that is neither a rule nor a regex",
            extra={"pod": pod, "annotation": MULTILINE, "value": value, "error": str(exc)},
        )
        return None
    return config.MultilineConfig(enabled=True, rules=[], start_pattern=value)


def _cut_link_stem(path: str) -> str | None:
    """The stem of a ``/var/log/containers`` name the kubelet cut at 251 characters."""
    name = path.rpartition("/")[2]
    if not name.endswith(".log") or len(name) - 4 != _cache.KUBELET_LINK_MAX:
        return None
    return name[:-4]


class Enricher:
    """Decides, per file, the record fields and what to do with the file.

    ``cache`` is ``None`` when the API is not used (level ``crawl``): path fields only.
    ``node_name`` fills ``host`` when the pod is not known.
    """

    def __init__(self, cache: _cache.PodCache | None, *, node_name: str | None = None) -> None:
        self.cache = cache
        self.node_name = node_name
        self._annotated: dict[tuple[str, int], _Annotated] = {}

    @property
    def generation(self) -> int:
        """Moves when a decision may have changed (compare before calling :meth:`decide`)."""
        return self.cache.generation if self.cache is not None else 0

    # ------------------------------------------------------------------ lookup

    def _lookup(
        self, fields: PathFields, path: str
    ) -> tuple[_pod.PodInfo | None, str | None, str | None, str | None, str | None]:
        """(pod, namespace, pod name, container, container id) for a file."""
        ns, name, container, cid = (
            fields.namespace,
            fields.pod,
            fields.container,
            fields.container_id,
        )
        cache = self.cache
        if fields.pod_uid is not None:
            pod = cache.get(fields.pod_uid) if cache is not None else None
            return pod, ns, name, container, cid
        if name is not None and ns is not None:
            pod = None
            if cache is not None:
                candidates = cache.by_name(ns, name)
                pod = next(
                    (
                        p
                        for p in candidates
                        if cid is not None
                        and any(cid in (c.container_id, c.previous_id) for c in p.containers)
                    ),
                    candidates[0] if candidates else None,
                )
            return pod, ns, name, container, cid
        stem = _cut_link_stem(path)
        if stem is None:
            return None, ns, name, container, cid
        parts = stem.split("_", 2)
        if cache is not None:
            found = cache.match_link(stem)
            if found is not None:
                pod, c, cid = found
                return pod, pod.namespace, pod.name, c.name, cid
        # Without a match: the pod name and namespace when the cut left them whole.
        cut_ns = parts[1] if len(parts) == 3 else None
        return None, cut_ns, parts[0] if len(parts) >= 2 else None, None, None

    # ------------------------------------------------------------------ decoration

    def _annotations(self, pod: _pod.PodInfo) -> _Annotated:
        key = (pod.uid, self.cache.revision(pod.uid) if self.cache is not None else 0)
        found = self._annotated.get(key)
        if found is None:
            if len(self._annotated) > 4096:
                self._annotated.clear()
            found = self._annotated[key] = annotation_decisions(pod.annotations, pod.name)
        return found

    def _pod_fields(
        self, pod: _pod.PodInfo, container: str | None, cid: str | None, restart: int | None
    ) -> dict[str, Any]:
        c = pod.container(container)
        if cid is None and c is not None:
            if restart is None or restart == c.restart_count:
                cid = c.container_id
            elif c.restart_count is not None and restart == c.restart_count - 1:
                cid = c.previous_id
        k8s: dict[str, Any] = {
            "pod_name": pod.name,
            "namespace_name": pod.namespace,
            "pod_id": pod.uid,
        }
        if pod.labels:
            k8s["labels"] = pod.labels
        if pod.annotations:
            k8s["annotations"] = pod.annotations
        host = pod.node or self.node_name
        optional = (  # in the order of Fluent Bit's kubernetes filter
            ("host", host),
            ("pod_ip", pod.pod_ip),
            ("container_name", container),
            ("docker_id", cid),
            ("container_hash", c.image_id if c is not None else None),
            ("container_image", c.image if c is not None else None),
            ("container_runtime", c.runtime if c is not None else None),
        )
        k8s.update((key, value) for key, value in optional if value)
        return k8s

    def decide(self, fields: PathFields, path: str) -> FileDecision:
        """The kubernetes map, owner and decisions for the file at ``path``."""
        pod, ns, name, container, cid = self._lookup(fields, path)
        cache = self.cache
        if pod is not None:
            k8s = self._pod_fields(pod, container, cid, fields.restart)
            ns, name = pod.namespace, pod.name
        else:
            known = (
                ("pod_name", name),
                ("namespace_name", ns),
                ("pod_id", fields.pod_uid),
                ("host", self.node_name),
                ("container_name", container),
                ("docker_id", cid),
            )
            k8s = {key: value for key, value in known if value is not None}
        ns_info = cache.namespaces.get(ns) if cache is not None and ns is not None else None
        if ns_info is not None:
            if ns_info.labels:
                k8s["namespace_labels"] = ns_info.labels
            if ns_info.annotations:
                k8s["namespace_annotations"] = ns_info.annotations
        node_info = cache.node if cache is not None else None
        if node_info is not None and node_info.labels:
            k8s["node_labels"] = node_info.labels

        annotated = self._annotations(pod) if pod is not None else _NOTHING
        excluded = annotated.exclude or (
            container is not None and container in annotated.exclude_containers
        )
        return FileDecision(
            kubernetes=k8s,
            owner={"kind": pod.owner[0], "name": pod.owner[1]} if pod and pod.owner else None,
            namespace=ns,
            pod=name,
            container=container,
            labels=pod.labels if pod is not None else None,
            exclude="annotation" if excluded else None,
            parser=annotated.parser,
            multiline=annotated.multiline,
            signature=(
                pod.uid if pod is not None else None,
                cache.revision(pod.uid) if cache is not None and pod is not None else 0,
                ns_info.revision if ns_info is not None else 0,
                node_info.revision if node_info is not None else 0,
                ns,
                name,
                container,
                cid,
            ),
        )
