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


def listener_authenticates(listener: ListenerConfig) -> bool:
    """Whether a Forward peer must prove who it is: a shared key, users, or a client
    certificate checked against a CA (mutual TLS)."""
    if listener.shared_key is not None or listener.users:
        return True
    tls = listener.tls
    return tls.enabled and listener.require_client_cert and tls.ca_file is not None


def security_warnings(settings: Settings, section: str | None = None) -> list[str]:
    """One sentence per listener that accepts peers without authentication.

    Only the levels that run a collector (walk, run) have a listener; ``section`` limits
    the advice to what ``kloghub validate --section`` prints.
    """
    out: list[str] = []
    collector = settings.collector
    shown = settings.level != "crawl" and section in (None, "collector")
    if shown and not listener_authenticates(collector.listener):
        out.append(
            f"collector.listener ({collector.listen}) accepts Forward peers without "
            "authentication: anyone who reaches it can write into (and, by reusing "
            "document ids, erase from) the log record; set listener.shared_key or "
            "shared_key_file, listener.users, or listener.tls with require_client_cert "
            "and ca_file"
        )
    return out
