"""A fake Kubernetes API server, kept only for the faults the real one cannot be made to
produce on demand; everything else is tested against the real kube-apiserver of
``tests/_kube.py`` (``tests/kube/``). The faults, and where they are used:

- **History expiring under a quiet watch** (``compact()`` + ``break_watches()``): the real
  apiserver answers a resumed watch from its watch cache, which keeps every event for at
  least 75 s whatever etcd compacted; only a restart empties it, and a restart moves etcd's
  revision past any bookmark. So "a watch resumed from a bookmark after compaction does not
  relist" (``tests/enrich/test_watcher.py``) needs this server.
- **A continue token expiring between two pages of one list** (``after_page`` + ``compact``):
  the real server gives no hook between the pages of a client's list.
- **No server at all** behind a kubeconfig (``kubeconfig(port=...)`` of a port nobody
  listens on): the lifecycle test of the watcher (``tests/core/test_lifecycle.py``).

``make_pod`` builds pod objects as the API returns them (status included) for the tests of
the cache, the decider and the filters, which need no server.

Written from the API conventions (kubernetes.io/docs/reference/using-api/api-concepts).
Plain HTTP on 127.0.0.1 (a random port unless one is given); a bearer token is required.

What it implements:

- ``GET /api/v1/pods``, ``/api/v1/namespaces/{ns}/pods``, ``/api/v1/namespaces/{ns}/pods/{name}``,
  ``/api/v1/namespaces[/{name}]``, ``/api/v1/nodes[/{name}]``.
- One global resourceVersion (as etcd's revision): every change of any object takes the
  next number, written into ``metadata.resourceVersion``. Clients must treat it as opaque;
  nothing here relies on them not to.
- ``fieldSelector`` with ``=``, ``==``, ``!=`` joined by commas on ``metadata.name``,
  ``metadata.namespace`` and, for pods, ``spec.nodeName`` and ``status.phase``; any other
  field is a ``400 BadRequest`` ("field label not supported"), as the real server answers.
- **List**: items sorted by namespace/name; ``limit`` + ``continue`` (an opaque token that
  pins the resourceVersion of the first page: later pages show that snapshot);
  ``resourceVersion`` unset = the latest state; ``"0"`` = any (the latest here);
  ``N`` with ``resourceVersionMatch=Exact`` (or a ``continue`` token) = the state at N,
  ``410 Gone`` with reason ``Expired`` when N is older than the compaction point;
  ``N`` otherwise (NotOlderThan) = the latest state, ``504 Timeout`` "Too large resource
  version" when N is in the future.
- **Watch** (``watch=true``): a chunked response of JSON lines ``{"type": ..., "object":
  ...}``. Without ``resourceVersion`` or with ``"0"``: synthetic ``ADDED`` for the current
  state, then changes. With ``N``: every change after N, or, when N is older than the
  compaction point, one ``ERROR`` event whose object is a ``Status`` (code 410, reason
  ``Expired``, "too old resource version: N (M)") and the end of the response — how a
  real server reports it. With a field selector, an object that starts matching is
  ``ADDED`` and one that stops matching is ``DELETED``. ``allowWatchBookmarks=true``:
  a ``BOOKMARK`` (an object with only ``kind``, ``apiVersion`` and
  ``metadata.resourceVersion``) every ``bookmark_interval`` seconds once every earlier
  event was sent, carrying the latest resourceVersion, including progress made by
  objects the selector hides. ``timeoutSeconds`` ends the response cleanly.
- ``401 Unauthorized`` without the right bearer token; ``403 Forbidden`` (a ``Status``
  naming the verb and resource) for resources listed in ``forbidden``.
- Test controls: ``put``/``delete`` objects, ``compact()`` (history before now is gone),
  ``break_watches()`` (connections dropped mid-stream), ``stop()`` (the server goes away),
  and ``requests``: every request received, for counting.

What it leaves out: ``labelSelector``; every write verb (state changes through the Python
methods); ``sendInitialEvents`` and streaming lists; protobuf, CBOR and table output;
waiting for a future resourceVersion (it answers at once: 504 on list, the current state
on watch); the watch cache's own expiry (compaction happens only when asked);
``remainingItemCount``; graceful deletion, finalizers and ``deletionTimestamp``;
``managedFields``; admission and validation of objects; HTTP/2; TLS; the
``k8s.io/initial-events-end`` bookmark annotation; API discovery (``/api``, ``/apis``).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

__all__ = ["KubeAPI", "free_port", "make_pod"]

_KINDS = {"pods": "Pod", "namespaces": "Namespace", "nodes": "Node"}
_FIELDS = {
    "pods": {"metadata.name", "metadata.namespace", "spec.nodeName", "status.phase"},
    "namespaces": {"metadata.name", "status.phase"},
    "nodes": {"metadata.name", "spec.unschedulable"},
}
SERVICE_ACCOUNT = "system:serviceaccount:kloghub:kloghub-agent"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _status(code: int, reason: str, message: str, **extra: Any) -> dict[str, Any]:
    status = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": extra.pop("metadata", {}),
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    status.update(extra)
    return status


def _error(code: int, reason: str, message: str, **extra: Any) -> web.Response:
    return web.json_response(_status(code, reason, message, **extra), status=code)


def _get(obj: dict[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _key(resource: str, obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj["metadata"]
    return (meta.get("namespace", "") if resource == "pods" else "", meta["name"])


@dataclass
class _Change:
    rv: int
    resource: str
    type: str
    obj: dict[str, Any]
    old: dict[str, Any] | None


@dataclass
class _Selector:
    terms: list[tuple[str, str, str]] = field(default_factory=list)

    def matches(self, obj: dict[str, Any] | None) -> bool:
        if obj is None:
            return False
        for path, op, value in self.terms:
            equal = _get(obj, path) == value
            if (op == "!=") == equal:
                return False
        return True


def _parse_selector(resource: str, text: str | None) -> _Selector:
    selector = _Selector()
    if not text:
        return selector
    for term in text.split(","):
        for op in ("!=", "==", "="):
            if op in term:
                path, _, value = term.partition(op)
                break
        else:
            raise ValueError(f'invalid field selector "{term}"')
        path = path.strip()
        if path not in _FIELDS[resource]:
            raise ValueError(f"field label not supported: {path}")
        selector.terms.append((path, "!=" if op == "!=" else "=", value.strip()))
    return selector


class _Watch:
    def __init__(self, resource: str, selector: _Selector, namespace: str | None) -> None:
        self.resource = resource
        self.selector = selector
        self.namespace = namespace
        self.queue: asyncio.Queue[_Change] = asyncio.Queue()
        self.transport: asyncio.BaseTransport | None = None


class KubeAPI:
    """The server; ``async with KubeAPI() as api`` or ``start()``/``stop()``."""

    def __init__(
        self,
        port: int = 0,
        *,
        token: str = "test-token",
        bookmark_interval: float = 0.5,
    ) -> None:
        self.port = port
        self.token = token
        self.bookmark_interval = bookmark_interval
        self.rv = 1
        self.compacted = 0
        """Resource versions below this are gone from the history."""
        self.store: dict[str, dict[tuple[str, str], dict[str, Any]]] = {r: {} for r in _KINDS}
        self.history: list[_Change] = []
        self.forbidden: set[str] = set()
        """Resources the service account may not list or watch."""
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.bookmarks_sent = 0
        self.after_page: Any = None
        """Called with no argument after a list page with a ``continue`` token was served."""
        self._watches: set[_Watch] = set()
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> KubeAPI:
        app = web.Application(middlewares=[self._count, self._auth])
        app.router.add_get("/api/v1/pods", self._collection)
        app.router.add_get("/api/v1/namespaces/{namespace}/pods", self._collection)
        app.router.add_get("/api/v1/namespaces/{namespace}/pods/{name}", self._one)
        app.router.add_get("/api/v1/namespaces", self._collection)
        app.router.add_get("/api/v1/namespaces/{name}", self._one)
        app.router.add_get("/api/v1/nodes", self._collection)
        app.router.add_get("/api/v1/nodes/{name}", self._one)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]  # the port actually bound
        return self

    async def stop(self) -> None:
        """The server goes away: open watches are cut, new connections refused."""
        self.break_watches()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> KubeAPI:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def kubeconfig(self, path: Path, token: str | None = None, port: int | None = None) -> Path:
        """A kubeconfig for this server (``port`` before it listens, to test a late start)."""
        server = f"http://127.0.0.1:{port or self.port}"
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "test", "cluster": {"server": server}}],
            "users": [{"name": "agent", "user": {"token": token or self.token}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "agent"}}],
            "current-context": "test",
        }
        path.write_text(json.dumps(doc))  # JSON is YAML
        return path

    # ------------------------------------------------------------------ state changes

    def put(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace an object (ADDED or MODIFIED); returns the stored copy."""
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
        obj.setdefault("kind", _KINDS[resource])
        obj.setdefault("apiVersion", "v1")
        key = _key(resource, obj)
        old = self.store[resource].get(key)
        if old is not None:
            meta["uid"] = old["metadata"]["uid"]
        self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        self.store[resource][key] = obj
        self._record(_Change(self.rv, resource, "MODIFIED" if old else "ADDED", obj, old))
        return copy.deepcopy(obj)

    def update(
        self, resource: str, namespace: str, name: str, **labels_or_annotations: Any
    ) -> dict[str, Any]:
        """Change ``labels=`` / ``annotations=`` (merged) of an object: one MODIFIED."""
        obj = copy.deepcopy(self.store[resource][(namespace if resource == "pods" else "", name)])
        for what, values in labels_or_annotations.items():
            obj["metadata"].setdefault(what, {}).update(values)
        return self.put(resource, obj)

    def delete(self, resource: str, namespace: str, name: str) -> None:
        key = (namespace if resource == "pods" else "", name)
        old = self.store[resource].pop(key)
        self.rv += 1
        gone = copy.deepcopy(old)
        gone["metadata"]["resourceVersion"] = str(self.rv)
        self._record(_Change(self.rv, resource, "DELETED", gone, old))

    def compact(self) -> None:
        """Forget the history up to now (etcd compaction): older RVs get 410 Gone."""
        self.compacted = self.rv

    def break_watches(self) -> None:
        """Drop every open watch connection mid-stream (a network failure)."""
        for w in list(self._watches):
            if w.transport is not None:
                w.transport.abort()

    @property
    def open_watches(self) -> int:
        return len(self._watches)

    def count(self, *, watch: bool | None = None, path: str | None = None) -> int:
        """Requests received, optionally only watches / lists, or to one path."""
        n = 0
        for _method, req_path, query in self.requests:
            is_watch = query.get("watch") in ("true", "1")
            if watch is not None and is_watch != watch:
                continue
            if path is not None and req_path != path:
                continue
            n += 1
        return n

    def _record(self, change: _Change) -> None:
        self.history.append(change)
        for w in self._watches:
            if w.resource == change.resource:
                w.queue.put_nowait(change)

    # ------------------------------------------------------------------ middlewares

    @web.middleware
    async def _count(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path, dict(request.query)))
        return await handler(request)

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _error(401, "Unauthorized", "Unauthorized")
        return await handler(request)

    # ------------------------------------------------------------------ handlers

    @staticmethod
    def _resource(request: web.Request) -> str:
        parts = request.path.split("/")
        if len(parts) >= 6 and parts[3] == "namespaces" and parts[5] == "pods":
            return "pods"
        return parts[3]

    def _forbidden(self, resource: str, verb: str, namespace: str | None) -> web.Response | None:
        if resource not in self.forbidden:
            return None
        scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
        return _error(
            403,
            "Forbidden",
            f'{resource} is forbidden: User "{SERVICE_ACCOUNT}" cannot {verb} resource '
            f'"{resource}" in API group "" {scope}',
            details={"kind": resource},
        )

    async def _one(self, request: web.Request) -> web.StreamResponse:
        resource = self._resource(request)
        namespace = request.match_info.get("namespace", "") if resource == "pods" else ""
        denied = self._forbidden(resource, "get", namespace or None)
        if denied is not None:
            return denied
        obj = self.store[resource].get((namespace, request.match_info["name"]))
        if obj is None:
            name = request.match_info["name"]
            return _error(404, "NotFound", f'{resource} "{name}" not found')
        return web.json_response(obj)

    async def _collection(self, request: web.Request) -> web.StreamResponse:
        resource = self._resource(request)
        namespace = request.match_info.get("namespace")
        watch = request.query.get("watch") in ("true", "1")
        denied = self._forbidden(resource, "watch" if watch else "list", namespace)
        if denied is not None:
            return denied
        try:
            selector = _parse_selector(resource, request.query.get("fieldSelector"))
        except ValueError as exc:
            return _error(400, "BadRequest", str(exc))
        rv_text = request.query.get("resourceVersion", "")
        if rv_text and not rv_text.isdigit():
            return _error(400, "BadRequest", f"invalid resource version: {rv_text}")
        if watch:
            return await self._watch(request, resource, selector, namespace, rv_text)
        return self._list(request, resource, selector, namespace, rv_text)

    # ------------------------------------------------------------------ list

    def _state_at(self, resource: str, rv: int) -> dict[tuple[str, str], dict[str, Any]]:
        if rv >= self.rv:
            return self.store[resource]
        state: dict[tuple[str, str], dict[str, Any]] = {}
        for change in self.history:
            if change.rv > rv:
                break
            if change.resource != resource:
                continue
            key = _key(resource, change.obj)
            if change.type == "DELETED":
                state.pop(key, None)
            else:
                state[key] = change.obj
        return state

    def _list(
        self,
        request: web.Request,
        resource: str,
        selector: _Selector,
        namespace: str | None,
        rv_text: str,
    ) -> web.Response:
        query = request.query
        token = query.get("continue")
        start_after: list[str] | None = None
        if token:
            try:
                doc = json.loads(base64.urlsafe_b64decode(token))
                at, start_after = int(doc["rv"]), list(doc["start"])
            except (ValueError, KeyError, TypeError):
                return _error(400, "BadRequest", "continue key is not valid")
            if at < self.compacted:
                fresh = base64.urlsafe_b64encode(
                    json.dumps({"rv": self.rv, "start": start_after}).encode()
                ).decode()
                return _error(
                    410,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent "
                    "list result. You can start a new list without the continue parameter, "
                    "or use the continue token in this response to retrieve the remainder "
                    "of the results.",
                    metadata={"continue": fresh},
                )
        elif rv_text and rv_text != "0":
            at = int(rv_text)
            if query.get("resourceVersionMatch") == "Exact":
                if at < self.compacted:
                    return _error(
                        410, "Expired", f"too old resource version: {at} ({self.compacted + 1})"
                    )
            elif at > self.rv:
                return _error(
                    504, "Timeout", "Too large resource version", details={"retryAfterSeconds": 1}
                )
            else:
                at = self.rv
        else:
            at = self.rv
        state = self._state_at(resource, at)
        items = [
            obj
            for key, obj in sorted(state.items())
            if selector.matches(obj)
            and (namespace is None or key[0] == namespace)
            and (start_after is None or list(key) > start_after)
        ]
        meta: dict[str, Any] = {"resourceVersion": str(at)}
        limit = int(query.get("limit", "0") or 0)
        if limit and len(items) > limit:
            items = items[:limit]
            last = list(_key(resource, items[-1]))
            meta["continue"] = base64.urlsafe_b64encode(
                json.dumps({"rv": at, "start": last}).encode()
            ).decode()
            if self.after_page is not None:
                self.after_page()
        return web.json_response(
            {
                "kind": _KINDS[resource] + "List",
                "apiVersion": "v1",
                "metadata": meta,
                "items": items,
            }
        )

    # ------------------------------------------------------------------ watch

    @staticmethod
    def _visible(
        change: _Change, selector: _Selector, namespace: str | None
    ) -> tuple[str, dict[str, Any]] | None:
        """The event a watcher with this selector sees for a change, if any."""
        if namespace is not None and change.obj["metadata"].get("namespace") != namespace:
            return None
        now = selector.matches(change.obj)
        before = selector.matches(change.old)
        if change.type == "ADDED":
            return ("ADDED", change.obj) if now else None
        if change.type == "DELETED":
            return ("DELETED", change.obj) if before or now else None
        if now and before:
            return ("MODIFIED", change.obj)
        if now:
            return ("ADDED", change.obj)
        if before:
            return ("DELETED", change.obj)
        return None

    async def _watch(
        self,
        request: web.Request,
        resource: str,
        selector: _Selector,
        namespace: str | None,
        rv_text: str,
    ) -> web.StreamResponse:
        query = request.query
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        timeout = float(query.get("timeoutSeconds", "1800") or 1800)
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        w = _Watch(resource, selector, namespace)
        w.transport = request.transport
        self._watches.add(w)  # registered before the replay: nothing falls in between

        async def send(kind: str, obj: dict[str, Any]) -> None:
            await resp.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")

        try:
            if rv_text and rv_text != "0" and int(rv_text) < self.compacted:
                status = _status(
                    410, "Expired", f"too old resource version: {rv_text} ({self.compacted})"
                )
                await send("ERROR", status)
                return resp
            sent_up_to = self.rv
            if not rv_text or rv_text == "0":
                for key, obj in sorted(self.store[resource].items()):
                    if selector.matches(obj) and (namespace is None or key[0] == namespace):
                        await send("ADDED", obj)
            else:
                start = int(rv_text)
                for change in [c for c in self.history if start < c.rv <= sent_up_to]:
                    if change.resource == resource:
                        seen = self._visible(change, selector, namespace)
                        if seen is not None:
                            await send(*seen)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            next_bookmark = loop.time() + self.bookmark_interval
            while True:
                now = loop.time()
                if now >= deadline:
                    break
                wait = min(deadline, next_bookmark if bookmarks else deadline) - now
                try:
                    change = await asyncio.wait_for(w.queue.get(), max(wait, 0.0))
                except TimeoutError:
                    if bookmarks and w.queue.empty() and loop.time() >= next_bookmark:
                        await send(
                            "BOOKMARK",
                            {
                                "kind": _KINDS[resource],
                                "apiVersion": "v1",
                                "metadata": {"resourceVersion": str(self.rv)},
                            },
                        )
                        self.bookmarks_sent += 1
                        next_bookmark = loop.time() + self.bookmark_interval
                    continue
                if change.rv <= sent_up_to:
                    continue
                seen = self._visible(change, selector, namespace)
                if seen is not None:
                    await send(*seen)
            await resp.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._watches.discard(w)
        return resp


def make_pod(
    name: str,
    namespace: str = "default",
    node: str = "node-1",
    *,
    uid: str | None = None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    owner: tuple[str, str] | None = None,
    containers: tuple[str, ...] = ("app",),
    restarts: int = 0,
    pod_ip: str = "10.0.0.7",
) -> dict[str, Any]:
    """A pod object as the API server returns it (running, containers started)."""
    uid = uid or str(uuid.uuid4())
    statuses = []
    for n, cname in enumerate(containers):
        cid = (uid.replace("-", "") + f"{n:02d}" * 16)[:64]
        status: dict[str, Any] = {
            "name": cname,
            "image": f"registry.example/{cname}:1.0",
            "imageID": f"registry.example/{cname}@sha256:{'ab' * 32}",
            "containerID": f"containerd://{cid}",
            "restartCount": restarts,
            "ready": True,
            "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
        }
        if restarts:
            prev = ("f" * 8 + cid)[:64]
            status["lastState"] = {
                "terminated": {"containerID": f"containerd://{prev}", "exitCode": 1}
            }
        statuses.append(status)
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": uid}
    if labels:
        meta["labels"] = labels
    if annotations:
        meta["annotations"] = annotations
    if owner:
        meta["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": owner[0],
                "name": owner[1],
                "uid": str(uuid.uuid4()),
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": meta,
        "spec": {
            "nodeName": node,
            "containers": [{"name": c, "image": f"registry.example/{c}:1.0"} for c in containers],
        },
        "status": {"phase": "Running", "podIP": pod_ip, "containerStatuses": statuses},
    }
