"""The pod watcher: keeps the cache in step with the pods of this node.

It watches ``/api/v1/pods?fieldSelector=spec.nodeName=<node>`` (never the whole
cluster's pods), and, when configured, all namespaces (their labels and annotations) and
this node (its labels). Credentials: ``enrichment.kubeconfig`` when set, else the pod's
service account when running in a cluster, else the default kubeconfig. The agent's
ServiceAccount needs ``list`` and ``watch`` on ``pods`` (and on ``namespaces`` /
``nodes`` for the optional features); ``get`` is never used.

Each list/watch runs on its own thread (see ``_watch.py``); the cache is only changed on
the event loop. With ``persist_cache`` the cache is written to
``<state_dir>/pod-cache.json`` every few seconds when it changed, and at stop; a
restarted agent reads it back before its first list completes.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kloghub import config, core
from kloghub.enrich import _cache, _pod, _watch

__all__ = ["PodWatcher"]

_log = logging.getLogger("kloghub.enrich")

CACHE_FILE = "pod-cache.json"
BACKOFF = config.RetryConfig(initial_backoff=1.0, max_backoff=30.0)
"""Between attempts to reach the API server (``max_attempts`` does not apply: a watch
never gives up)."""
_IN_CLUSTER_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"  # noqa: S105 - a path


class _Client:
    """The API client, built on first use on a watch thread (loading it may block)."""

    def __init__(self, kubeconfig: Path | None) -> None:
        self._kubeconfig = kubeconfig
        self._lock = threading.Lock()
        self._api: Any = None
        self._api_client: Any = None

    def core_v1(self) -> Any:
        with self._lock:
            if self._api is None:
                from kubernetes import client

                # Typed as Any: the loaders are untyped in some client versions only.
                kconfig: Any = importlib.import_module("kubernetes.config")
                conf = client.Configuration()
                if self._kubeconfig is not None:
                    kconfig.load_kube_config(
                        config_file=str(self._kubeconfig),
                        client_configuration=conf,
                        persist_config=False,
                    )
                elif os.environ.get("KUBERNETES_SERVICE_HOST") and Path(_IN_CLUSTER_TOKEN).exists():
                    kconfig.load_incluster_config(client_configuration=conf)
                else:
                    kconfig.load_kube_config(client_configuration=conf, persist_config=False)
                conf.retries = False  # the watch loop owns retries and backoff
                self._api_client = client.ApiClient(conf)
                self._api = client.CoreV1Api(self._api_client)
            return self._api

    def list_function(self, name: str) -> Callable[..., Any]:
        def call(**kwargs: Any) -> Any:
            return getattr(self.core_v1(), name)(**kwargs)

        return call

    def close(self) -> None:
        with self._lock:
            if self._api_client is not None:
                with contextlib.suppress(Exception):
                    self._api_client.close()
            self._api = self._api_client = None


class PodWatcher(core.Service):
    """Lists and watches this node's pods (and optionally namespaces and the node)."""

    name = "pod-watcher"

    def __init__(
        self,
        cfg: config.EnrichmentConfig,
        node_name: str | None,
        cache: _cache.PodCache,
        *,
        state_dir: Path | None = None,
        supervisor: core.Supervisor | None = None,
        initial_sync_timeout: float = 5.0,
        watch_timeout: tuple[int, int] = (300, 600),
        save_interval: float = 10.0,
        page_size: int = 500,
        retry: config.RetryConfig = BACKOFF,
    ) -> None:
        super().__init__(supervisor)
        if not node_name:
            raise core.ConfigError(
                [
                    "agent.node_name: the pod watch needs this node's name (--node-name, "
                    "or NODE_NAME from the downward API); or set "
                    "agent.enrichment.kubernetes_api: false"
                ]
            )
        self.cfg = cfg
        self.node_name = node_name
        self.cache = cache
        cache.tombstone_ttl = cfg.tombstone_ttl  # the configuration rules the cache it fills
        self._path = state_dir / CACHE_FILE if state_dir is not None and cfg.persist_cache else None
        self._initial_sync_timeout = initial_sync_timeout
        self._watch_timeout = watch_timeout
        self._save_interval = save_interval
        self._page_size = page_size
        self._retry = retry
        self._client = _Client(cfg.kubeconfig)
        self._watches: list[_watch.ListWatch] = []
        self._synced = asyncio.Event()
        self._last_save = 0.0

    # ------------------------------------------------------------------ public

    @property
    def synced(self) -> bool:
        """The first pod list has been applied to the cache."""
        return self._synced.is_set()

    async def wait_synced(self, timeout: float) -> bool:
        """Wait (bounded) for the first pod list; True when it came."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._synced.wait(), timeout)
        return self._synced.is_set()

    @property
    def watches(self) -> list[_watch.ListWatch]:
        return list(self._watches)

    # ------------------------------------------------------------------ lifecycle

    async def _on_start(self) -> None:
        loaded = 0
        if self._path is not None:
            loaded = self.cache.load(self._path)
            if loaded:
                _log.info(
                    "pod cache read from the state dir",
                    extra={"pods": loaded, "path": str(self._path)},
                )
        loop = asyncio.get_running_loop()
        # (resource, client function, on list, on event, field selector)
        wanted: list[tuple[str, str, Any, Any, str | None]] = [
            (
                "pods",
                "list_pod_for_all_namespaces",
                self._pods_listed,
                self._pod_event,
                f"spec.nodeName={self.node_name}",
            )
        ]
        if self.cfg.namespace_metadata:
            wanted.append(
                (
                    "namespaces",
                    "list_namespace",
                    self._namespaces_listed,
                    self._namespace_event,
                    None,
                )
            )
        if self.cfg.node_labels:
            wanted.append(
                (
                    "nodes",
                    "list_node",
                    self._nodes_listed,
                    self._node_event,
                    f"metadata.name={self.node_name}",
                )
            )
        for resource, function, on_list, on_event, selector in wanted:
            self._watches.append(
                _watch.ListWatch(
                    resource,
                    self._client.list_function(function),
                    loop,
                    on_list=on_list,
                    on_event=on_event,
                    retry=self._retry,
                    field_selector=selector,
                    watch_timeout=self._watch_timeout,
                    permission_hint=f"list and watch on {resource}",
                    page_size=self._page_size,
                )
            )
        for w in self._watches:
            w.start()
        self._last_save = time.monotonic()
        self.spawn("housekeeping", self._housekeeping())
        if (
            not loaded
            and self._initial_sync_timeout > 0
            and not await self.wait_synced(self._initial_sync_timeout)
        ):
            _log.warning(
                "no pod list yet; records carry the fields of their file path until it comes",
                extra={"waited_s": self._initial_sync_timeout},
            )

    async def _on_close(self) -> None:
        for w in self._watches:
            w.stop()
        deadline = time.monotonic() + 2.0
        # Threads, not tasks: nothing to await but their end, polled with a bound.
        while any(w.alive for w in self._watches) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        self._client.close()
        if self._path is not None and self.cache.dirty:
            await self._save()

    async def _housekeeping(self) -> None:
        period = max(0.05, min(self._save_interval, self.cfg.tombstone_ttl / 4, 30.0))
        while True:
            await asyncio.sleep(period)
            self.cache.expire()
            if (
                self._path is not None
                and self.cache.dirty
                and time.monotonic() - self._last_save >= self._save_interval
            ):
                await self._save()

    async def _save(self) -> None:
        assert self._path is not None
        data = self.cache.dumps()  # on the loop: a consistent snapshot
        self._last_save = time.monotonic()
        try:
            await asyncio.to_thread(self.cache.save, self._path, data)
        except OSError as exc:
            self.cache.dirty = True
            _log.warning(
                "cannot write the pod cache", extra={"path": str(self._path), "error": str(exc)}
            )

    # ------------------------------------------------------------------ handlers (loop)

    def _pods_listed(self, items: list[Any]) -> None:
        pods = [p for p in map(_pod.pod_from_api, items) if p is not None]
        self.cache.replace(pods)
        if not self._synced.is_set():
            _log.info("pod list applied", extra={"pods": len(pods), "node": self.node_name})
        self._synced.set()

    def _pod_event(self, kind: str, obj: Any) -> None:
        pod = _pod.pod_from_api(obj)
        if pod is None:
            _log.debug("ignoring a pod object without uid, namespace or name")
            return
        if kind == "DELETED":
            self.cache.delete(pod)
        else:
            self.cache.upsert(pod)

    def _namespaces_listed(self, items: list[Any]) -> None:
        found = {}
        for obj in items:
            parsed = _meta(obj)
            if parsed is not None:
                found[parsed[0]] = (parsed[1], parsed[2])
        self.cache.replace_namespaces(found)

    def _namespace_event(self, kind: str, obj: Any) -> None:
        parsed = _meta(obj)
        if parsed is None:
            return
        if kind == "DELETED":
            self.cache.delete_namespace(parsed[0])
        else:
            self.cache.set_namespace(*parsed)

    def _nodes_listed(self, items: list[Any]) -> None:
        for obj in items:
            self._node_event("ADDED", obj)

    def _node_event(self, kind: str, obj: Any) -> None:
        parsed = _meta(obj)
        if parsed is not None and kind != "DELETED" and parsed[0] == self.node_name:
            self.cache.set_node(parsed[1])


def _meta(obj: Any) -> tuple[str, dict[str, str], dict[str, str]] | None:
    """(name, labels, annotations) of an object, or None."""
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        return None
    labels = meta.get("labels")
    labels = labels if isinstance(labels, dict) else {}
    annotations = meta.get("annotations")
    annotations = annotations if isinstance(annotations, dict) else {}
    return (
        meta["name"],
        {str(k): str(v) for k, v in labels.items()},
        {
            str(k): str(v)
            for k, v in annotations.items()
            if k != "kubectl.kubernetes.io/last-applied-configuration"
        },
    )
