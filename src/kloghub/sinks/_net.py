"""Addresses and TLS for the sinks' HTTP clients (credentials never travel in URLs)."""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit, urlunsplit

from kloghub import config, runtime

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
    return runtime.client_ssl_context(tls, f"sink {sink}")
