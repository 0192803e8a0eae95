"""What a log file's path tells about its pod, before any API lookup.

- ``/var/log/pods/<namespace>_<pod>_<uid>/<container>/<restart>.log`` (exact: has the UID)
- ``/var/log/containers/<pod>_<namespace>_<container>-<container id>.log`` (the kubelet's
  symlinks; long names are truncated by the kubelet, so only what is there is taken)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["PathMeta", "from_path"]

_PODS = re.compile(
    r"/(?P<namespace>[a-z0-9]([-a-z0-9]*[a-z0-9])?)_(?P<pod>[^_/]+)_(?P<uid>[0-9a-fA-F-]{8,})"
    r"/(?P<container>[^/]+)/(?P<restart>\d+)\.log(\.[^/]*)?$"
)
_CONTAINERS = re.compile(
    r"/(?P<pod>[^_/]+)_(?P<namespace>[^_/]+)_(?P<container>.+)-(?P<id>[0-9a-f]{64})\.log$"
)


@dataclass(frozen=True)
class PathMeta:
    namespace: str | None = None
    pod: str | None = None
    pod_uid: str | None = None
    container: str | None = None
    container_id: str | None = None
    restart: int | None = None


def from_path(path: str) -> PathMeta:
    match = _PODS.search(path)
    if match:
        return PathMeta(
            namespace=match["namespace"],
            pod=match["pod"],
            pod_uid=match["uid"],
            container=match["container"],
            restart=int(match["restart"]),
        )
    match = _CONTAINERS.search(path)
    if match:
        return PathMeta(
            namespace=match["namespace"],
            pod=match["pod"],
            container=match["container"],
            container_id=match["id"],
        )
    return PathMeta()
