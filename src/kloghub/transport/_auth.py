"""Who a Forward peer is: identities from client certificates and handshake users, and the
listener's policy for peers that prove nothing.

Identities, strongest first:

- **certificate** (mutual TLS): a client certificate signed by the listener's CA. Its
  subject's common name is the node name (``system:node:<name>``, the kubelet's form,
  is read as ``<name>``); its Organization (O) names are its roles.
- **password**: a handshake user (``listener.users``). The username is the node name
  unless the user is ``shared`` (one credential for a whole DaemonSet, which proves
  membership only); its roles are ``users[].roles``. When a peer has both, the
  certificate names the node and the user must still be valid; a peer with a
  certificate need give no user (a pod certificate is all an agent has).
- **shared_key**: the handshake's shared key alone, also a membership proof.
- **none**: nothing proven; refused, warned about once per address, or allowed, as
  ``listener.unauthenticated`` says.

The PING's hostname is always kept, as the peer's claim (``Origin.claimed_host``).
"""

from __future__ import annotations

import collections
import logging
from typing import Any

from kloghub import config, core

__all__ = ["Authenticator", "OncePerPeer", "certificate_identity"]

_log = logging.getLogger("kloghub.transport")

_NODE_PREFIX = "system:node:"
_PEERS_REMEMBERED = 4096


class OncePerPeer:
    """Remembers (address, reason) pairs, so that each is logged once (bounded: the oldest
    are forgotten first, and may then be logged again)."""

    def __init__(self, limit: int = _PEERS_REMEMBERED) -> None:
        self._seen: collections.OrderedDict[tuple[str, str], None] = collections.OrderedDict()
        self._limit = limit

    def first(self, address: str, reason: str) -> bool:
        """True the first time this address is seen with this reason."""
        key = (address, reason)
        if key in self._seen:
            self._seen.move_to_end(key)
            return False
        self._seen[key] = None
        if len(self._seen) > self._limit:
            self._seen.popitem(last=False)
        return True


def certificate_identity(peercert: dict[str, Any] | None) -> tuple[str, frozenset[str]] | None:
    """(node name, roles) of a verified client certificate (``SSLSocket.getpeercert()``),
    or None when there is none or it names no one."""
    if not peercert:
        return None
    names: dict[str, list[str]] = {}
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            names.setdefault(key, []).append(value)
    common = names.get("commonName", [])
    if not common or not common[0]:
        return None
    name = common[0]
    if name.startswith(_NODE_PREFIX):
        name = name[len(_NODE_PREFIX) :]
    if not name:
        return None
    return name, frozenset(names.get("organizationName", ()))


class Authenticator:
    """The listener's identities and its policy; one per listener, shared by connections."""

    def __init__(self, listener: config.ListenerConfig) -> None:
        self._users = {u.username: u for u in listener.users}
        self.passwords = {u.username: u.password.get_secret_value() for u in listener.users}
        self.policy = listener.unauthenticated
        self.audit_roles = frozenset(listener.audit_roles)
        self.logged = OncePerPeer()

    def origin(
        self,
        address: str,
        *,
        certificate: dict[str, Any] | None = None,
        username: str | None = None,
        shared_key: bool = False,
        claimed_host: str | None = None,
    ) -> core.Origin:
        """The origin of a peer that passed the checks it went through (``username``: a
        user whose password was verified; ``shared_key``: the key was verified)."""
        cert = certificate_identity(certificate)
        user = self._users.get(username) if username else None
        roles: set[str] = set()
        if cert is not None:
            roles |= cert[1]
        if user is not None:
            roles |= set(user.roles)
        proven = frozenset(roles)
        audit = not self.audit_roles.isdisjoint(proven)
        if cert is not None:
            method: core.Method = "certificate"
            identity: str | None = cert[0]
            node: str | None = cert[0]
        elif user is not None:
            method, identity = "password", user.username
            node = None if user.shared else user.username
        else:
            method = "shared_key" if shared_key else "none"
            identity = node = None
            audit = False
        return core.Origin(method, identity, node, proven, audit, claimed_host, address)

    def admit(self, origin: core.Origin) -> str | None:
        """None when the peer may send; else the sentence it is refused with. An
        unauthenticated peer under ``warn`` is admitted with one warning per address."""
        if origin.authenticated or self.policy == "allow":
            return None
        if self.policy == "refuse":
            return (
                "connection refused: the peer did not authenticate (no client certificate, "
                "no handshake) and listener.unauthenticated is refuse"
            )
        if self.logged.first(origin.address, "unauthenticated"):
            _log.warning(
                "unauthenticated Forward peer accepted (listener.unauthenticated: warn); "
                "its records are only its own claims",
                extra={"peer": origin.address, "reason": "unauthenticated"},
            )
        return None
