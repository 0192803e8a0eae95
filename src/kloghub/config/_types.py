"""Value types shared by the configuration models: durations, sizes, URLs, addresses."""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ByteSize, ConfigDict

__all__ = [
    "OUTPUT_SCHEMES",
    "SINK_SCHEMES",
    "Duration",
    "HostPort",
    "Model",
    "Size",
    "parse_duration",
    "parse_hostport",
]

# Sizes accept integers or strings with units: 512KiB, 256MiB, 1GB (pydantic's ByteSize).
Size = ByteSize

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """``30``, ``"30s"``, ``"500ms"``, ``"10m"``, ``"2h"``, ``"7d"`` → seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 500ms, 10m, 2h or 7d")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    raise ValueError("expected a duration such as 30s, 500ms, 10m, 2h or 7d")


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds; accepts numbers or strings with a unit (ms, s, m, h, d)."""


def parse_hostport(value: Any) -> str:
    """``HOST:PORT`` (``[::1]:2020`` for IPv6); the port must be 0..65535."""
    if not isinstance(value, str):
        raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:2020")
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:2020")
    return value


HostPort = Annotated[str, BeforeValidator(parse_hostport)]

OUTPUT_SCHEMES = ("forward", "forward+tls", "file", "stdout", "store")
"""Where an agent can send: a collector (or Fluentd/Fluent Bit), NDJSON, stdout, a local store."""

SINK_SCHEMES = (
    "elasticsearch+https",
    "elasticsearch+http",
    "opensearch+https",
    "opensearch+http",
    "splunk-hec+https",
    "splunk-hec+http",
    "file",
    "stdout",
    "store",
    "null",
)
"""Where a collector can send."""


def check_url(value: str, schemes: tuple[str, ...]) -> str:
    """Refuse unknown schemes and credentials embedded in the URL."""
    scheme = value.split(":", 1)[0] if ":" in value else ""
    if scheme not in schemes:
        raise ValueError(f"unknown scheme {scheme!r}; expected one of: {', '.join(schemes)}")
    if scheme in ("file", "store") and not value.split(":", 1)[1]:
        raise ValueError(f"{scheme}: needs a path, e.g. {scheme}:/var/lib/kloghub/{scheme}")
    if "://" in value:
        parts = urlsplit(value)
        if parts.username or parts.password:
            raise ValueError(
                "credentials in the URL are not allowed (they would end up in logs); "
                "set username/password, api_key or token in the config file or environment"
            )
        if not parts.hostname:
            raise ValueError("the URL has no host")
    return value


class Model(BaseModel):
    """Base of every configuration model: unknown keys are refused, values are checked."""

    model_config = ConfigDict(
        extra="forbid",
        validate_default=True,
        validate_assignment=True,
        use_attribute_docstrings=True,
    )
