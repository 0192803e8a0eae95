"""ECS normalization: collector events → Elasticsearch / OpenSearch documents, and the
index templates and lifecycle policies of their data streams.

- :class:`Normalizer` maps one event (Fluent Bit's kubernetes layout, as the Forward
  protocol delivers it) to one document event: container logs as Elastic's Kubernetes
  integration writes them, audit events as its ``audit_logs`` data stream, node logs.
- :func:`document_id` is the deterministic ``_id`` (see ``_ids`` for the rules).
- :func:`templates` renders the JSON assets (``assets/``) into request bodies.

Fields outside ECS are listed in :data:`EXTENSION_FIELDS`.
"""

from kloghub.normalize._ids import document_id
from kloghub.normalize._normalizer import ECS_VERSION, EXTENSION_FIELDS, ROOT_FIELDS, Normalizer
from kloghub.normalize._templates import DATA_STREAMS, Kind, templates
from kloghub.normalize._times import Rfc3339

__all__ = [
    "DATA_STREAMS",
    "ECS_VERSION",
    "EXTENSION_FIELDS",
    "ROOT_FIELDS",
    "Kind",
    "Normalizer",
    "Rfc3339",
    "document_id",
    "templates",
]
