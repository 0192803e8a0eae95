"""Agent → collector transport: the Fluentd Forward Protocol v1 (client, server, codec).

``ForwardOutput`` is the agent's ``forward://`` / ``forward+tls://`` output;
``ForwardServer`` is the collector's listener, acknowledging a chunk only once ``deliver``
stored it; ``AuditWebhook`` the collector's HTTPS input for the API server's audit webhook
backend, with the same contract. The codec in ``protocol`` is shared by both and by tests.

``AuditWebhook`` is loaded on first use (PEP 562): it is the only part on aiohttp, and the
agent, which imports this package for its Forward output, never serves HTTPS.
"""

from typing import TYPE_CHECKING, Any

from kloghub.transport import _protocol as protocol
from kloghub.transport._client import ForwardOutput, client_ssl_context
from kloghub.transport._protocol import FrameTooLargeError, ProtocolError
from kloghub.transport._server import Deliver, DeliverPacked, ForwardServer, server_ssl_context

if TYPE_CHECKING:
    from kloghub.transport._webhook import AuditWebhook

__all__ = [
    "AuditWebhook",
    "Deliver",
    "DeliverPacked",
    "ForwardOutput",
    "ForwardServer",
    "FrameTooLargeError",
    "ProtocolError",
    "client_ssl_context",
    "protocol",
    "server_ssl_context",
]


def __getattr__(name: str) -> Any:
    if name != "AuditWebhook":
        raise AttributeError(f"module 'kloghub.transport' has no attribute {name!r}")
    from kloghub.transport._webhook import AuditWebhook

    globals()[name] = AuditWebhook
    return AuditWebhook
