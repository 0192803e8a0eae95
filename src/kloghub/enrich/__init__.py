"""Pod metadata: a node-scoped watch of the Kubernetes API, a cache with tombstones, and
the per-file decisions (fields, owner workload, annotations) the log source applies."""

from kloghub.enrich._cache import KUBELET_LINK_MAX, MetaInfo, PodCache, kubelet_link_stem
from kloghub.enrich._decide import (
    ANNOTATIONS,
    Enricher,
    FileDecision,
    PathFields,
    annotation_decisions,
)
from kloghub.enrich._pod import ContainerInfo, PodInfo, pod_from_api, workload_owner
from kloghub.enrich._watch import ListWatch
from kloghub.enrich._watcher import CACHE_FILE, PodWatcher

__all__ = [
    "ANNOTATIONS",
    "CACHE_FILE",
    "KUBELET_LINK_MAX",
    "ContainerInfo",
    "Enricher",
    "FileDecision",
    "ListWatch",
    "MetaInfo",
    "PathFields",
    "PodCache",
    "PodInfo",
    "PodWatcher",
    "annotation_decisions",
    "kubelet_link_stem",
    "pod_from_api",
    "workload_owner",
]
