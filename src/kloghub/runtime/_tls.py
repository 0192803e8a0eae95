"""Client TLS contexts from certificate files (outputs, sinks, search backends)."""

from __future__ import annotations

import logging
import os
import ssl
from pathlib import Path

from kloghub import config, core

__all__ = ["ClientTLS", "client_ssl_context"]

_log = logging.getLogger("kloghub.runtime")


def client_ssl_context(tls: config.TLSConfig, owner: str) -> ssl.SSLContext:
    """TLS 1.2+ with ``ca_file`` (or the system store) and, for mutual TLS, the client's
    certificate (``cert_file``/``key_file``, or both from ``credential_bundle_file``).
    Raises ConfigError naming ``owner`` when a file cannot be loaded."""
    try:
        context = ssl.create_default_context(
            cafile=str(tls.ca_file) if tls.ca_file is not None else None
        )
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if tls.cert_file is not None and tls.key_file is not None:
            context.load_cert_chain(tls.cert_file, tls.key_file)
        elif tls.credential_bundle_file is not None:
            # One PEM file with the key and the chain (leaf first): OpenSSL takes the
            # certificates and the key from it wherever they are.
            context.load_cert_chain(tls.credential_bundle_file)
    except (OSError, ssl.SSLError) as exc:
        raise core.ConfigError([f"{owner}: tls: cannot load certificates: {exc}"]) from None
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _signature(path: os.PathLike[str] | str) -> tuple[int, int, int] | None:
    try:
        st = Path(path).stat()  # follows the kubelet's ..data symlink swap
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class ClientTLS:
    """A client context that follows a rotated ``credential_bundle_file``.

    :meth:`context` is called for each new connection: when the bundle's inode, size or
    modification time changed since the context was built, it is built again (a
    connection already open keeps its certificate). A bundle that cannot be loaded
    after a change (half written, a bad key) keeps the previous context, with one
    warning per change. Without a bundle the first context is kept for good.
    """

    def __init__(self, tls: config.TLSConfig, owner: str) -> None:
        self._tls = tls
        self._owner = owner
        self._bundle = tls.credential_bundle_file
        self._seen = _signature(self._bundle) if self._bundle is not None else None
        self._context = client_ssl_context(tls, owner)  # raises ConfigError at start
        self.reloads = 0
        """Times the context was built again from a changed bundle."""

    def context(self) -> ssl.SSLContext:
        if self._bundle is None:
            return self._context
        now = _signature(self._bundle)
        if now is None or now == self._seen:
            return self._context
        self._seen = now
        try:
            self._context = client_ssl_context(self._tls, self._owner)
        except core.ConfigError as exc:
            _log.warning(
                "the rotated TLS credential bundle cannot be loaded; new connections keep "
                "the previous certificate",
                extra={"owner": self._owner, "path": str(self._bundle), "error": str(exc)},
            )
        else:
            self.reloads += 1
            _log.info(
                "TLS credential bundle reloaded",
                extra={"owner": self._owner, "path": str(self._bundle)},
            )
        return self._context
