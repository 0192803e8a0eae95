"""The pod metadata cache: what the watch learned, read by the hot path without I/O.

Keyed by pod UID (exact, from ``/var/log/pods`` paths) and by ``(namespace, name)``
(``/var/log/containers`` names). A deleted pod stays as a tombstone for
``tombstone_ttl`` seconds, so the lines it wrote just before it died are still enriched
when the agent reads them later. ``generation`` grows with every change that can alter a
record; readers compare it to skip work when nothing changed.

All mutation happens on the event loop thread (the watch thread hands its results over,
see ``_watcher.py``). The cache can be written to and read from a file, so that an agent
restarted on a busy node enriches at once instead of after its first list.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from kloghub.enrich import _pod
from kloghub.runtime import metrics

__all__ = ["KUBELET_LINK_MAX", "MetaInfo", "PodCache", "kubelet_link_stem"]

_log = logging.getLogger("kloghub.enrich")

_FORMAT = 1
KUBELET_LINK_MAX = 251
"""The kubelet cuts ``<pod>_<ns>_<container>-<id>`` to 255 - len(".log") characters."""


def kubelet_link_stem(pod: str, namespace: str, container: str, container_id: str) -> str:
    """The name the kubelet gives a ``/var/log/containers`` link, without ``.log``."""
    return f"{pod}_{namespace}_{container}-{container_id}"[:KUBELET_LINK_MAX]


@dataclass(frozen=True, slots=True)
class MetaInfo:
    """Labels and annotations of a namespace or of the node, with a change counter."""

    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    revision: int = 0


class PodCache:
    """Pods of this node by UID and by (namespace, name), with tombstones."""

    def __init__(
        self, tombstone_ttl: float = 600.0, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.tombstone_ttl = tombstone_ttl
        self._clock = clock
        self._by_uid: dict[str, _pod.PodInfo] = {}
        self._by_name: dict[tuple[str, str], list[str]] = {}
        self._revision: dict[str, int] = {}
        self.namespaces: dict[str, MetaInfo] = {}
        self._ns_deleted: dict[str, float] = {}
        self.node: MetaInfo | None = None
        self.generation = 0
        """Grows on every change that can alter a record."""
        self.dirty = False
        """Changed since the last :meth:`dumps` (for persistence)."""

    # ------------------------------------------------------------------ reading

    def __len__(self) -> int:
        return len(self._by_uid)

    def get(self, uid: str) -> _pod.PodInfo | None:
        return self._by_uid.get(uid)

    def revision(self, uid: str) -> int:
        """Change counter of one pod's entry (0 when unknown)."""
        return self._revision.get(uid, 0)

    def by_name(self, namespace: str, name: str) -> list[_pod.PodInfo]:
        """Pods with this name, live first, then tombstones newest first."""
        uids = self._by_name.get((namespace, name))
        if not uids:
            return []
        pods = [self._by_uid[u] for u in uids if u in self._by_uid]
        pods.sort(key=lambda p: (p.deleted_at is not None, -(p.deleted_at or 0.0)))
        return pods

    def pods(self) -> list[_pod.PodInfo]:
        return list(self._by_uid.values())

    # ------------------------------------------------------------------ writing

    def _changed(self) -> None:
        self.generation += 1
        self.dirty = True
        metrics.POD_CACHE_SIZE.set(len(self._by_uid))

    def upsert(self, pod: _pod.PodInfo) -> bool:
        """Add or replace a pod (a live one, or a tombstone); True when it changed."""
        old = self._by_uid.get(pod.uid)
        if old is not None and old.same_content(pod):
            if old.resource_version != pod.resource_version:
                self._by_uid[pod.uid] = pod  # newer version, same record: no generation bump
                self.dirty = True
            return False
        self._by_uid[pod.uid] = pod
        if old is None or (old.namespace, old.name) != (pod.namespace, pod.name):
            if old is not None:
                self._unindex(old)
            self._by_name.setdefault((pod.namespace, pod.name), []).append(pod.uid)
        self._changed()
        self._revision[pod.uid] = self.generation
        return True

    def delete(self, pod: _pod.PodInfo) -> None:
        """The pod is gone from the API: keep its last state as a tombstone."""
        current = self._by_uid.get(pod.uid)
        if current is not None and current.deleted_at is not None:
            return
        self.upsert(pod.tombstone(self._clock()))

    def replace(self, pods: Iterable[_pod.PodInfo]) -> None:
        """A full list: upsert every pod; live pods missing from it were deleted meanwhile."""
        seen = set()
        for pod in pods:
            seen.add(pod.uid)
            self.upsert(pod)
        for uid, known in list(self._by_uid.items()):
            if uid not in seen and known.deleted_at is None:
                self.delete(known)

    def expire(self) -> int:
        """Forget tombstones older than the TTL; returns how many went."""
        limit = self._clock() - self.tombstone_ttl
        gone = [
            p for p in self._by_uid.values() if p.deleted_at is not None and p.deleted_at < limit
        ]
        for pod in gone:
            del self._by_uid[pod.uid]
            self._revision.pop(pod.uid, None)
            self._unindex(pod)
        for name, when in list(self._ns_deleted.items()):
            if when < limit:
                del self._ns_deleted[name]
                self.namespaces.pop(name, None)
        if gone:
            self._changed()
        return len(gone)

    def _unindex(self, pod: _pod.PodInfo) -> None:
        key = (pod.namespace, pod.name)
        uids = self._by_name.get(key)
        if uids is None:
            return
        if pod.uid in uids:
            uids.remove(pod.uid)
        if not uids:
            del self._by_name[key]

    def set_namespace(
        self, name: str, labels: Mapping[str, str], annotations: Mapping[str, str]
    ) -> None:
        self._ns_deleted.pop(name, None)
        old = self.namespaces.get(name)
        if old is not None and old.labels == labels and old.annotations == annotations:
            return
        self._changed()
        self.namespaces[name] = MetaInfo(dict(labels), dict(annotations), self.generation)

    def delete_namespace(self, name: str) -> None:
        """Namespaces go after their pods: keep the metadata as long as a tombstone."""
        if name in self.namespaces:
            self._ns_deleted.setdefault(name, self._clock())

    def replace_namespaces(
        self, items: Mapping[str, tuple[Mapping[str, str], Mapping[str, str]]]
    ) -> None:
        """A full list of namespaces; those missing from it were deleted meanwhile."""
        for name, (ns_labels, ns_annotations) in items.items():
            self.set_namespace(name, ns_labels, ns_annotations)
        for name in list(self.namespaces):
            if name not in items:
                self.delete_namespace(name)

    def set_node(self, labels: Mapping[str, str]) -> None:
        if self.node is not None and self.node.labels == labels:
            return
        self._changed()
        self.node = MetaInfo(dict(labels), {}, self.generation)

    # ------------------------------------------------------------------ truncated names

    def match_link(self, stem: str) -> tuple[_pod.PodInfo, _pod.ContainerInfo, str] | None:
        """(pod, container, container id) whose kubelet link name, cut at 251, is ``stem``.

        A live pod wins over a tombstone.
        """
        best: tuple[_pod.PodInfo, _pod.ContainerInfo, str] | None = None
        for pod in self._by_uid.values():
            if not stem.startswith(pod.name[:KUBELET_LINK_MAX]):
                continue
            for c in pod.containers:
                for cid in (c.container_id, c.previous_id):
                    if (
                        cid
                        and kubelet_link_stem(pod.name, pod.namespace, c.name, cid) == stem
                        and (best is None or best[0].deleted_at is not None)
                    ):
                        best = (pod, c, cid)
        return best

    # ------------------------------------------------------------------ persistence

    def dumps(self) -> bytes:
        """The whole cache as JSON (tombstones included)."""
        self.dirty = False
        return orjson.dumps(
            {
                "format": _FORMAT,
                "saved_at": self._clock(),
                "pods": [_pod.pod_to_dict(p) for p in self._by_uid.values()],
                "namespaces": {
                    k: [dict(v.labels), dict(v.annotations)] for k, v in self.namespaces.items()
                },
                "node": dict(self.node.labels) if self.node is not None else None,
            }
        )

    def loads(self, data: bytes) -> int:
        """Fill the cache from :meth:`dumps` output; returns the number of pods read.

        A file that does not parse is ignored (the watch fills the cache anyway). Pods
        loaded as live may have been deleted while the agent was down: the first full
        list turns them into tombstones.
        """
        try:
            doc: Any = orjson.loads(data)
            if doc.get("format") != _FORMAT:
                return 0
            pods = [_pod.pod_from_dict(d) for d in doc.get("pods") or ()]
            namespaces = doc.get("namespaces") or {}
            node = doc.get("node")
        except (orjson.JSONDecodeError, AttributeError, TypeError):
            return 0
        count = 0
        for pod in pods:
            if pod is not None:
                self.upsert(pod)
                count += 1
        if isinstance(namespaces, dict):
            for name, pair in namespaces.items():
                if isinstance(pair, list) and len(pair) == 2:
                    self.set_namespace(str(name), pair[0] or {}, pair[1] or {})
        if isinstance(node, dict):
            self.set_node(node)
        self.expire()
        return count

    def save(self, path: Path, data: bytes | None = None) -> None:
        """Write atomically (temporary file, fsync, rename)."""
        payload = self.dumps() if data is None else data
        tmp = path.with_name(path.name + ".tmp")
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)

    def load(self, path: Path) -> int:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            _log.warning("cannot read the pod cache", extra={"path": str(path), "error": str(exc)})
            return 0
        count = self.loads(data)
        self.dirty = False
        return count
