"""Addresses and TLS for the sinks' HTTP clients (credentials never travel in URLs)."""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit, urlunsplit

from kloghub import config, core

__all__ = ["http_url", "is_https", "ssl_context"]


def http_url(url: str, default_port: int) -> str:
    """``elasticsearch+https://host[:port][/path]`` → ``https://host:port[/path]``."""
    parts = urlsplit(url)
    scheme = parts.scheme.rpartition("+")[2]
    host = parts.hostname or "localhost"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = parts.port or default_port
    return urlunsplit((scheme, f"{host}:{port}", parts.path.rstrip("/"), "", ""))


def is_https(url: str) -> bool:
    return urlsplit(url).scheme.endswith("https")


def ssl_context(tls: config.TLSConfig, sink: str) -> ssl.SSLContext:
    """A client TLS context from the sink's certificate files. Raises ConfigError."""
    try:
        context = ssl.create_default_context(
            cafile=str(tls.ca_file) if tls.ca_file is not None else None
        )
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if tls.cert_file is not None and tls.key_file is not None:
            context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise core.ConfigError([f"sink {sink}: tls: cannot load certificates: {exc}"]) from None
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
