"""The agent's ``forward://`` and ``forward+tls://`` output.

How chunks travel (the agent's path): :meth:`ForwardOutput.send_chunks` takes chunks
(``core.Chunk``: entries already encoded by the source, stored as they are by the disk
buffer) and sends their bytes without decoding them. The chunks of one call that share a
tag are joined into one request while it stays under ``batch_max_bytes`` and
``batch_max_records`` (a chunk is never split: one larger than those travels alone).
From there on they take the path of step 2 below, and on ack each chunk of the request is
settled ``DELIVERED``.

How a batch of events travels (``send``: tests, tools, anything holding records):

1. :meth:`ForwardOutput.send` packs each event once into a ``[EventTime, record]`` entry
   and adds it to the pending entries of its tag. When the pending records reach
   ``batch_max_records`` or ``batch_max_bytes``, or ``flush_interval`` after the first of
   them, everything pending is sealed: **one chunk per tag** (a PackedForward request
   carries one tag, and the ``chunk`` option belongs to the request, so each tag's
   entries travel as their own request with their own chunk id, ``size`` and ack).
2. Sealed requests go to the delivery engine (``runtime.Delivery``: the concurrency,
   retry and timeout layers the OpenTelemetry exporterhelper has), whose window
   (``max_in_flight_chunks`` requests alive: on the wire, waiting for an ack, or backing
   off) makes :meth:`send` wait while it is full. This is the back-pressure that pauses
   the pump (and, through the disk buffer, the tailer). This output only writes the push
   function, :meth:`ForwardOutput._push`: send one request on a connection, return on its
   ack, raise when the connection is lost or the ack is late. The engine retries a failed
   push with exponential backoff and full jitter (``retry.initial_backoff`` ..
   ``max_backoff``) on any upstream, with the same chunk id (at-least-once; the collector
   deduplicates ids it has seen); with ``retry.max_attempts`` set, a request that failed
   that many times is dropped and counted
   (``kloghub_records_dropped_total{reason="retries_exhausted"}``); unset (the default) it
   is retried forever. On ack, exactly that request's events (or chunks) are settled
   ``DELIVERED``, which moves the tail checkpoints.
3. Each upstream (one per :class:`config.OutputConfig`) has a task that keeps one
   connection open, reads its acks, sends keepalives and watches ``ack_timeout`` (a late
   ack closes the connection: every request in flight on it fails and is retried). A push
   takes the next connected upstream with room in its share of the window, round-robin;
   an upstream that is down takes nothing (failover). It is reconnected with exponential
   backoff and full jitter (tenacity, ``wait_random_exponential(initial_backoff,
   max_backoff)``); the handshake runs when ``shared_key`` is set.
4. A request is sent as PackedForward (``compress: gzip``: CompressedPackedForward, gzip
   level 1, compressed in a worker thread once and kept for resends) with ``size`` and a
   ``chunk`` id; its head, entries and option are written one after the other, never
   joined.

``stop(timeout)`` seals what is pending and waits for every ack until the timeout; what is
still unacknowledged then is left unsettled, so its source offsets are not committed and
it is read and sent again after a restart.

Batching and compression settings (``batch_*``, ``flush_interval``) and the request retry
policy (``retry``) come from the first output; each upstream has its own address, TLS,
credentials, ``compress``, ``ack_timeout`` and reconnect backoff. Not done: DNS
round-robin within one URL, weights, a UDP heartbeat, time as integer (Fluentd v0.12
compatibility), zstd.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import itertools
import logging
import os
import socket
import ssl
import time
import zlib
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import msgpack
import tenacity

from kloghub import config, core, runtime
from kloghub.runtime import metrics
from kloghub.transport import _protocol

__all__ = ["ForwardOutput", "client_ssl_context"]

_log = logging.getLogger("kloghub.transport")

_KIND = "forward"
_READ_BYTES = 64 * 1024
_MAX_ANSWER_BYTES = 1024 * 1024
_COMPRESS_IN_THREAD_BYTES = 64 * 1024
_CONNECT_ERRORS = (OSError, TimeoutError, _protocol.ProtocolError, core.RetryableError)


def client_ssl_context(tls: config.TLSConfig) -> ssl.SSLContext:
    """A client TLS context from certificate files. Raises ConfigError."""
    return runtime.client_ssl_context(tls, "output")


class _LinkLost(Exception):  # noqa: N818 - not an error: a signal to reconnect at once
    """A connection that had delivered chunks was lost."""

    def __init__(self, message: str, chunks: int) -> None:
        super().__init__(message)
        self.chunks = chunks


class _Chunk:
    """The events of one tag, packed, on their way to an ack."""

    __slots__ = (
        "batch",
        "chunk_id",
        "count",
        "entries",
        "gz",
        "parts",
        "sent_at",
        "seq",
        "tag",
    )

    def __init__(
        self,
        seq: int,
        tag: str,
        entries: list[bytes],
        events: list[core.Event],
        parts: list[core.Chunk] | None = None,
    ) -> None:
        self.seq = seq
        self.tag = tag
        self.entries = entries
        """The request's body in pieces (written one after the other: never joined)."""
        self.gz: bytes | None = None
        self.batch = core.Batch(events)
        self.parts = parts
        """The source chunks this request carries (settled one by one), or None."""
        self.count = len(events) if parts is None else sum(c.count for c in parts)
        self.chunk_id = _protocol.new_chunk_id()
        self.sent_at = 0.0

    def settle(self, status: core.Delivery) -> None:
        if self.parts is None:
            self.batch.settle(status)
            return
        for part in self.parts:
            part.settle(status)


class _Pending:
    __slots__ = ("events", "parts")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.events: list[core.Event] = []


class _Upstream:
    """One configured destination."""

    def __init__(self, output: config.OutputConfig) -> None:
        parts = urlsplit(output.url)
        if parts.scheme not in ("forward", "forward+tls"):
            raise core.ConfigError([f"{output.url}: not a forward:// or forward+tls:// output"])
        self.config = output
        self.host = parts.hostname or "127.0.0.1"
        try:
            self.port = parts.port or _protocol.DEFAULT_PORT
        except ValueError:
            raise core.ConfigError([f"{output.url}: invalid port"]) from None
        self.name = f"{self.host}:{self.port}"
        self.use_tls = parts.scheme == "forward+tls" or output.tls.enabled
        self.tls: runtime.ClientTLS | None = None
        self.shared_key = output.shared_key.get_secret_value() if output.shared_key else None
        self.compress = output.compress == "gzip"
        self.healthy = False
        self.link: _Link | None = None


class _Link:
    """One open connection to an upstream and what is in flight on it."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, window: int
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.unpacker = msgpack.Unpacker(
            None,
            raw=False,
            unicode_errors="surrogateescape",
            max_buffer_size=_MAX_ANSWER_BYTES,
        )
        self.free = window
        """Requests this connection may still take (its share of the window)."""
        self.in_flight: dict[str, tuple[_Chunk, asyncio.Future[None]]] = {}
        self.failed: BaseException | None = None
        self.last_write = time.monotonic()
        self.acked = 0

    async def read_value(self) -> Any:
        """The next msgpack value from the upstream (handshake messages, acks)."""
        while True:
            try:
                for value in self.unpacker:
                    return value
            except (ValueError, TypeError, msgpack.UnpackException) as exc:
                raise _protocol.ProtocolError(f"upstream sent invalid msgpack: {exc}") from None
            data = await self.reader.read(_READ_BYTES)
            if not data:
                raise ConnectionResetError("the upstream closed the connection")
            try:
                self.unpacker.feed(data)
            except msgpack.BufferFull:
                raise _protocol.ProtocolError("upstream answer too large") from None

    def fail(self, error: BaseException) -> None:
        """The connection is lost: every request in flight on it fails (and is retried)."""
        if self.failed is None:
            self.failed = error
        for _, future in self.in_flight.values():
            if not future.done():
                future.set_exception(ConnectionError(str(error) or type(error).__name__))
                future.exception()  # retrieved: the push that awaits it may be gone

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 1.0)


class ForwardOutput(core.Service):
    """Ships batches to one or more Forward protocol servers and settles them on ack."""

    def __init__(
        self,
        outputs: config.OutputConfig | Sequence[config.OutputConfig],
        supervisor: core.Supervisor | None = None,
        *,
        hostname: str | None = None,
        max_in_flight_chunks: int = 16,
        keepalive_interval: float = 30.0,
        connect_timeout: float = 10.0,
    ) -> None:
        super().__init__(supervisor)
        configs = [outputs] if isinstance(outputs, config.OutputConfig) else list(outputs)
        if not configs:
            raise core.ConfigError(["a forward output needs at least one upstream"])
        self._upstreams = [_Upstream(c) for c in configs]
        self.name = "forward:" + ",".join(u.name for u in self._upstreams)
        first = configs[0]
        self._max_records = first.batch_max_records
        self._max_bytes = int(first.batch_max_bytes)
        self._flush_interval = first.flush_interval
        self._hostname = hostname or socket.gethostname()
        self._keepalive = keepalive_interval
        self._connect_timeout = connect_timeout
        self._link_window = max(1, max_in_flight_chunks // len(self._upstreams))
        self._packer = _protocol.new_packer()
        self._seq = itertools.count()
        # pending (not sealed) entries, by tag
        self._pending: dict[str, _Pending] = {}
        self._pending_records = 0
        self._pending_bytes = 0
        self._pending_since: float | None = None
        self._wake = asyncio.Event()
        # sealed requests: waiting for the delivery engine, which bounds them
        self._backlog: collections.deque[_Chunk] = collections.deque()
        self._delivery: runtime.Delivery[_Chunk] = runtime.Delivery(
            self.name,
            _KIND,
            self._push,
            self._done,
            retry=first.retry,
            concurrency=max_in_flight_chunks,
            timeout=None,  # a push waits for a connection as long as it takes, then
            size=lambda chunk: chunk.count,  # for its ack up to its upstream's ack_timeout
        )
        self._link_ready = asyncio.Event()
        self._next_upstream = 0
        self._held = 0
        self._held_events = 0
        self._idle = asyncio.Event()
        self._idle.set()

    # ------------------------------------------------------------------ public API

    @property
    def unacknowledged(self) -> int:
        """Events accepted by :meth:`send` and not yet acknowledged (or dropped)."""
        return self._pending_records + self._held_events

    async def send(self, batch: core.Batch) -> None:
        """Accept ``batch``; waits while the in-flight window is full (back-pressure)."""
        if self.state is not core.State.RUNNING:
            raise RuntimeError(f"{self.name} is not running")
        max_records = self._max_records
        max_bytes = self._max_bytes
        for event in batch.events:
            entry = self._pack(event)
            if entry is None:
                continue
            if self._pending_bytes + len(entry) > max_bytes and self._pending_records:
                self._seal()  # a chunk stays under batch_max_bytes unless one entry is larger
                await self._admit()
            self._append(event, entry)
            if self._pending_records >= max_records:
                self._seal()
                await self._admit()
        if self._pending_records:
            self._wake.set()

    async def send_chunks(self, chunks: Sequence[core.Chunk]) -> None:
        """Accept encoded chunks (module docstring); waits while the window is full."""
        if self.state is not core.State.RUNNING:
            raise RuntimeError(f"{self.name} is not running")
        groups: dict[str, list[core.Chunk]] = {}
        sizes: dict[str, list[int]] = {}
        max_records, max_bytes = self._max_records, self._max_bytes
        for chunk in chunks:
            if not chunk.count:
                chunk.settle(core.Delivery.DELIVERED)
                continue
            group = groups.get(chunk.tag)
            if group is not None:
                size = sizes[chunk.tag]
                if (
                    size[0] + len(chunk.entries) <= max_bytes
                    and size[1] + chunk.count <= max_records
                ):
                    group.append(chunk)
                    size[0] += len(chunk.entries)
                    size[1] += chunk.count
                    continue
                self._seal_parts(chunk.tag, group)
            groups[chunk.tag] = [chunk]
            sizes[chunk.tag] = [len(chunk.entries), chunk.count]
        for tag, group in groups.items():
            self._seal_parts(tag, group)
        await self._admit()

    def _seal_parts(self, tag: str, parts: list[core.Chunk]) -> None:
        request = _Chunk(next(self._seq), tag, [c.entries for c in parts], [], parts)
        self._backlog.append(request)
        self._held += 1
        self._held_events += request.count
        self._idle.clear()

    # ------------------------------------------------------------------ lifecycle

    async def _on_start(self) -> None:
        for upstream in self._upstreams:
            if upstream.use_tls:
                upstream.tls = runtime.ClientTLS(upstream.config.tls, "output")
        for upstream in self._upstreams:
            self.spawn(f"upstream/{upstream.name}", self._run_upstream(upstream))
        self.spawn("flush", self._flush_loop())

    async def _on_drain(self) -> None:
        self._seal()
        await self._admit()
        await self._idle.wait()

    async def _on_close(self) -> None:
        await self._delivery.close()
        left = self.unacknowledged
        if left:
            _log.warning(
                "forward output stopped with unacknowledged events; their offsets are not "
                "committed, they will be sent again after a restart",
                extra={"output": self.name, "events": left},
            )

    # ------------------------------------------------------------------ batching

    def _pack(self, event: core.Event) -> bytes | None:
        try:
            return _protocol.pack_entry(self._packer, event.time_ns, event.record)
        except (TypeError, ValueError, OverflowError) as exc:
            metrics.DROPPED.labels("unencodable").inc()
            _log.warning(
                "event dropped: its record cannot be encoded as msgpack",
                extra={"output": self.name, "tag": event.tag, "error": str(exc)},
            )
            core.Batch([event]).settle(core.Delivery.DROPPED)
            return None

    def _append(self, event: core.Event, entry: bytes) -> None:
        pending = self._pending.get(event.tag)
        if pending is None:
            pending = self._pending[event.tag] = _Pending()
        pending.parts.append(entry)
        pending.events.append(event)
        if self._pending_since is None:
            self._pending_since = time.monotonic()
        self._pending_records += 1
        self._pending_bytes += len(entry)

    def _seal(self) -> None:
        """Turn everything pending into chunks (one per tag) in the backlog."""
        pending = self._pending
        if not pending:
            return
        self._pending = {}
        self._pending_records = 0
        self._pending_bytes = 0
        self._pending_since = None
        for tag, group in pending.items():
            chunk = _Chunk(next(self._seq), tag, [b"".join(group.parts)], group.events)
            self._backlog.append(chunk)
            self._held += 1
            self._held_events += chunk.count
        self._idle.clear()

    async def _admit(self) -> None:
        """Hand backlog requests to the delivery engine (waits while its window is full)."""
        while self._backlog:
            await self._delivery.submit(self._backlog.popleft())

    async def _flush_loop(self) -> None:
        while True:
            since = self._pending_since
            if since is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            delay = since + self._flush_interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            self._seal()
            await self._admit()

    # ------------------------------------------------------------------ settling

    def _done(self, chunk: _Chunk, status: core.Delivery) -> None:
        """The engine settled a request: acknowledged, or given up after max_attempts."""
        self._held -= 1
        self._held_events -= chunk.count
        if self._held == 0:
            self._idle.set()
        chunk.settle(status)

    # ------------------------------------------------------------------ the push

    async def _push(self, chunk: _Chunk) -> None:
        """Send one request on the next connection with room; return once acknowledged.

        Raises (for the engine to retry) when the connection is lost or no ack came within
        the upstream's ``ack_timeout`` (the connection is then closed: its other requests
        are retried too, with the same chunk ids).
        """
        upstream, link = await self._take_link()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        link.in_flight[chunk.chunk_id] = (chunk, future)
        try:
            chunk.sent_at = time.monotonic()
            for piece in await self._payload(upstream, chunk):
                link.writer.write(piece)  # the transport copies only what it cannot send
            link.last_write = time.monotonic()
            if link.failed is not None:
                raise ConnectionError(str(link.failed) or type(link.failed).__name__)
            await link.writer.drain()
            await future
        finally:
            link.in_flight.pop(chunk.chunk_id, None)
            link.free += 1
            self._link_ready.set()

    async def _take_link(self) -> tuple[_Upstream, _Link]:
        """The next connected upstream with room, round-robin; waits while there is none."""
        upstreams = self._upstreams
        while True:
            n = len(upstreams)
            for i in range(n):
                upstream = upstreams[(self._next_upstream + i) % n]
                link = upstream.link
                if link is not None and link.failed is None and link.free > 0:
                    self._next_upstream = (self._next_upstream + i + 1) % n
                    link.free -= 1
                    return upstream, link
            self._link_ready.clear()
            await self._link_ready.wait()

    # ------------------------------------------------------------------ connections

    async def _run_upstream(self, upstream: _Upstream) -> None:
        """Keep one connection to ``upstream`` open, for as long as the output runs."""
        while True:
            try:
                await self._connect_and_pump(upstream)
            except _LinkLost as lost:
                _log.warning(
                    "connection to upstream lost; resending what it had not acknowledged",
                    extra={
                        "output": self.name,
                        "upstream": upstream.name,
                        "error": str(lost),
                        "chunks": lost.chunks,
                    },
                )

    async def _connect_and_pump(self, upstream: _Upstream) -> None:
        """Connect (with backoff) and pump until a connection that had made progress is
        lost (:class:`_LinkLost`: reconnect at once, backoff reset). A connection lost
        before its first ack counts as a failed attempt, so an upstream that accepts and
        drops connections is not hammered."""
        retry = upstream.config.retry

        def log_failure(state: tenacity.RetryCallState) -> None:
            outcome = state.outcome
            error = outcome.exception() if outcome is not None else None
            wait = state.next_action.sleep if state.next_action is not None else 0.0
            _log.warning(
                "upstream unavailable; retrying",
                extra={
                    "output": self.name,
                    "upstream": upstream.name,
                    "attempt": state.attempt_number,
                    "retry_in_s": round(wait, 3),
                    "error": str(error) or type(error).__name__,
                },
            )

        retrying = tenacity.AsyncRetrying(
            wait=tenacity.wait_random_exponential(
                multiplier=retry.initial_backoff, max=retry.max_backoff
            ),
            retry=tenacity.retry_if_exception_type(_CONNECT_ERRORS),
            before_sleep=log_failure,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                link = await self._open(upstream)
                await self._serve(upstream, link)

    async def _serve(self, upstream: _Upstream, link: _Link) -> None:
        upstream.healthy = True
        upstream.link = link
        self._link_ready.set()
        _log.info("connected to upstream", extra={"output": self.name, "upstream": upstream.name})
        try:
            await self._pump(upstream, link)
        except BaseException as exc:
            link.fail(exc)
            if isinstance(exc, _CONNECT_ERRORS) and link.acked:
                raise _LinkLost(str(exc) or type(exc).__name__, len(link.in_flight)) from exc
            raise
        finally:
            upstream.healthy = False
            upstream.link = None
            await link.close()

    async def _open(self, upstream: _Upstream) -> _Link:
        # A rotated credential bundle is read again here, for this new connection.
        context = upstream.tls.context() if upstream.tls is not None else None
        async with asyncio.timeout(self._connect_timeout):
            reader, writer = await asyncio.open_connection(
                upstream.host,
                upstream.port,
                ssl=context,
                server_hostname=upstream.host if context is not None else None,
                limit=_READ_BYTES,
            )
            link = _Link(reader, writer, self._link_window)
            try:
                if upstream.shared_key is not None:
                    await self._handshake(upstream, link)
            except BaseException:
                await link.close()
                raise
        return link

    async def _handshake(self, upstream: _Upstream, link: _Link) -> None:
        assert upstream.shared_key is not None
        helo = _protocol.parse_helo(await link.read_value())
        salt = os.urandom(16).hex()
        key = upstream.shared_key
        digest = _protocol.shared_key_digest(salt, self._hostname, helo.nonce, key)
        username = password = ""
        if helo.auth_salt:
            username = upstream.config.username or ""
            secret = upstream.config.password
            password = _protocol.password_digest(
                helo.auth_salt, username, secret.get_secret_value() if secret else ""
            )
        link.writer.write(_protocol.encode_ping(self._hostname, salt, digest, username, password))
        pong = _protocol.parse_pong(await link.read_value())
        if not pong.ok:
            raise _protocol.ProtocolError(
                f"the upstream refused the handshake: {pong.reason}", reason="handshake"
            )
        expected = _protocol.shared_key_digest(salt, pong.hostname, helo.nonce, key)
        if not hmac.compare_digest(pong.digest.encode(), expected.encode()):
            raise _protocol.ProtocolError(
                "the upstream's PONG digest does not match: it does not hold our shared_key",
                reason="handshake",
            )

    async def _pump(self, upstream: _Upstream, link: _Link) -> None:
        """Send chunks and read acks until the connection fails (raises)."""
        tasks = {
            asyncio.create_task(self._read_acks(link)),
            asyncio.create_task(self._watch(upstream, link)),
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                error = task.exception()
                if error is not None:
                    raise error
            raise ConnectionError("a connection task ended")  # pragma: no cover
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _payload(self, upstream: _Upstream, chunk: _Chunk) -> list[bytes]:
        """The request as pieces: its head, the entries (or their gzip), its option."""
        if not upstream.compress:
            return _request_pieces(
                chunk.tag, chunk.entries, chunk.count, chunk.chunk_id, compressed=False
            )
        if chunk.gz is None:
            size = sum(map(len, chunk.entries))
            if size >= _COMPRESS_IN_THREAD_BYTES:
                chunk.gz = await asyncio.to_thread(_gzip, chunk.entries)
            else:
                chunk.gz = _gzip(chunk.entries)
        return _request_pieces(chunk.tag, [chunk.gz], chunk.count, chunk.chunk_id, compressed=True)

    async def _read_acks(self, link: _Link) -> None:
        while True:
            value = await link.read_value()
            chunk_id = _protocol.parse_ack(value)
            if chunk_id is None:
                if type(value) is list and value and value[0] == "HELO":
                    raise _protocol.ProtocolError(
                        "the upstream asks for the shared-key handshake; set shared_key",
                        reason="handshake",
                    )
                continue
            if isinstance(chunk_id, bytes):
                chunk_id = chunk_id.decode("ascii", "replace")
            waiting = link.in_flight.get(chunk_id)
            if waiting is not None and not waiting[1].done():
                link.acked += 1
                waiting[1].set_result(None)

    async def _watch(self, upstream: _Upstream, link: _Link) -> None:
        """Ack timeout and keepalive for one connection."""
        ack_timeout = upstream.config.ack_timeout
        period = min(max(ack_timeout / 4, 0.02), 1.0)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            if link.in_flight:
                oldest = min(chunk.sent_at for chunk, _ in link.in_flight.values())
                if now - oldest > ack_timeout:
                    raise TimeoutError(f"no ack within ack_timeout ({ack_timeout}s)")
            elif now - link.last_write >= self._keepalive:
                link.writer.write(_protocol.KEEPALIVE)
                link.last_write = now


_PACK = _protocol.new_packer(lenient=True).pack


def _bin_header(size: int) -> bytes:
    if size < 0x100:
        return bytes((0xC4, size))
    if size < 0x10000:
        return b"\xc5" + size.to_bytes(2, "big")
    return b"\xc6" + size.to_bytes(4, "big")


def _request_pieces(
    tag: str, body: list[bytes], count: int, chunk_id: str, *, compressed: bool
) -> list[bytes]:
    """A (Compressed)PackedForward request, byte for byte what
    ``_protocol.encode_packed_forward`` packs, without copying ``body`` into it."""
    option: dict[str, Any] = {"size": count, "chunk": chunk_id}
    if compressed:
        option["compressed"] = "gzip"
    head = b"\x93" + _PACK(tag) + _bin_header(sum(map(len, body)))
    return [head, *body, _PACK(option)]


def _gzip(pieces: list[bytes]) -> bytes:
    """One gzip member of the pieces, zlib level 1 (the agent's CPU is the scarce one)."""
    deflate = zlib.compressobj(1, zlib.DEFLATED, 31)
    out = [deflate.compress(piece) for piece in pieces]
    out.append(deflate.flush())
    return b"".join(out)
