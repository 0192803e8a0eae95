"""The origin of a batch: who sent it, as the receiving collector established it.

A record's own fields (``kubernetes.host``, ``kloghub.host``, ``kloghub.file_id``) are what
the sender *claims*; the origin is what the collector *proved* (a client certificate, a
handshake user, a shared key) or knows it did not prove. The normalizer takes the node
name and the document id's namespace from here, never from the record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Method", "Origin"]

Method = Literal["certificate", "password", "shared_key", "none"]
"""How the peer proved itself: a client certificate from the listener's CA (mutual TLS), a
handshake username/password, only the shared key, or nothing."""


@dataclass(frozen=True, slots=True)
class Origin:
    """The sender of a batch as the collector knows it."""

    method: Method
    identity: str | None = None
    """The authenticated name: the certificate's (node) name, the handshake username, or
    None (shared key only, or no authentication)."""
    node: str | None = None
    """The node this identity proves. Set for per-node identities (a certificate, a
    non-shared user); None when the credential is shared by several agents or absent,
    so that which node sent the records is only the sender's claim."""
    roles: frozenset[str] = field(default_factory=frozenset)
    """What the identity may send (roles the listener's ``audit_roles`` names may send
    audit events)."""
    may_send_audit: bool = False
    """Whether records tagged ``audit`` from this sender become audit documents."""
    claimed_host: str | None = None
    """The host name the peer gave in the handshake (PING), a claim."""
    address: str = ""
    """The peer's IP address."""

    @property
    def authenticated(self) -> bool:
        return self.method != "none"

    @property
    def namespace(self) -> str:
        """The document id namespace: who may write ids in it. A proven node's name; a
        shared identity's name with the host it claims (members of one credential are not
        kept apart from each other); ``-`` when unauthenticated."""
        if self.node is not None:
            return f"n:{self.node}"
        if self.method == "none":
            return "-"
        return f"g:{self.identity or ''}:{self.claimed_host or ''}"
