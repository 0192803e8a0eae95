"""A pod as the agent keeps it: the few fields enrichment needs, parsed from API JSON.

Objects from the API server are plain JSON dicts (the watch is read raw, see
``_watch.py``). :func:`pod_from_api` keeps only what ends up in records, so the cache
stays small (``managedFields``, specs and conditions are dropped) and never crashes on
odd input: a pod without ``metadata.uid`` is refused with ``None``.

Owner workload (``kloghub.owner``) comes from the pod's controller reference alone; the
agent makes no extra API call for it:

- ``ReplicaSet`` whose name is ``<deployment>-<pod-template-hash>`` (the pod carries the
  ``pod-template-hash`` label) → ``Deployment <deployment>``; without the label or the
  suffix it stays ``ReplicaSet``.
- ``StatefulSet``, ``DaemonSet``, ``ReplicationController``, ``Node`` (static pods) and
  custom controllers → their own kind and name.
- ``Job`` → ``CronJob <name>`` when the Job name is ``<cronjob>-<scheduled time>``: a
  suffix of digits that reads as a plausible scheduled time, in minutes since the epoch
  (what the CronJob controller writes since Kubernetes 1.21) or in seconds (the older
  controller), between 2015 and one year from now. The Job's own owner reference, which
  says ``CronJob`` for certain, is on the Job and not on the pod; reading it would take a
  Job watch. So this is the name pattern, and a hand-made Job named like
  ``report-28000000`` would be attributed to a CronJob ``report``. Otherwise ``Job``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = [
    "ContainerInfo",
    "PodInfo",
    "pod_from_api",
    "pod_from_dict",
    "pod_to_dict",
    "strip_runtime",
    "workload_owner",
]

_JOB_SUFFIX = re.compile(r"^(?P<base>.+)-(?P<n>\d{8,10})$")
_EPOCH_2015 = 1_420_070_400
_YEAR_S = 366 * 86_400
_DROPPED_ANNOTATIONS = frozenset({"kubectl.kubernetes.io/last-applied-configuration"})
"""Never copied into records: a whole manifest, repeated in every event of the pod."""


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    """One container of a pod, from its spec and status."""

    name: str
    image: str | None = None
    """Image as the runtime reports it (status), else as the spec asks for it."""
    image_id: str | None = None
    """Resolved image (``docker.io/library/nginx@sha256:...``): Fluent Bit's container_hash."""
    container_id: str | None = None
    """The current container, without the ``containerd://`` prefix."""
    restart_count: int | None = None
    previous_id: str | None = None
    """The container before the last restart (``lastState.terminated``)."""
    runtime: str | None = None
    """``containerd``, ``cri-o`` or ``docker``: the scheme of the status' containerID."""


@dataclass(frozen=True, slots=True)
class PodInfo:
    """What the cache holds for one pod; immutable, replaced as a whole on change."""

    uid: str
    namespace: str
    name: str
    node: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    pod_ip: str | None = None
    owner: tuple[str, str] | None = None
    """The workload as ``(kind, name)``, see the module docstring."""
    containers: tuple[ContainerInfo, ...] = ()
    resource_version: str = ""
    deleted_at: float | None = None
    """Wall-clock time the pod was seen deleted: the entry is a tombstone."""

    def container(self, name: str | None) -> ContainerInfo | None:
        if name is None:
            return None
        for c in self.containers:
            if c.name == name:
                return c
        return None

    def tombstone(self, when: float) -> PodInfo:
        return replace(self, deleted_at=when)

    def same_content(self, other: PodInfo) -> bool:
        """Equal in everything a record shows (the resource version aside)."""
        return (
            self.labels == other.labels
            and self.annotations == other.annotations
            and self.node == other.node
            and self.pod_ip == other.pod_ip
            and self.owner == other.owner
            and self.containers == other.containers
            and self.deleted_at == other.deleted_at
            and self.name == other.name
            and self.namespace == other.namespace
        )


def _runtime(container_id: Any) -> str | None:
    if not isinstance(container_id, str) or "://" not in container_id:
        return None
    return container_id.partition("://")[0] or None


def strip_runtime(container_id: str | None) -> str | None:
    """``containerd://abc`` → ``abc`` (the id as it appears in log file names)."""
    if not container_id:
        return None
    return container_id.rpartition("://")[2] or None


def _str_map(value: Any, drop: frozenset[str] = frozenset()) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items() if k not in drop and v is not None}


def _cronjob_name(job: str, now: float) -> str | None:
    match = _JOB_SUFFIX.match(job)
    if match is None:
        return None
    n = int(match["n"])
    latest = now + _YEAR_S
    as_minutes = _EPOCH_2015 <= n * 60 <= latest
    as_seconds = _EPOCH_2015 <= n <= latest
    return match["base"] if as_minutes or as_seconds else None


def workload_owner(
    owner_refs: Any, labels: Mapping[str, str], now: float | None = None
) -> tuple[str, str] | None:
    """The workload that owns a pod, from its owner references (module docstring)."""
    if not isinstance(owner_refs, list) or not owner_refs:
        return None
    refs = [r for r in owner_refs if isinstance(r, dict)]
    ref = next((r for r in refs if r.get("controller")), refs[0] if refs else None)
    if ref is None:
        return None
    kind, name = ref.get("kind"), ref.get("name")
    if not isinstance(kind, str) or not isinstance(name, str):
        return None
    if kind == "ReplicaSet":
        pth = labels.get("pod-template-hash")
        if pth and name.endswith("-" + pth) and len(name) > len(pth) + 1:
            return ("Deployment", name[: -len(pth) - 1])
    elif kind == "Job":
        cron = _cronjob_name(name, time.time() if now is None else now)
        if cron is not None:
            return ("CronJob", cron)
    return (kind, name)


def _containers(spec: dict[str, Any], status: dict[str, Any]) -> tuple[ContainerInfo, ...]:
    images: dict[str, str | None] = {}
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(key) or ():
            if isinstance(c, dict) and isinstance(c.get("name"), str):
                images[c["name"]] = c.get("image")
    found: dict[str, ContainerInfo] = {}
    for key in ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses"):
        for s in status.get(key) or ():
            if not isinstance(s, dict) or not isinstance(s.get("name"), str):
                continue
            last = s.get("lastState") or {}
            terminated = last.get("terminated") if isinstance(last, dict) else None
            previous = terminated.get("containerID") if isinstance(terminated, dict) else None
            restarts = s.get("restartCount")
            name = s["name"]
            found[name] = ContainerInfo(
                name=name,
                image=s.get("image") or images.get(name),
                image_id=s.get("imageID") or None,
                container_id=strip_runtime(s.get("containerID")),
                restart_count=restarts if isinstance(restarts, int) else None,
                previous_id=strip_runtime(previous),
                runtime=_runtime(s.get("containerID")),
            )
    for name, image in images.items():
        if name not in found:
            found[name] = ContainerInfo(name=name, image=image)
    return tuple(found.values())


def pod_from_api(obj: Any) -> PodInfo | None:
    """A pod object from the API (JSON dict) → :class:`PodInfo`; ``None`` if unusable."""
    if not isinstance(obj, dict):
        return None
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return None
    uid, namespace, name = meta.get("uid"), meta.get("namespace"), meta.get("name")
    if not (isinstance(uid, str) and isinstance(namespace, str) and isinstance(name, str)):
        return None
    spec = obj.get("spec")
    spec = spec if isinstance(spec, dict) else {}
    status = obj.get("status")
    status = status if isinstance(status, dict) else {}
    labels = _str_map(meta.get("labels"))
    return PodInfo(
        uid=uid,
        namespace=namespace,
        name=name,
        node=spec.get("nodeName") or None,
        labels=labels,
        annotations=_str_map(meta.get("annotations"), _DROPPED_ANNOTATIONS),
        pod_ip=status.get("podIP") or None,
        owner=workload_owner(meta.get("ownerReferences"), labels),
        containers=_containers(spec, status),
        resource_version=str(meta.get("resourceVersion") or ""),
    )


# ------------------------------------------------------------------ persistence


def pod_to_dict(pod: PodInfo) -> dict[str, Any]:
    """The cache file's form of a pod (see ``PodCache.dumps``)."""
    return {
        "uid": pod.uid,
        "namespace": pod.namespace,
        "name": pod.name,
        "node": pod.node,
        "labels": dict(pod.labels),
        "annotations": dict(pod.annotations),
        "pod_ip": pod.pod_ip,
        "owner": list(pod.owner) if pod.owner else None,
        "containers": [
            [
                c.name,
                c.image,
                c.image_id,
                c.container_id,
                c.restart_count,
                c.previous_id,
                c.runtime,
            ]
            for c in pod.containers
        ],
        "rv": pod.resource_version,
        "deleted_at": pod.deleted_at,
    }


def pod_from_dict(d: Any) -> PodInfo | None:
    """Inverse of :func:`pod_to_dict`; ``None`` for anything malformed."""
    try:
        owner = d.get("owner")
        return PodInfo(
            uid=str(d["uid"]),
            namespace=str(d["namespace"]),
            name=str(d["name"]),
            node=d.get("node"),
            labels=_str_map(d.get("labels")),
            annotations=_str_map(d.get("annotations")),
            pod_ip=d.get("pod_ip"),
            owner=(str(owner[0]), str(owner[1])) if owner else None,
            containers=tuple(ContainerInfo(*c) for c in d.get("containers") or ()),
            resource_version=str(d.get("rv") or ""),
            deleted_at=d.get("deleted_at"),
        )
    except (KeyError, TypeError, ValueError, IndexError, AttributeError):
        return None
