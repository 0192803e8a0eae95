"""The collector's Forward protocol listener.

Each connection is read by one task: bytes go through a :class:`_protocol.StreamDecoder`,
every complete request is checked whole, then decoded into events a slice at a time
(``_protocol.SLICE_BYTES`` of entries) and each slice handed to ``deliver`` (the collector's
disk queue); ``{"ack": chunk}`` goes back only after ``deliver`` returned for every slice,
i.e. once all the request's events are durable. A request whose entry turns out not to be
``[time, map]`` part-way is refused unacknowledged after its first slices were stored; the
client's resend is harmless, as document ids are deterministic. A ``deliver`` that raises
means "not stored": no ack, and the connection is closed so that the client resends.

Who the peer is (``transport._auth``) is settled before the first request: TLS (a client
certificate names the node), then the handshake (shared key, users), then the policy for
peers that proved nothing (``listener.unauthenticated``). Every batch is delivered with
that :class:`core.Origin`; the collector takes provenance from it, not from the records.

Limits, each counted in ``kloghub_forward_refused_total{reason}``, logged as one JSON line
(logger ``kloghub.transport``) the first time a peer address hits that reason (later ones
at DEBUG), and each closing only the connection at fault: ``max_connections``,
``max_connections_per_peer`` (connections open from one IP address), ``handshake_timeout``
(TLS and the handshake not done in ``handshake_timeout``), ``tls_handshake`` (plaintext to a
TLS listener, a bad client certificate), ``auth`` (wrong shared key, username or password),
``unauthenticated`` (nothing proven while ``unauthenticated: refuse``), ``frame_too_large``
(``max_frame_bytes``, also applied to decompressed entries), ``malformed`` (not msgpack,
not the protocol), ``truncated`` (connection closed in the middle of a request),
``frame_timeout`` (a request started and not finished in time, the slow-loris case),
``idle_timeout``, ``slow_reader`` (a client that does not read its acks),
``deliver_failed``.

Back-pressure: with a ``budget`` (the collector's ``max_in_flight_bytes``), the bytes read
count against it until the requests made of them are stored; while it is spent no
connection reads (nor acks), so TCP stops the senders, and reading resumes as stores
complete. An idle connection holds nothing; bytes the transport buffered for a connection
and not yet read (at most twice ``_STREAM_LIMIT``) are outside the budget. One connection
at a time may read past the bound to finish a request it started (see ``core.Budget``). Gauge
``kloghub_forward_in_flight_bytes``, counter ``kloghub_forward_paused_total``. At most four
requests are decoded and being stored at once; the others wait as the bytes they came as.

Resent chunks (same ``chunk`` id within ``dedup_window``) are acknowledged again without
being stored twice; a resend that arrives while the first copy is still being stored
waits for its outcome.

Not done here: the UDP heartbeat, Fluentd's JSON request form, ``zstd`` compression,
metrics and traces payloads; per-client shared keys (Fluentd's ``<client>`` sections);
load shedding other than back-pressure (a slow ``deliver`` stops reading that connection,
which TCP passes back to the client). No Kafka: several collectors behind one Service is
the scaling story (DESIGN.md §8).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import logging
import os
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

from kloghub import config, core
from kloghub.runtime import metrics
from kloghub.transport import _auth, _protocol

__all__ = ["Deliver", "DeliverPacked", "ForwardServer"]

_log = logging.getLogger("kloghub.transport")

Deliver = Callable[[core.Batch], Awaitable[None]]
"""Stores a batch durably; returns only when it is safe, raises when it could not."""

DeliverPacked = Callable[[str, bytes, core.Origin], Awaitable[int]]
"""Stores the entries of a (Compressed)PackedForward request (its tag, the entries as they
arrived, who sent them) durably and returns how many records they held; raises
``ProtocolError`` for entries that are not ``[time, map]`` msgpack (those before it may be
stored, as with ``deliver``), anything else when it could not store them."""

_READ_BYTES = 256 * 1024
_MAX_DECODING = 4
"""Requests decoded and being stored at once, across connections (the others wait as bytes)."""
_STREAM_LIMIT = 64 * 1024
"""A connection's transport stops reading the socket past twice this, unread by us."""
_DEDUP_MAX_IDS = 262_144
"""Upper bound on remembered chunk ids (about 30 MB); the oldest are forgotten first."""


class _RefuseError(Exception):
    """Close this connection; ``reason`` is the metrics label (None: a normal close)."""

    def __init__(self, reason: str | None, message: str, level: int = logging.WARNING) -> None:
        super().__init__(message)
        self.reason = reason
        self.level = level


class _Dedup:
    """Chunk ids stored within the window, oldest first (the window is constant)."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._expiry: collections.OrderedDict[str | bytes, float] = collections.OrderedDict()
        self._storing: dict[str | bytes, asyncio.Event] = {}

    def _prune(self, now: float) -> None:
        expiry = self._expiry
        while expiry:
            key, until = next(iter(expiry.items()))
            if until > now:
                return
            del expiry[key]

    def seen(self, chunk: str | bytes) -> bool:
        self._prune(time.monotonic())
        return chunk in self._expiry

    def add(self, chunk: str | bytes) -> None:
        if self.window <= 0:
            return
        self._expiry[chunk] = time.monotonic() + self.window
        self._expiry.move_to_end(chunk)
        if len(self._expiry) > _DEDUP_MAX_IDS:
            self._expiry.popitem(last=False)

    def storing(self, chunk: str | bytes) -> asyncio.Event | None:
        return self._storing.get(chunk)

    def begin(self, chunk: str | bytes) -> asyncio.Event:
        done = asyncio.Event()
        self._storing[chunk] = done
        return done

    def end(self, chunk: str | bytes, done: asyncio.Event) -> None:
        if self._storing.get(chunk) is done:
            del self._storing[chunk]
        done.set()


def _split_hostport(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - explicit empty host


def server_ssl_context(listener: config.ListenerConfig) -> ssl.SSLContext | None:
    """The listener's TLS context, or None for plaintext. Raises ConfigError."""
    tls = listener.tls
    if not tls.enabled:
        if listener.require_client_cert:
            raise core.ConfigError(["listener.require_client_cert needs listener.tls.enabled"])
        return None
    if tls.credential_bundle_file is not None:
        raise core.ConfigError(
            ["listener.tls.credential_bundle_file: a client's setting; use cert_file and key_file"]
        )
    if tls.cert_file is None or tls.key_file is None:
        raise core.ConfigError(["listener.tls: cert_file and key_file are needed to serve TLS"])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
        if listener.require_client_cert:
            if tls.ca_file is None:
                raise core.ConfigError(
                    ["listener.require_client_cert needs listener.tls.ca_file to verify clients"]
                )
            context.load_verify_locations(cafile=tls.ca_file)
            context.verify_mode = ssl.CERT_REQUIRED
        elif tls.ca_file is not None:
            # A certificate is optional, but one that is offered must be valid: it names
            # the node (peers without one authenticate in the handshake, or not at all).
            context.load_verify_locations(cafile=tls.ca_file)
            context.verify_mode = ssl.CERT_OPTIONAL
    except (OSError, ssl.SSLError) as exc:
        raise core.ConfigError([f"listener.tls: cannot load certificates: {exc}"]) from None
    return context


class ForwardServer(core.Service):
    """Accepts Forward protocol connections and stores what they send through ``deliver``."""

    def __init__(
        self,
        listen: str,
        listener: config.ListenerConfig,
        deliver: Deliver,
        supervisor: core.Supervisor | None = None,
        *,
        budget: core.Budget | None = None,
        deliver_packed: DeliverPacked | None = None,
    ) -> None:
        super().__init__(supervisor)
        self.name = f"forward-in:{listen}"
        self._budget = budget
        """Bytes read and not yet stored, bounded across connections (back-pressure)."""
        self._decoding = asyncio.Semaphore(_MAX_DECODING)
        self._host, self._port = _split_hostport(listen)
        self._config = listener
        self._deliver = deliver
        self._deliver_packed = deliver_packed
        """Takes packed entries undecoded (the collector's compiled path), when given."""
        self._ssl: ssl.SSLContext | None = None
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[Any], _Connection] = {}
        self._dedup = _Dedup(listener.dedup_window)
        self._draining = False
        key = listener.shared_key.get_secret_value() if listener.shared_key else None
        self._shared_key = key
        self._auth = _auth.Authenticator(listener)
        self._users = self._auth.passwords
        self._handshake = key is not None or bool(self._users)
        self._per_peer: collections.Counter[str] = collections.Counter()

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port): useful with port 0."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError(f"{self.name} is not listening")
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    @property
    def connections(self) -> int:
        return len(self._connections)

    async def _on_start(self) -> None:
        self._ssl = server_ssl_context(self._config)
        self._server = await asyncio.start_server(
            self._accept, self._host, self._port, limit=_STREAM_LIMIT, backlog=512
        )
        host, port = self.address
        if (
            self._config.unauthenticated == "refuse"
            and not self._handshake
            and (self._ssl is None or self._config.tls.ca_file is None)
        ):
            _log.warning(
                "forward listener refuses every peer: listener.unauthenticated is refuse "
                "and no shared key, users or client CA is configured",
                extra={"addr": f"{host}:{port}"},
            )
        _log.info(
            "forward listener started",
            extra={
                "addr": f"{host}:{port}",
                "tls": self._ssl is not None,
                "mutual_tls": self._config.require_client_cert,
                "handshake": self._handshake,
                "unauthenticated": self._config.unauthenticated,
            },
        )

    async def _on_drain(self) -> None:
        """Stop accepting; let each connection finish the requests it is storing."""
        self._draining = True
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections.values()):
            connection.close_if_idle()
        tasks = list(self._connections)
        if tasks:
            await asyncio.wait(tasks)

    async def _on_close(self) -> None:
        self._draining = True
        if self._server is not None:
            self._server.close()
        tasks = list(self._connections)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connection = _Connection(self, reader, writer)
        if self._draining:
            await connection.close()
            return
        if len(self._connections) >= self._config.max_connections:
            connection.refuse(
                _RefuseError(
                    "max_connections", "connection refused: the listener is at max_connections"
                )
            )
            await connection.close()
            return
        address = connection.address
        if self._per_peer[address] >= self._config.max_connections_per_peer:
            connection.refuse(
                _RefuseError(
                    "max_connections_per_peer",
                    "connection refused: this address has max_connections_per_peer open",
                )
            )
            await connection.close()
            return
        self._per_peer[address] += 1
        self._connections[task] = connection
        metrics.FORWARD_CONNECTIONS.inc()
        try:
            await connection.run()
        except _RefuseError as refused:
            connection.refuse(refused)
        except _protocol.ProtocolError as exc:
            connection.refuse(_RefuseError(exc.reason, str(exc)))
        except (ConnectionError, TimeoutError, OSError) as exc:
            _log.info(
                "forward connection lost",
                extra={"peer": connection.peer, "error": str(exc) or type(exc).__name__},
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug must cost one connection, never the listener
            metrics.FORWARD_REFUSED.labels("internal").inc()
            _log.exception(
                "forward connection failed unexpectedly; closed",
                extra={"peer": connection.peer, "error": repr(exc)},
            )
        finally:
            del self._connections[task]
            self._per_peer[address] -= 1
            if self._per_peer[address] <= 0:
                del self._per_peer[address]
            metrics.FORWARD_CONNECTIONS.dec()
            connection.give_back()
            await connection.close()


class _Connection:
    """One client connection: handshake, then requests in order."""

    def __init__(
        self, server: ForwardServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server = server
        self.config = server._config
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.address = str(peer[0]) if isinstance(peer, tuple) else str(peer)
        self.decoder = _protocol.StreamDecoder(self.config.max_frame_bytes)
        self.busy = False
        self.records = 0
        self.origin = core.Origin("none", address=self.address)
        self._certificate: dict[str, Any] | None = None
        self.held = 0
        """Bytes taken from the server's budget: read, and not yet stored."""

    def refuse(self, refused: _RefuseError) -> None:
        level = refused.level
        if refused.reason is not None:
            metrics.FORWARD_REFUSED.labels(refused.reason).inc()
            if not self.server._auth.logged.first(self.address, refused.reason):
                level = logging.DEBUG
        _log.log(
            level,
            str(refused),
            extra={"peer": self.peer, "reason": refused.reason, "records": self.records},
        )

    async def _take_budget(self, completed: bool) -> bool:
        """Give back what the stored requests held, then wait (without reading) while the
        budget is spent; True if it had to wait."""
        budget = self.server._budget
        if budget is None:
            return False
        pending = self.decoder.pending
        if self.held > pending:
            budget.give(self.held - pending)
            self.held = pending
        if completed:
            budget.finished(self)
        metrics.FORWARD_IN_FLIGHT_BYTES.set(budget.used)
        waits = budget.waits
        await budget.room(finishing=self if pending else None)
        if budget.waits == waits:
            return False
        metrics.FORWARD_PAUSED.inc()
        return True

    async def _wait_to_decode(self) -> bool:
        """A read that was waiting for data while others spent the budget waits before it
        is decoded (its bytes count as held: it may finish on the overdraft)."""
        budget = self.server._budget
        if budget is None or budget.used <= budget.limit:
            return False
        waits = budget.waits
        await budget.room(finishing=self)
        if budget.waits == waits:
            return False
        metrics.FORWARD_PAUSED.inc()
        return True

    def _took(self, nbytes: int) -> None:
        budget = self.server._budget
        if budget is not None:
            budget.take(nbytes)
            self.held += nbytes

    def give_back(self) -> None:
        budget = self.server._budget
        if budget is not None:
            budget.give(self.held)
            budget.finished(self)
            self.held = 0
            metrics.FORWARD_IN_FLIGHT_BYTES.set(budget.used)

    def close_if_idle(self) -> None:
        if not self.busy:
            self.writer.close()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 1.0)

    async def run(self) -> None:
        server = self.server
        try:
            async with asyncio.timeout(self.config.handshake_timeout):
                if server._ssl is not None:
                    await self._start_tls(server._ssl)
                if server._handshake:
                    self.origin = await self._handshake()
                else:
                    self.origin = server._auth.origin(self.address, certificate=self._certificate)
        except TimeoutError:
            raise _RefuseError(
                "handshake_timeout",
                "TLS and the Forward handshake did not finish in handshake_timeout; closed",
            ) from None
        refusal = server._auth.admit(self.origin)
        if refusal is not None:
            raise _RefuseError("unauthenticated", refusal)
        await self._serve()

    async def _start_tls(self, context: ssl.SSLContext) -> None:
        try:
            await self.writer.start_tls(context)
        except (ssl.SSLError, ConnectionError, OSError) as exc:
            raise _RefuseError(
                "tls_handshake",
                f"TLS handshake failed (plaintext client or bad certificate): {exc}",
            ) from None
        peer = self.writer.get_extra_info("peercert")
        if peer:
            self._certificate = peer
            identity = _auth.certificate_identity(peer)
            self.peer = f"{self.peer} ({identity[0] if identity else '?'})"

    async def _write(self, data: bytes) -> None:
        self.writer.write(data)
        try:
            async with asyncio.timeout(self.config.frame_timeout):
                await self.writer.drain()
        except TimeoutError:
            raise _RefuseError(
                "slow_reader", "client does not read its acknowledgements; closed"
            ) from None

    async def _read(self, timeout: float, reason: str, message: str) -> bytes:
        try:
            async with asyncio.timeout(max(timeout, 0.0)):
                data = await self.reader.read(_READ_BYTES)
        except TimeoutError:
            level = logging.INFO if reason == "idle_timeout" else logging.WARNING
            raise _RefuseError(reason, message, level) from None
        if not data and self.server._draining:
            raise _RefuseError(
                None, "forward connection closed: the listener is stopping", logging.INFO
            )
        return data

    async def _handshake(self) -> core.Origin:
        """HELO/PING/PONG (bounded by ``handshake_timeout`` in :meth:`run`); the origin."""
        server = self.server
        nonce = os.urandom(16)
        auth_salt = os.urandom(16) if server._users else b""
        await self._write(_protocol.encode_helo(nonce, auth_salt))
        value: Any = None
        while True:
            frame = next(self.decoder.frames(), None)
            if frame is not None:
                value = frame[0]
                break
            data = await self.reader.read(_READ_BYTES)
            if not data:
                raise _RefuseError("auth", "client closed the connection during the handshake")
            self.decoder.feed(data)
        try:
            ping = _protocol.parse_ping(value)
        except _protocol.ProtocolError as exc:
            raise _RefuseError("auth", f"handshake refused: {exc} (is shared_key set?)") from None
        key = server._shared_key or ""
        expected = _protocol.shared_key_digest(ping.salt, ping.hostname, nonce, key)
        if not hmac.compare_digest(ping.digest.encode(), expected.encode()):
            await self._pong_refusal("shared_key mismatch")
            raise _RefuseError(
                "auth", f"handshake refused: shared_key mismatch from {ping.hostname}"
            )
        # A verified client certificate is an identity of its own: its peer may give no
        # user (a user it does give must be valid).
        certified = _auth.certificate_identity(self._certificate) is not None
        if server._users and not (certified and not ping.username):
            password = server._users.get(ping.username)
            wanted = (
                _protocol.password_digest(auth_salt, ping.username, password)
                if password is not None
                else ""
            )
            if not wanted or not hmac.compare_digest(
                ping.password_digest.encode(), wanted.encode()
            ):
                await self._pong_refusal("username/password mismatch")
                raise _RefuseError(
                    "auth", f"handshake refused: bad username or password ({ping.username!r})"
                )
        hostname = self.config.self_hostname
        digest = _protocol.shared_key_digest(ping.salt, hostname, nonce, key)
        await self._write(
            _protocol.encode_pong(ok=True, reason="", hostname=hostname, digest=digest)
        )
        origin = server._auth.origin(
            self.address,
            certificate=self._certificate,
            username=ping.username if server._users and ping.username else None,
            shared_key=True,
            claimed_host=ping.hostname,
        )
        self.peer = f"{self.peer} ({origin.identity or ping.hostname})"
        return origin

    async def _pong_refusal(self, reason: str) -> None:
        with contextlib.suppress(_RefuseError, ConnectionError, OSError):
            await self._write(
                _protocol.encode_pong(ok=False, reason=reason, hostname="", digest="")
            )

    async def _serve(self) -> None:
        config = self.config
        decoder = self.decoder
        frame_started: float | None = None
        waited = False
        while True:
            completed = await self._handle_frames()
            if self.server._draining:
                return
            paused = await self._take_budget(completed) or waited
            now = time.monotonic()
            if not decoder.pending:
                frame_started = None
            elif completed or frame_started is None or paused:
                frame_started = now  # a pause for the budget is not the client's delay
            if frame_started is None:
                data = await self._read(
                    config.idle_timeout, "idle_timeout", "idle connection closed"
                )
            else:
                data = await self._read(
                    frame_started + config.frame_timeout - now,
                    "frame_timeout",
                    "client started a request and did not finish it in frame_timeout; closed",
                )
            self._took(len(data))
            if not data:
                if decoder.pending:
                    raise _RefuseError(
                        "truncated",
                        f"connection closed in the middle of a request "
                        f"({decoder.pending} bytes dropped, not acknowledged)",
                    )
                return
            waited = await self._wait_to_decode()
            decoder.feed(data)

    async def _handle_frames(self) -> bool:
        """Store and acknowledge every complete request in the buffer; True if there was one."""
        completed = False
        self.busy = True
        try:
            for value, size in self.decoder.frames():
                completed = True
                # Decoded, a request takes several times its size: only a few at once.
                async with self.server._decoding:
                    request = _protocol.decode_request(value, size, self.config.max_frame_bytes)
                    if request is not None:
                        await self._store(request)
        finally:
            self.busy = False
        return completed

    async def _stored_before(self, chunk: str | bytes) -> bool:
        """Whether ``chunk`` was stored already (then acknowledged again); waits while
        another connection is storing it."""
        dedup = self.server._dedup
        storing = dedup.storing(chunk)
        if storing is not None:
            await storing.wait()
        if not dedup.seen(chunk):
            return False
        metrics.FORWARD_DUPLICATE_CHUNKS.inc()
        _log.debug("duplicate chunk acknowledged again", extra={"peer": self.peer})
        await self._write(_protocol.encode_ack(chunk))
        return True

    async def _deliver_request(self, request: _protocol.Request) -> int:
        """Hands the request's records to the pipeline; returns how many there were."""
        count = 0
        deliver_packed = self.server._deliver_packed
        try:
            if deliver_packed is not None and request.packed is not None:
                return await deliver_packed(request.tag, request.packed, self.origin)
            for events in request.slices():
                count += len(events)
                await self.server._deliver(core.Batch(events, self.origin))
        except _protocol.ProtocolError as exc:
            raise _RefuseError(
                exc.reason, f"{exc} (after {count} records of the request); not acknowledged"
            ) from None
        return count

    async def _store(self, request: _protocol.Request) -> None:
        chunk = request.chunk
        dedup = self.server._dedup
        done: asyncio.Event | None = None
        if chunk is not None:
            if await self._stored_before(chunk):
                return
            done = dedup.begin(chunk)
        try:
            count = await self._deliver_request(request)
        except (asyncio.CancelledError, _RefuseError):
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the queue raises means "not stored"
            raise _RefuseError(
                "deliver_failed",
                f"could not store a request ({exc!r}); not acknowledged, connection closed "
                "so that the client resends",
            ) from None
        else:
            if chunk is not None:
                dedup.add(chunk)
        finally:
            if chunk is not None and done is not None:
                dedup.end(chunk, done)
        self.records += count
        metrics.RECORDS_RECEIVED.labels("forward").inc(count)
        if chunk is not None:
            await self._write(_protocol.encode_ack(chunk))
