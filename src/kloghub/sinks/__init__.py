"""The collector's SIEM sinks (Elasticsearch, OpenSearch, Splunk HEC, and ``null:``, which
discards) and the dead-letter queue.

Build a sink with :func:`build` (or its class) from a ``config.SinkConfig`` and the
collector's :class:`DeadLetterQueue`; feed it ``core.Batch``es of normalized events
(``record = {"id": <doc id>, "doc": <ECS document>}``, ``tag`` = data stream) with
``await sink.send(batch)``; add ``sink.problem`` to the readiness checks. See
``DESIGN.md`` in this folder for the contract and the classification tables.
"""

from kloghub.sinks._build import SCHEMES, build, handles
from kloghub.sinks._bulk import CODEC as BULK_CODEC
from kloghub.sinks._bulk import encode as bulk_encode
from kloghub.sinks._dlq import (
    DeadLetter,
    DeadLetterQueue,
    DeadLetters,
    Rejection,
    Summary,
    read,
    summarize,
)
from kloghub.sinks._elasticsearch import ElasticsearchSink
from kloghub.sinks._null import NullSink
from kloghub.sinks._opensearch import OpenSearchSink
from kloghub.sinks._replay import ReplayReport, replay
from kloghub.sinks._sink import FatalError, Item, Outcome, Refusal, Sink, SplitError
from kloghub.sinks._splunk import SplunkHecSink

__all__ = [
    "BULK_CODEC",
    "SCHEMES",
    "DeadLetter",
    "DeadLetterQueue",
    "DeadLetters",
    "ElasticsearchSink",
    "FatalError",
    "Item",
    "NullSink",
    "OpenSearchSink",
    "Outcome",
    "Refusal",
    "Rejection",
    "ReplayReport",
    "Sink",
    "SplitError",
    "SplunkHecSink",
    "Summary",
    "build",
    "bulk_encode",
    "handles",
    "read",
    "replay",
    "summarize",
]
