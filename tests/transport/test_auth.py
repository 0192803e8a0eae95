"""Who a Forward peer is: handshake users, client certificates, the policy for peers that
prove nothing, and the origin every delivered batch carries."""

from __future__ import annotations

import asyncio
import logging
import ssl
import subprocess
from pathlib import Path

import pytest
from fluent import sender as fluent_sender

from kloghub import config, core, runtime, transport
from kloghub.runtime import metrics

from ._wire import RawClient, chunk_request, request_is_acked

NS = 1_700_000_000_123_456_789


def refused(reason: str) -> float:
    value = metrics.REGISTRY.get_sample_value("kloghub_forward_refused_total", {"reason": reason})
    return value or 0.0


def origins(store) -> list[core.Origin | None]:
    return [batch.origin for batch in store.batches]


# --------------------------------------------------------------------------- certificates


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def node_certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1, and client certificates in the kubelet's
    form: ``system:node:worker-1`` (O=system:nodes) and ``system:node:cp-1``
    (O=system:nodes, O=control-plane); made with the openssl CLI."""
    d = tmp_path_factory.mktemp("node-certs")
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=kloghub-test-ca", cwd=d,
    )  # fmt: skip
    subjects = {
        "server": "/CN=collector",
        "worker": "/O=system:nodes/CN=system:node:worker-1",
        "cp": "/O=system:nodes/O=control-plane/CN=system:node:cp-1",
    }
    for name, subject in subjects.items():
        _openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", "-subj", subject, cwd=d,
        )  # fmt: skip
        extra: list[str] = []
        if name == "server":
            (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1\n")
            extra = ["-extfile", "server.ext"]
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-out", f"{name}.crt", *extra, cwd=d,
        )  # fmt: skip
    return {p.stem + p.suffix.replace(".", "_"): p for p in d.iterdir()}


def _tls(node_certs, *, required: bool) -> dict[str, object]:
    return {
        "tls": {
            "enabled": True,
            "cert_file": node_certs["server_crt"],
            "key_file": node_certs["server_key"],
            "ca_file": node_certs["ca_crt"],
        },
        "require_client_cert": required,
    }


def _context(node_certs, client: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(node_certs["ca_crt"]))
    if client is not None:
        context.load_cert_chain(node_certs[f"{client}_crt"], node_certs[f"{client}_key"])
    return context


# --------------------------------------------------------------------------- users


async def test_a_node_user_is_the_origin_of_what_it_sends(start_server, store):
    """If this failed, the collector could not tell which node sent a record."""
    users = [{"username": "worker-1", "password": "pw1"}]
    server = await start_server(shared_key="k", users=users)
    client = await RawClient.connect(server)
    assert (await client.handshake("k", "claims-cp-1", username="worker-1", password="pw1")).ok
    assert await request_is_acked(client)
    await client.close()
    [origin] = origins(store)
    assert origin is not None
    assert (origin.method, origin.identity, origin.node) == ("password", "worker-1", "worker-1")
    assert origin.claimed_host == "claims-cp-1"
    assert not origin.may_send_audit


async def test_a_shared_user_proves_membership_not_a_node(start_server, store):
    """If this failed, a DaemonSet-wide credential would let any holder speak for a node."""
    users = [{"username": "agents", "password": "pw", "shared": True}]
    server = await start_server(shared_key="k", users=users)
    client = await RawClient.connect(server)
    assert (await client.handshake("k", "node-7", username="agents", password="pw")).ok
    assert await request_is_acked(client)
    await client.close()
    [origin] = origins(store)
    assert origin is not None
    assert (origin.method, origin.identity, origin.node) == ("password", "agents", None)
    assert origin.namespace == "g:agents:node-7"


async def test_control_plane_role_may_send_audit_and_the_roles_are_configurable(
    start_server, store
):
    """If this failed, audit events could not be limited to the control-plane nodes."""
    users = [
        {"username": "cp-1", "password": "a", "roles": ["control-plane"]},
        {"username": "auditor", "password": "b", "roles": ["forwarder"]},
    ]
    server = await start_server(shared_key="k", users=users)
    for name, password in (("cp-1", "a"), ("auditor", "b")):
        client = await RawClient.connect(server)
        assert (await client.handshake("k", name, username=name, password=password)).ok
        assert await request_is_acked(client, name)
        await client.close()
    assert [o.may_send_audit for o in origins(store) if o] == [True, False]
    other = await start_server(shared_key="k", users=users, audit_roles=["forwarder"])
    client = await RawClient.connect(other)
    assert (await client.handshake("k", "x", username="auditor", password="b")).ok
    assert await request_is_acked(client, "auditor-2")
    await client.close()
    assert origins(store)[-1].may_send_audit  # type: ignore[union-attr]


async def test_shared_key_only_is_authenticated_as_a_group(start_server, store):
    """If this failed, the chart's shared-key agents would be refused or taken for nodes."""
    server = await start_server(shared_key="k", unauthenticated="refuse")
    client = await RawClient.connect(server)
    assert (await client.handshake("k", "node-3")).ok
    assert await request_is_acked(client)
    await client.close()
    [origin] = origins(store)
    assert origin is not None
    assert (origin.method, origin.node, origin.claimed_host) == ("shared_key", None, "node-3")


async def test_our_agent_output_authenticates_as_its_user(start_server, store):
    """If this failed, kloghub's own agent could not prove its node to the collector."""
    users = [{"username": "worker-9", "password": 'p"w\\9'}]
    server = await start_server(shared_key="s", users=users, unauthenticated="refuse")
    cfg = config.OutputConfig(
        url=f"forward://127.0.0.1:{server.address[1]}",
        shared_key="s",
        username="worker-9",
        password='p"w\\9',
        flush_interval=0.05,
    )
    out = transport.ForwardOutput(cfg, hostname="worker-9")
    await out.start()
    await out.send(core.Batch([core.Event("kube.a.b.c", NS, {"log": "hello"})]))
    await out.stop(10)
    [origin] = origins(store)
    assert origin is not None
    assert (origin.method, origin.node, origin.claimed_host) == ("password", "worker-9", "worker-9")


# --------------------------------------------------------------------------- certificates


async def test_client_certificate_names_the_node_and_its_organizations_are_roles(
    start_server, store, node_certs
):
    """If this failed, mutual TLS would encrypt but not say which node is speaking."""
    server = await start_server(**_tls(node_certs, required=True), unauthenticated="refuse")
    for client in ("worker", "cp"):
        raw = await RawClient.connect(server, _context(node_certs, client))
        assert await request_is_acked(raw, client)
        await raw.close()
    worker, cp = origins(store)
    assert worker is not None and cp is not None
    assert (worker.method, worker.node, worker.may_send_audit) == (
        "certificate",
        "worker-1",
        False,
    )
    assert (cp.node, cp.roles, cp.may_send_audit) == (
        "cp-1",
        frozenset({"system:nodes", "control-plane"}),
        True,
    )


async def test_certificate_wins_over_a_handshake_user(start_server, store, node_certs):
    """If this failed, a node with a certificate could claim another node's user name."""
    users = [{"username": "cp-1", "password": "pw", "roles": ["control-plane"]}]
    server = await start_server(**_tls(node_certs, required=True), shared_key="k", users=users)
    raw = await RawClient.connect(server, _context(node_certs, "worker"))
    assert (await raw.handshake("k", "cp-1", username="cp-1", password="pw")).ok
    assert await request_is_acked(raw)
    await raw.close()
    [origin] = origins(store)
    assert origin is not None
    assert (origin.method, origin.node) == ("certificate", "worker-1")


async def test_optional_client_certificates_identify_those_who_offer_one(
    start_server, store, node_certs
):
    """If this failed, a listener could not serve certificate and password agents at once."""
    server = await start_server(**_tls(node_certs, required=False), unauthenticated="warn")
    with_cert = await RawClient.connect(server, _context(node_certs, "worker"))
    assert await request_is_acked(with_cert, "cert")
    without = await RawClient.connect(server, _context(node_certs, None))
    assert await request_is_acked(without, "none")
    await with_cert.close()
    await without.close()
    assert [(o.method, o.node) for o in origins(store) if o] == [
        ("certificate", "worker-1"),
        ("none", None),
    ]


# --------------------------------------------------------------------------- unauthenticated


async def test_unauthenticated_peer_is_refused_under_refuse_and_counted(
    start_server, store, node_certs
):
    """If this failed, level run would store whatever anyone on the network sends."""
    before = refused("unauthenticated")
    server = await start_server(**_tls(node_certs, required=False), unauthenticated="refuse")
    anonymous = await RawClient.connect(server, _context(node_certs, None))
    await anonymous.send(chunk_request("t", 1, "anonymous"))
    assert await anonymous.closed_by_server()
    node = await RawClient.connect(server, _context(node_certs, "worker"))
    assert await request_is_acked(node, "node")
    await node.close()
    await anonymous.close()
    assert refused("unauthenticated") == before + 1
    assert [e.record["log"] for e in store.events] == ["node-0"]


async def test_fluent_logger_is_refused_at_refuse_and_warned_about_once_at_warn(
    start_server, store, caplog
):
    """If this failed, senders without authentication would pass silently at walk or at all
    at run."""
    strict = await start_server(unauthenticated="refuse")

    def emit(port: int, n: int) -> bool:
        logger = fluent_sender.FluentSender("app", host="127.0.0.1", port=port, timeout=2.0)
        try:
            ok = True
            for i in range(n):
                ok = logger.emit_with_time("web", NS // 10**9, {"log": f"line {i}"}) and ok
            return ok
        finally:
            logger.close()

    before = refused("unauthenticated")
    await asyncio.to_thread(emit, strict.address[1], 1)
    async with asyncio.timeout(5):
        while refused("unauthenticated") == before:
            await asyncio.sleep(0.01)
    assert store.events == []
    lenient = await start_server(unauthenticated="warn")
    with caplog.at_level(logging.WARNING, logger="kloghub.transport"):
        for _ in range(3):
            await asyncio.to_thread(emit, lenient.address[1], 1)
        await store.wait_for(3)
    warnings = [r for r in caplog.records if "peer accepted" in r.getMessage()]
    assert len(warnings) == 1
    assert all(o is not None and o.method == "none" for o in origins(store))


async def test_client_that_never_finishes_its_handshake_is_closed_and_counted(start_server, store):
    """If this failed, half-open handshakes could hold connections forever."""
    before = refused("handshake_timeout")
    server = await start_server(shared_key="k", handshake_timeout=0.3)
    stalled = await RawClient.connect(server)
    await stalled.answer()  # the HELO; no PING follows
    good = await RawClient.connect(server)
    assert (await good.handshake("k")).ok
    assert await stalled.closed_by_server()
    assert refused("handshake_timeout") == before + 1
    assert await request_is_acked(good, "still-delivering")
    await good.close()
    await stalled.close()


async def test_our_client_answers_the_handshake_exactly_as_the_specification_says():
    """If this failed, the agent could not log in to Fluentd's in_forward (user_auth) or
    another implementation: the digests are checked here with hashlib, from the
    specification's formulas, not with kloghub's own codec."""
    import hashlib

    import msgpack

    key, user, password = 'sh@red"key', "worker-3", 'pa"ss\\word'
    nonce, auth_salt = b"\x01" * 16, b"\x02" * 16
    seen: dict[str, object] = {}
    acked = asyncio.Event()

    def sha512_hex(*parts: bytes) -> str:
        return hashlib.sha512(b"".join(parts)).hexdigest()

    async def spec_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        unpacker = msgpack.Unpacker(raw=False)
        writer.write(msgpack.packb(["HELO", {"nonce": nonce, "auth": auth_salt,
                                             "keepalive": True}], use_bin_type=True))  # fmt: skip
        values = []
        while len(values) < 2:
            data = await reader.read(65536)
            if not data:
                return
            unpacker.feed(data)
            values += list(unpacker)
            if values and values[0][0] == "PING" and len(values) == 1:
                _, hostname, salt, digest, username, password_digest = values[0]
                salt_b = salt if isinstance(salt, bytes) else salt.encode()
                seen["ping_ok"] = digest == sha512_hex(
                    salt_b, hostname.encode(), nonce, key.encode()
                ) and password_digest == sha512_hex(auth_salt, username.encode(),
                                                    password.encode())  # fmt: skip
                seen["hostname"], seen["username"] = hostname, username
                pong = ["PONG", True, "", "spec-server",
                        sha512_hex(salt_b, b"spec-server", nonce, key.encode())]  # fmt: skip
                writer.write(msgpack.packb(pong, use_bin_type=True))
        request = values[1]
        seen["tag"] = request[0]
        writer.write(msgpack.packb({"ack": request[2]["chunk"]}, use_bin_type=True))
        acked.set()
        await reader.read(65536)
        writer.close()

    server = await asyncio.start_server(spec_server, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cfg = config.OutputConfig(
        url=f"forward://127.0.0.1:{port}",
        shared_key=key,
        username=user,
        password=password,
        flush_interval=0.05,
    )
    out = transport.ForwardOutput(cfg, hostname="worker-3")
    await out.start()
    await out.send(core.Batch([core.Event("kube.a.b.c", NS, {"log": "spec"})]))
    async with asyncio.timeout(10):
        await acked.wait()
    await out.stop(5)
    server.close()
    assert seen == {"ping_ok": True, "hostname": "worker-3", "username": user,
                    "tag": "kube.a.b.c"}  # fmt: skip


async def test_our_agent_over_mutual_tls_is_identified_by_its_certificate(
    start_server, store, node_certs
):
    """If this failed, agents given a node certificate would still count as anonymous."""
    server = await start_server(**_tls(node_certs, required=True), unauthenticated="refuse")
    cfg = config.OutputConfig(
        url=f"forward+tls://127.0.0.1:{server.address[1]}",
        tls={
            "ca_file": node_certs["ca_crt"],
            "cert_file": node_certs["cp_crt"],
            "key_file": node_certs["cp_key"],
        },
        flush_interval=0.05,
    )
    out = transport.ForwardOutput(cfg, hostname="claims-to-be-worker")
    await out.start()
    await out.send(core.Batch([core.Event("audit", NS, {"log": "{}"})]))
    await out.stop(10)
    [origin] = origins(store)
    assert origin is not None
    assert (origin.method, origin.node, origin.may_send_audit) == ("certificate", "cp-1", True)


def _write_bundle(node_certs, client: str, path: Path) -> None:
    """A credential bundle as the kubelet writes one (key, then chain), swapped in
    atomically by a rename, as its atomic writer does."""
    staged = path.with_suffix(".new")
    key = node_certs[f"{client}_key"].read_bytes()
    staged.write_bytes(key + node_certs[f"{client}_crt"].read_bytes())
    staged.replace(path)


async def test_a_rotated_credential_bundle_is_presented_on_the_next_connection(
    start_server, store, node_certs, tmp_path, caplog
):
    """If this failed, an agent with a pod certificate would keep presenting the first one
    after the kubelet rotated it, and fail once it expired (or, reading a half-written
    bundle, lose its identity)."""
    server = await start_server(**_tls(node_certs, required=True), unauthenticated="refuse")
    bundle = tmp_path / "credential-bundle.pem"
    _write_bundle(node_certs, "worker", bundle)
    tls = runtime.ClientTLS(
        config.TLSConfig(ca_file=node_certs["ca_crt"], credential_bundle_file=bundle), "output"
    )
    first = tls.context()
    assert tls.context() is first  # unchanged: the context is kept
    raw = await RawClient.connect(server, first)
    assert await request_is_acked(raw, "before")
    await raw.close()

    _write_bundle(node_certs, "cp", bundle)
    rotated = tls.context()
    assert rotated is not first and tls.reloads == 1
    raw = await RawClient.connect(server, rotated)
    assert await request_is_acked(raw, "after")
    await raw.close()
    assert [o.node for o in origins(store) if o is not None] == ["worker-1", "cp-1"]

    bundle.write_text("-----BEGIN PRIVATE KEY-----\nhalf written")
    with caplog.at_level(logging.WARNING, logger="kloghub.runtime"):
        assert tls.context() is rotated  # the previous certificate is kept
    assert "cannot be loaded" in caplog.text


async def test_with_users_set_a_peer_with_a_certificate_may_give_no_user(
    start_server, store, node_certs
):
    """If this failed, agents with pod certificates would be refused by a listener that
    also has handshake users (for Fluent Bit senders, or the shared-user fallback)."""
    users = [{"username": "edge", "password": "pw"}]
    server = await start_server(
        **_tls(node_certs, required=False), shared_key="s", users=users, unauthenticated="refuse"
    )
    tls = {
        "ca_file": node_certs["ca_crt"],
        "cert_file": node_certs["worker_crt"],
        "key_file": node_certs["worker_key"],
    }
    before = refused("auth")
    for with_cert in (True, False):
        cfg = config.OutputConfig(
            url=f"forward+tls://127.0.0.1:{server.address[1]}",
            shared_key="s",
            tls=tls if with_cert else {"ca_file": node_certs["ca_crt"]},
            flush_interval=0.05,
            retry={"max_attempts": 1},
        )
        out = transport.ForwardOutput(cfg, hostname="worker-1")
        await out.start()
        await out.send(core.Batch([core.Event("kube.a.b.c", NS, {"log": "x"})]))
        await out.stop(2)
    [origin] = origins(store)
    assert origin is not None
    assert (origin.method, origin.node, origin.identity) == ("certificate", "worker-1", "worker-1")
    assert refused("auth") > before  # without a certificate, no user is refused
