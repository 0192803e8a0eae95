"""Advice on a valid configuration: settings that work but leave a door open.

Pure functions of the loaded settings; ``kloghub validate`` prints what they return as
warnings (the exit code stays 0: the configuration is valid).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kloghub.config._loader import Settings
    from kloghub.config._models import ListenerConfig

__all__ = ["listener_authenticates", "security_warnings"]


def _can_authenticate(listener: ListenerConfig) -> bool:
    """Whether the listener has a way to authenticate peers at all."""
    if listener.shared_key is not None or listener.users:
        return True
    tls = listener.tls
    return tls.enabled and tls.ca_file is not None


def listener_authenticates(listener: ListenerConfig) -> bool:
    """Whether a Forward peer must prove who it is: a shared key, users, or a client
    certificate checked against a CA (required, or optional with ``unauthenticated:
    refuse``)."""
    if listener.shared_key is not None or listener.users:
        return True
    tls = listener.tls
    if not (tls.enabled and tls.ca_file is not None):
        return False
    return listener.require_client_cert or listener.unauthenticated == "refuse"


_MiB = 1024 * 1024
_FRAME_SANE = 16 * _MiB
"""Agents send requests of ``batch_max_bytes`` (2 MiB); a frame limit far above it only
lets one connection make the collector hold that much."""
_BUFFERED_SANE = 1024 * _MiB
"""What the listener may hold in half-read frames at once (connections times the frame limit)."""
_IDLE_SANE = 600.0
_HANDSHAKE_SANE = 60.0


def _is_loopback(listen: str) -> bool:
    host = listen.rpartition(":")[0].strip("[]")
    return host in ("127.0.0.1", "::1", "localhost") or host.startswith("127.")


def _listener_warnings(listen: str, listener: ListenerConfig, level: str) -> list[str]:
    out: list[str] = []
    where = f"collector.listener ({listen})"
    if not _can_authenticate(listener) and listener.unauthenticated == "refuse":
        out.append(
            f"{where} refuses every Forward peer: listener.unauthenticated is refuse and "
            "no way to authenticate is configured; set listener.shared_key or "
            "shared_key_file, listener.users, or listener.tls with ca_file"
        )
    elif not listener_authenticates(listener):
        out.append(
            f"{where} accepts Forward peers without "
            "authentication: anyone who reaches it can write into (and, by reusing "
            "document ids, erase from) the log record; set listener.shared_key or "
            "shared_key_file, listener.users, or listener.tls with require_client_cert "
            "and ca_file"
        )
    elif level == "run" and listener.unauthenticated != "refuse":
        out.append(
            f"{where}: listener.unauthenticated is {listener.unauthenticated} at level run: "
            "peers that prove nothing are accepted next to the authenticated ones; set it "
            "to refuse"
        )
    handshake = listener.shared_key is not None or bool(listener.users)
    if handshake and not listener.tls.enabled and not _is_loopback(listen):
        out.append(
            f"{where}: the handshake authenticates peers but without listener.tls the "
            "records (and what the handshake proves) cross the network in clear and can "
            "be read or changed on the way; enable listener.tls"
        )
    if "node" in listener.audit_roles:
        out.append(
            f"{where}: audit_roles includes node: every node identity can send Kubernetes "
            "audit events (and forge them); keep audit roles to the control-plane nodes"
        )
    frame = int(listener.max_frame_bytes)
    if frame > _FRAME_SANE:
        out.append(
            f"{where}: max_frame_bytes is {frame // _MiB} MiB; agents send 2 MiB requests, "
            "and every connection may make the collector hold a frame this large; keep it "
            "at 8 MiB or below unless a sender needs more"
        )
    buffered = frame * listener.max_connections
    if buffered > _BUFFERED_SANE and frame * listener.max_connections_per_peer > _BUFFERED_SANE:
        out.append(
            f"{where}: one peer may open max_connections_per_peer "
            f"({listener.max_connections_per_peer}) connections of max_frame_bytes "
            f"({frame // _MiB} MiB) each, more than 1 GiB of half-read frames; lower one "
            "of them"
        )
    if listener.idle_timeout > _IDLE_SANE:
        out.append(
            f"{where}: idle_timeout is {listener.idle_timeout:g} s: idle connections hold "
            "their slots that long (agents send keepalives; 90 s is enough)"
        )
    if listener.handshake_timeout > _HANDSHAKE_SANE:
        out.append(
            f"{where}: handshake_timeout is {listener.handshake_timeout:g} s: connections "
            "that never authenticate hold their slots that long (10 s is enough)"
        )
    return out


def security_warnings(settings: Settings, section: str | None = None) -> list[str]:
    """One sentence per unsafe setting of the listener: no authentication, peers that
    prove nothing accepted at level run, a handshake without TLS off loopback, every
    node allowed to send audit events, limits that let one peer hold much memory or many
    slots.

    Only the levels that run a collector (walk, run) have a listener; ``section`` limits
    the advice to what ``kloghub validate --section`` prints.
    """
    collector = settings.collector
    if settings.level == "crawl" or section not in (None, "collector"):
        return []
    return _listener_warnings(collector.listen, collector.listener, settings.level)
