"""List, then watch, one kind of object, on a dedicated thread.

The official ``kubernetes`` client is synchronous (urllib3), so each list/watch runs on
its own daemon thread and hands what it reads to the event loop, where the cache lives.
At most ``_MAX_PENDING`` hand-overs wait for the loop at once: the thread blocks (no
unbounded queue), and it gives up waiting when it is told to stop.

The protocol, as the API conventions describe it:

- **List** with ``limit`` pages (``continue`` tokens); an expired token (``410``) restarts
  the list. The list's ``metadata.resourceVersion`` is where the watch starts.
- **Watch** from that resourceVersion with ``allowWatchBookmarks``: one JSON object per
  line, ``ADDED`` / ``MODIFIED`` / ``DELETED`` / ``BOOKMARK`` / ``ERROR``. Every event
  moves the resourceVersion, bookmarks included (they carry the progress made by objects
  the field selector hides, which keeps a quiet watch from expiring).
- The server ends a watch after ``timeoutSeconds`` (randomized here, as client-go does):
  the watch resumes at once from the last resourceVersion.
- ``410 Gone`` (an ``ERROR`` event with a ``Status`` of code 410, or an HTTP 410): the
  history is compacted; list again. The relist replaces the cache, so a change made while
  the watch was away is not lost, and pods deleted meanwhile become tombstones.
- Anything else (connection refused or broken, 5xx, 429, 401/403, a read timeout in the
  middle of a response, bytes that are not JSON): back off with exponential delays and
  full jitter (tenacity), then resume the watch from the last resourceVersion, or list
  if there is none. A 403 is logged as an error that names the missing permission. A
  watch never gives up.

Nothing here assumes the test server: resource versions are opaque strings, passed back
as they came; bookmarks may never come.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
import tenacity

from kloghub import config

__all__ = ["ListWatch"]

_log = logging.getLogger("kloghub.enrich")

_MAX_PENDING = 64
_PAGE = 500
_CONNECT_TIMEOUT_S = 10.0
_LIST_READ_TIMEOUT_S = 60.0
_QUICK_END_S = 1.0


class _StopRequestedError(Exception):
    """The watcher is stopping: unwind the thread."""


class _TransientError(Exception):
    """A failure worth retrying after a backoff."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class _GoneError(Exception):
    """410: the resourceVersion is too old; list again."""


class ListWatch:
    """One list-then-watch loop of one resource, run on its own thread.

    ``call`` is the client's list function (``CoreV1Api.list_pod_for_all_namespaces``,
    ...); ``on_list(items)`` and ``on_event(type, obj)`` run on ``loop``.
    """

    def __init__(
        self,
        resource: str,
        call: Callable[..., Any],
        loop: asyncio.AbstractEventLoop,
        *,
        on_list: Callable[[list[Any]], None],
        on_event: Callable[[str, Any], None],
        retry: config.RetryConfig,
        field_selector: str | None = None,
        watch_timeout: tuple[int, int] = (300, 600),
        permission_hint: str = "",
        page_size: int = _PAGE,
    ) -> None:
        self.resource = resource
        self._call = call
        self._loop = loop
        self._on_list = on_list
        self._on_event = on_event
        self._retry = retry
        self._selector = field_selector
        self._watch_timeout = watch_timeout
        self._hint = permission_hint
        self._page_size = page_size
        self._stop = threading.Event()
        self._slots = threading.BoundedSemaphore(_MAX_PENDING)
        self._lock = threading.Lock()
        self._resp: Any = None
        self._rv: str | None = None
        self._gone_streak = 0
        self._thread: threading.Thread | None = None
        self.lists = 0
        """Full lists done (each may take several requests)."""
        self.failures = 0
        self.connected = False

    # ------------------------------------------------------------------ control

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"kloghub-watch-{self.resource}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end and interrupt a read it is blocked in."""
        self._stop.set()
        with self._lock:
            resp = self._resp
        if resp is not None:
            _interrupt(resp)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def resource_version(self) -> str | None:
        """Where the watch resumes: the last list's, event's or bookmark's resourceVersion
        (None until the first list, and after a 410 until the relist)."""
        return self._rv

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        retrying = tenacity.Retrying(
            wait=tenacity.wait_random_exponential(
                multiplier=self._retry.initial_backoff, max=self._retry.max_backoff
            ),
            retry=tenacity.retry_if_exception_type(_TransientError),
            sleep=self._sleep,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        while not self._stop.is_set():
            try:
                retrying(self._session)
            except _StopRequestedError:
                break
            except Exception:  # noqa: BLE001 - the watch thread must outlive any bug
                _log.exception("watch failed unexpectedly; listing again after a pause")
                self._rv = None
                if self._stop.wait(self._retry.max_backoff):
                    break
        self.connected = False

    def _sleep(self, seconds: float) -> None:
        if self._stop.wait(seconds):
            raise _StopRequestedError

    def _before_sleep(self, state: tenacity.RetryCallState) -> None:
        self.failures += 1
        self.connected = False
        exc = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        fields = {
            "resource": self.resource,
            "error": str(exc),
            "attempt": state.attempt_number,
            "retry_in_s": round(wait, 3),
        }
        status = exc.status if isinstance(exc, _TransientError) else None
        if status in (401, 403):
            _log.error(
                "the Kubernetes API refused the watch: check the agent's RBAC permissions"
                + (f" ({self._hint})" if self._hint else ""),
                extra=fields,
            )
        else:
            _log.warning("watch of the Kubernetes API failed; retrying", extra=fields)

    def _session(self) -> None:
        if self._stop.is_set():
            raise _StopRequestedError
        if self._rv is None:
            self._rv = self._list()
        started = time.monotonic()
        try:
            events = self._watch()
        except _GoneError:
            self._rv = None
            self._gone_streak += 1
            if self._gone_streak > 1:
                raise _TransientError("the watch expired again right after a list", 410) from None
            return
        self._gone_streak = 0
        if events == 0 and time.monotonic() - started < _QUICK_END_S:
            raise _TransientError("the server closed the watch at once")

    # ------------------------------------------------------------------ list

    def _request(self, **kwargs: Any) -> Any:
        if self._stop.is_set():
            raise _StopRequestedError
        from kubernetes.client import exceptions

        try:
            return self._call(field_selector=self._selector, _preload_content=False, **kwargs)
        except exceptions.ApiException as exc:
            if exc.status == 410:
                raise _GoneError from None
            raise _TransientError(_api_error(exc), exc.status) from None
        except Exception as exc:  # noqa: BLE001 - urllib3/OSError/config: all retried
            if self._stop.is_set():
                raise _StopRequestedError from None
            raise _TransientError(f"{type(exc).__name__}: {exc}") from None

    def _list(self) -> str:
        items: list[Any] = []
        token: str | None = None
        restarts = 0
        while True:
            try:
                resp = self._request(
                    limit=self._page_size,
                    _continue=token,
                    _request_timeout=(_CONNECT_TIMEOUT_S, _LIST_READ_TIMEOUT_S),
                )
            except _GoneError:
                if token is None or restarts >= 3:
                    raise _TransientError("the list failed with 410 Gone", 410) from None
                items, token, restarts = [], None, restarts + 1  # continue token expired
                continue
            try:
                doc = orjson.loads(resp.data)
            except (orjson.JSONDecodeError, TypeError) as exc:
                raise _TransientError(f"list answer is not JSON: {exc}") from None
            finally:
                resp.release_conn()
            if not isinstance(doc, dict):
                raise _TransientError("list answer is not an object")
            items.extend(doc.get("items") or ())
            meta = doc.get("metadata") or {}
            token = meta.get("continue") or None
            if token is None:
                rv = meta.get("resourceVersion")
                if not rv:
                    raise _TransientError("list answer without a resourceVersion")
                break
        self._post(lambda: self._on_list(items))
        self.lists += 1
        self.connected = True
        return str(rv)

    # ------------------------------------------------------------------ watch

    def _watch(self) -> int:
        timeout = random.randint(*self._watch_timeout)  # noqa: S311 - spreading, not secrets
        resp = self._request(
            watch=True,
            resource_version=self._rv,
            allow_watch_bookmarks=True,
            timeout_seconds=timeout,
            _request_timeout=(_CONNECT_TIMEOUT_S, timeout + 30.0),
        )
        with self._lock:
            self._resp = resp
        if self._stop.is_set():
            _interrupt(resp)
        self.connected = True
        events = 0
        buf = bytearray()
        try:
            for chunk in resp.stream(amt=None, decode_content=False):
                buf += chunk
                while (cut := buf.find(b"\n")) >= 0:
                    line = bytes(buf[:cut])
                    del buf[: cut + 1]
                    if line.strip():
                        self._handle(line)
                        events += 1
            if buf.strip():
                self._handle(bytes(buf))
                events += 1
        except (_GoneError, _StopRequestedError, _TransientError):
            raise
        except Exception as exc:  # noqa: BLE001 - a broken stream, whatever broke it
            if self._stop.is_set():
                raise _StopRequestedError from None
            if "ReadTimeout" in type(exc).__name__:
                return events  # a silent watch: resume from the same resourceVersion
            raise _TransientError(f"watch connection broken: {type(exc).__name__}: {exc}") from None
        finally:
            with self._lock:
                self._resp = None
            resp.release_conn()
        if self._stop.is_set():
            raise _StopRequestedError
        return events

    def _handle(self, line: bytes) -> None:
        try:
            event = orjson.loads(line)
            kind = event["type"]
            obj = event["object"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise _TransientError(f"watch event is not valid JSON: {exc}") from None
        if kind == "ERROR":
            code = obj.get("code") if isinstance(obj, dict) else None
            if code == 410:
                raise _GoneError
            message = obj.get("message") if isinstance(obj, dict) else obj
            raise _TransientError(f"watch error {code}: {message}", code)
        meta = obj.get("metadata") if isinstance(obj, dict) else None
        rv = meta.get("resourceVersion") if isinstance(meta, dict) else None
        if kind in ("ADDED", "MODIFIED", "DELETED"):
            self._post(lambda: self._on_event(kind, obj))
        elif kind != "BOOKMARK":
            _log.debug("ignoring a watch event of unknown type", extra={"type": kind})
        if rv:
            self._rv = str(rv)

    # ------------------------------------------------------------------ hand-over

    def _post(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the event loop; blocks while too many are waiting."""
        while not self._slots.acquire(timeout=0.2):
            if self._stop.is_set():
                raise _StopRequestedError
        try:
            self._loop.call_soon_threadsafe(self._run_posted, fn)
        except RuntimeError:  # the loop is closed
            self._slots.release()
            raise _StopRequestedError from None

    def _run_posted(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:  # noqa: BLE001 - one bad object must not stop the watch
            _log.exception("could not apply a watch update", extra={"resource": self.resource})
        finally:
            self._slots.release()


def _api_error(exc: Any) -> str:
    """``403 Forbidden: pods is forbidden: ...`` from an ApiException (body is a Status)."""
    message = ""
    body = getattr(exc, "body", None)
    if body:
        try:
            doc = orjson.loads(body)
            message = doc.get("message", "") if isinstance(doc, dict) else ""
        except (orjson.JSONDecodeError, TypeError):
            message = ""
    return f"{exc.status} {exc.reason}" + (f": {message}" if message else "")


def _interrupt(resp: Any) -> None:
    """Wake a thread blocked reading ``resp`` (urllib3 >= 2.3 has ``shutdown``)."""
    shutdown = getattr(resp, "shutdown", None)
    try:
        if shutdown is not None:
            shutdown()
            return
        sock = getattr(getattr(resp, "connection", None), "sock", None)
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
