"""Client TLS contexts from certificate files (outputs, sinks, search backends)."""

from __future__ import annotations

import ssl

from kloghub import config, core

__all__ = ["client_ssl_context"]


def client_ssl_context(tls: config.TLSConfig, owner: str) -> ssl.SSLContext:
    """TLS 1.2+ with ``ca_file`` (or the system store) and, for mutual TLS, the client's
    certificate. Raises ConfigError naming ``owner`` when a file cannot be loaded."""
    try:
        context = ssl.create_default_context(
            cafile=str(tls.ca_file) if tls.ca_file is not None else None
        )
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if tls.cert_file is not None and tls.key_file is not None:
            context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise core.ConfigError([f"{owner}: tls: cannot load certificates: {exc}"]) from None
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
