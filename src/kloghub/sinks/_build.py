"""Which sink class serves which URL scheme."""

from __future__ import annotations

from kloghub import config, core
from kloghub.sinks import _dlq, _sink
from kloghub.sinks._elasticsearch import ElasticsearchSink
from kloghub.sinks._null import NullSink
from kloghub.sinks._opensearch import OpenSearchSink
from kloghub.sinks._splunk import SplunkHecSink

__all__ = ["SCHEMES", "build", "handles"]

SCHEMES: dict[str, type[_sink.Sink]] = {
    "elasticsearch+https": ElasticsearchSink,
    "elasticsearch+http": ElasticsearchSink,
    "opensearch+https": OpenSearchSink,
    "opensearch+http": OpenSearchSink,
    "splunk-hec+https": SplunkHecSink,
    "splunk-hec+http": SplunkHecSink,
    "null": NullSink,
}
"""The URL schemes of this package's sinks (``file:``, ``stdout:``, ``store:`` are not)."""


def _scheme(url: str) -> str:
    return url.split(":", 1)[0]


def handles(url: str) -> bool:
    """Whether ``url`` names a sink of this package."""
    return _scheme(url) in SCHEMES


def build(
    cfg: config.SinkConfig,
    dead_letters: _dlq.DeadLetters,
    supervisor: core.Supervisor | None = None,
) -> _sink.Sink:
    """The sink for ``cfg.url``. Raises ConfigError for a scheme it does not serve or a
    setting the sink cannot use (no I/O: clients are created in ``start``)."""
    cls = SCHEMES.get(_scheme(cfg.url))
    if cls is None:
        raise core.ConfigError(
            [f"sink {cfg.url}: not an Elasticsearch, OpenSearch, HEC or null: URL"]
        )
    return cls(cfg, dead_letters, supervisor=supervisor)
