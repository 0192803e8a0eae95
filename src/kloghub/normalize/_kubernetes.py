"""Pod metadata (Fluent Bit's ``kubernetes`` map) → the ECS and ``kubernetes.*`` fragments.

The fragments depend only on the pod, the container and the owner workload, so they are
built once per distinct input and shared by every document of that container: the
per-event cost is a dict comparison. Documents must therefore be treated as read-only.

Input keys read (Fluent Bit's kubernetes filter, plus what kloghub's enrichment adds):

================================= ==============================================
``kubernetes.pod_name``           ``kubernetes.pod.name``
``kubernetes.pod_id``             ``kubernetes.pod.uid``
``kubernetes.pod_ip``             ``kubernetes.pod.ip`` (when it is an IP address)
``kubernetes.namespace_name``     ``kubernetes.namespace``, ``orchestrator.namespace``
``kubernetes.host``               ``kubernetes.node.name``, ``host.name``
``kubernetes.container_name``     ``kubernetes.container.name``, ``container.name``
``kubernetes.docker_id``          ``container.id``
``kubernetes.container_runtime``  ``container.runtime`` (``containerd``, ``cri-o``, ``docker``)
``kubernetes.container_image``    ``container.image.name``
``kubernetes.container_hash``     ``container.image.hash.all`` (the ``sha256:…`` digest)
``kubernetes.labels``             ``kubernetes.labels`` (de-dotted), ``service.name`` and
                                  ``service.version`` from ``app.kubernetes.io/{name,version}``
``kubernetes.annotations``        ``kubernetes.annotations`` (de-dotted)
``kubernetes.ownerReferences``    ``kubernetes.{replicaset,deployment,daemonset,statefulset,
  / ``kloghub.owner``             job,cronjob}.name``
``kubernetes.node_labels``        ``kubernetes.node.labels`` (de-dotted)
``kubernetes.namespace_labels``   ``kubernetes.namespace_labels`` (de-dotted); also read from
  / ``_annotations``              Fluent Bit's top-level ``kubernetes_namespace`` map
================================= ==============================================

``kloghub.owner`` is ``{"kind": "Deployment", "name": "web"}``, a list of such maps, or
``"Deployment/web"``. With the pod's ``pod-template-hash`` label, a ReplicaSet owner also
names its Deployment and a Deployment owner its ReplicaSet (both, as Elastic does).
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Mapping
from typing import Any

import orjson

__all__ = ["Meta", "MetaCache", "dedot", "reroute_part"]

_WORKLOADS = {
    "ReplicaSet": "replicaset",
    "Deployment": "deployment",
    "DaemonSet": "daemonset",
    "StatefulSet": "statefulset",
    "Job": "job",
    "CronJob": "cronjob",
}
_ROUTE_DATASET = "elastic.co/dataset"
_ROUTE_NAMESPACE = "elastic.co/namespace"
_DISALLOWED = str.maketrans(dict.fromkeys('\\/*?"<>| ,#:-', "_"))
_CACHE_MAX = 8192


def dedot(mapping: Any, enabled: bool = True) -> dict[str, Any]:
    """A label or annotation map with ``.`` in keys replaced by ``_`` (Elastic's de-dot).

    Values that are not text are turned into text, so the map always fits a keyword
    mapping; anything but a map gives ``{}``.
    """
    if type(mapping) is not dict:
        return {}
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = str(key)
        if enabled:
            name = name.replace(".", "_")
        out[name] = value if type(value) is str else _text(value)
    return out


def _text(value: Any) -> str:
    if type(value) is bytes:
        return value.decode("utf-8", "replace")
    if value is None:
        return ""
    if type(value) in (int, float, bool):
        return orjson.dumps(value).decode()
    return str(value)


def reroute_part(value: Any) -> str | None:
    """A data stream dataset or namespace part as Elastic's reroute processor makes it:
    lower case, ``\\ / * ? " < > | space , # : -`` replaced by ``_``, at most 100 characters."""
    if type(value) is not str or not value:
        return None
    return value.lower().translate(_DISALLOWED)[:100]


def _str(value: Any) -> str | None:
    return value if type(value) is str and value else None


def _ip(value: Any) -> str | None:
    if type(value) is not str or not value:
        return None
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return None
    return value


def _digest(value: Any) -> str | None:
    """``sha256:…`` from ``docker-pullable://img@sha256:…``, ``img@sha256:…`` or itself."""
    if type(value) is not str or not value:
        return None
    digest = value.rsplit("@", 1)[-1]
    if ":" not in digest:
        return None
    return digest


def _owners(value: Any) -> list[tuple[str, str]]:
    items = value if type(value) is list else [value]
    owners = []
    for item in items:
        if type(item) is dict:
            kind, name = item.get("kind"), item.get("name")
        elif type(item) is str and "/" in item:
            kind, name = item.split("/", 1)
        else:
            continue
        if type(kind) is str and type(name) is str and name:
            owners.append((kind, name))
    return owners


def _pod(k8s: Mapping[str, Any]) -> dict[str, Any]:
    fields = (
        ("name", _str(k8s.get("pod_name"))),
        ("uid", _str(k8s.get("pod_id"))),
        ("ip", _ip(k8s.get("pod_ip"))),
    )
    return {field: value for field, value in fields if value is not None}


def _kubernetes(
    k8s: Mapping[str, Any], owner: Any, namespace_meta: Any, dedot_keys: bool
) -> dict[str, Any]:
    kube: dict[str, Any] = {}
    pod = _pod(k8s)
    if pod:
        kube["pod"] = pod
    namespace = _str(k8s.get("namespace_name"))
    if namespace is not None:
        kube["namespace"] = namespace
    ns_labels, ns_annotations = k8s.get("namespace_labels"), k8s.get("namespace_annotations")
    if type(namespace_meta) is dict:
        ns_labels = namespace_meta.get("labels", ns_labels)
        ns_annotations = namespace_meta.get("annotations", ns_annotations)
    node: dict[str, Any] = {}
    node_name = _str(k8s.get("host"))
    if node_name is not None:
        node["name"] = node_name
    maps = (
        (kube, "namespace_labels", ns_labels),
        (kube, "namespace_annotations", ns_annotations),
        (node, "labels", k8s.get("node_labels")),
        (kube, "labels", k8s.get("labels")),
        (kube, "annotations", k8s.get("annotations")),
    )
    for target, field, mapping in maps:
        if type(mapping) is dict and mapping:
            target[field] = dedot(mapping, dedot_keys)
    if node:
        kube["node"] = node
    container_name = _str(k8s.get("container_name"))
    if container_name is not None:
        kube["container"] = {"name": container_name}
    _workloads(kube, k8s, owner, k8s.get("labels"))
    return kube


def _workloads(kube: dict[str, Any], k8s: Mapping[str, Any], owner: Any, labels: Any) -> None:
    owners = _owners(k8s.get("ownerReferences")) if "ownerReferences" in k8s else []
    if owner is not None:
        owners.extend(_owners(owner))
    for kind, name in owners:
        field = _WORKLOADS.get(kind)
        if field is None or field in kube:
            continue
        kube[field] = {"name": name}
        template_hash = labels.get("pod-template-hash") if type(labels) is dict else None
        if type(template_hash) is not str or not template_hash:
            continue
        # The pod-template-hash label links a Deployment and its ReplicaSet both ways.
        suffix = "-" + template_hash
        if kind == "ReplicaSet" and "deployment" not in kube:
            if name.endswith(suffix) and len(name) > len(suffix):
                kube["deployment"] = {"name": name[: -len(suffix)]}
        elif kind == "Deployment" and "replicaset" not in kube:
            kube["replicaset"] = {"name": name + suffix}


def _container(k8s: Mapping[str, Any]) -> dict[str, Any] | None:
    container: dict[str, Any] = {}
    container_id = _str(k8s.get("docker_id"))
    if container_id is not None:
        container["id"] = container_id
    container_name = _str(k8s.get("container_name"))
    if container_name is not None:
        container["name"] = container_name
    runtime = _str(k8s.get("container_runtime"))
    if runtime is not None:
        container["runtime"] = runtime
    image: dict[str, Any] = {}
    image_name = _str(k8s.get("container_image"))
    if image_name is not None:
        image["name"] = image_name
    digest = _digest(k8s.get("container_hash"))
    if digest is not None:
        image["hash"] = {"all": [digest]}
    if image:
        container["image"] = image
    return container or None


def _service(labels: Mapping[str, Any], container_name: str | None) -> dict[str, Any] | None:
    service: dict[str, Any] = {}
    name = _str(labels.get("app.kubernetes.io/name")) or container_name
    if name is not None:
        service["name"] = name
    version = _str(labels.get("app.kubernetes.io/version"))
    if version is not None:
        service["version"] = version
    return service or None


def _route(
    labels: Mapping[str, Any], annotations: Mapping[str, Any], default_namespace: str
) -> tuple[str, str]:
    """The dataset and namespace a pod's ``elastic.co/*`` annotations (or labels) pick."""
    dataset = "kubernetes.container_logs"
    routed = reroute_part(annotations.get(_ROUTE_DATASET)) or reroute_part(
        labels.get(_ROUTE_DATASET)
    )
    # A pod may pick its own dataset, never one of the other kubernetes streams
    # (container logs posing as audit events would be a way to forge evidence).
    if routed and (
        routed.startswith("kubernetes.container_logs") or not routed.startswith("kubernetes")
    ):
        dataset = routed
    namespace = (
        reroute_part(annotations.get(_ROUTE_NAMESPACE))
        or reroute_part(labels.get(_ROUTE_NAMESPACE))
        or default_namespace
    )
    return dataset, namespace


class Meta:
    """The document fragments of one container (shared, read-only)."""

    __slots__ = (
        "base",
        "container",
        "dataset",
        "host",
        "index",
        "kubernetes",
        "orchestrator",
        "service",
        "size",
        "stream",
    )

    def __init__(
        self,
        k8s: Mapping[str, Any],
        owner: Any,
        namespace_meta: Any,
        *,
        dedot_keys: bool,
        default_namespace: str,
        reroute: bool,
        cluster_name: str | None,
        ecs: dict[str, Any],
    ) -> None:
        self.kubernetes = _kubernetes(k8s, owner, namespace_meta, dedot_keys)
        self.container = _container(k8s)
        namespace = _str(k8s.get("namespace_name"))
        orchestrator: dict[str, Any] = {"type": "kubernetes"}
        if namespace is not None:
            orchestrator["namespace"] = namespace
        if cluster_name:
            orchestrator["cluster"] = {"name": cluster_name}
        self.orchestrator = orchestrator
        node_name = _str(k8s.get("host"))
        self.host = {"name": node_name} if node_name is not None else None
        labels = k8s.get("labels")
        labels = labels if type(labels) is dict else {}
        annotations = k8s.get("annotations")
        annotations = annotations if type(annotations) is dict else {}
        self.service = _service(labels, _str(k8s.get("container_name")))
        if reroute:
            dataset, ds_namespace = _route(labels, annotations, default_namespace)
        else:
            dataset, ds_namespace = "kubernetes.container_logs", default_namespace
        self.dataset = dataset
        self.stream = {"type": "logs", "dataset": dataset, "namespace": ds_namespace}
        self.index = f"logs-{dataset}-{ds_namespace}"
        base: dict[str, Any] = {
            "data_stream": self.stream,
            "ecs": ecs,
            "kubernetes": self.kubernetes,
            "orchestrator": orchestrator,
        }
        optional = (("container", self.container), ("host", self.host), ("service", self.service))
        base.update((field, value) for field, value in optional if value is not None)
        self.base = base
        """The fields every document of this container shares (copied, then completed)."""
        self.size = len(
            orjson.dumps(
                [self.kubernetes, self.container, orchestrator, self.host, self.service],
                default=str,
            )
        )


class MetaCache:
    """Input metadata → :class:`Meta`, bounded; a hit costs one (deep, C-speed) dict comparison."""

    __slots__ = ("_entries", "_last", "_options", "_pods", "generation")

    def __init__(self, **options: Any) -> None:
        self.generation = 0
        """Times the cache was emptied (what was made of its entries is to be made again)."""
        self._entries: dict[tuple[Any, ...], tuple[dict[str, Any], Any, Any, Meta]] = {}
        self._options = options
        self._last: tuple[dict[str, Any], Any, Any, Meta] | None = None
        self._pods: dict[tuple[Any, Any], Meta] = {}

    def pod(self, namespace: str, name: str) -> Meta | None:
        """The newest metadata seen for the pod ``namespace/name`` (any of its containers)."""
        return self._pods.get((namespace, name))

    def get(self, k8s: dict[str, Any], owner: Any, namespace_meta: Any) -> Meta:
        # Events arrive in runs of one container (a Forward chunk has one tag).
        last = self._last
        if last is not None and last[0] == k8s and last[1] == owner and last[2] == namespace_meta:
            return last[3]
        key = (
            k8s.get("namespace_name"),
            k8s.get("pod_name"),
            k8s.get("container_name"),
            k8s.get("docker_id"),
        )
        try:
            entry = self._entries.get(key)
        except TypeError:  # an unhashable value where a name belongs: build, do not cache
            return Meta(k8s, owner, namespace_meta, **self._options)
        if entry is not None:
            cached_k8s, cached_owner, cached_ns, meta = entry
            if cached_k8s == k8s and cached_owner == owner and cached_ns == namespace_meta:
                self._last = entry
                return meta
        meta = Meta(k8s, owner, namespace_meta, **self._options)
        if len(self._entries) >= _CACHE_MAX:
            self._entries.clear()
            self._pods.clear()
            self.generation += 1
        self._pods[key[:2]] = meta
        # Copies: the caller may update its metadata map in place when the pod changes.
        entry = self._entries[key] = (
            copy.deepcopy(k8s),
            copy.deepcopy(owner),
            copy.deepcopy(namespace_meta),
            meta,
        )
        self._last = entry
        return meta
