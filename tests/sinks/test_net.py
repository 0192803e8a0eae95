"""Sink URLs become client URLs; TLS files are loaded at start, with errors that name them."""

from __future__ import annotations

from pathlib import Path

import pytest

from kloghub import config, core
from kloghub.sinks import _net


@pytest.mark.parametrize(
    ("url", "port", "expected"),
    [
        ("elasticsearch+https://es.example", 9200, "https://es.example:9200"),
        ("opensearch+http://127.0.0.1:19200/", 9200, "http://127.0.0.1:19200"),
        ("elasticsearch+https://es.example:443/proxy/es", 9200, "https://es.example:443/proxy/es"),
        ("splunk-hec+https://[::1]", 8088, "https://[::1]:8088"),
    ],
)
def test_a_sink_url_becomes_the_client_url(url: str, port: int, expected: str):
    """If this failed, a sink would connect to the wrong port or path of its SIEM."""
    assert _net.http_url(url, port) == expected


def test_a_missing_ca_file_is_a_config_error_naming_the_sink(tmp_path: Path):
    """If this failed, a typo in tls.ca_file would surface as an opaque crash at start."""
    tls = config.TLSConfig(ca_file=tmp_path / "missing.pem")
    with pytest.raises(core.ConfigError, match="sink es: tls"):
        _net.ssl_context(tls, "es")
