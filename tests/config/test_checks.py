"""``kloghub validate``'s advice on listener settings that work but are unsafe."""

from __future__ import annotations

import pytest

from kloghub import config

AUTH = {"shared_key": "k", "tls": {"enabled": True, "cert_file": "/c", "key_file": "/k"}}


def warnings(level: str = "run", **listener: object) -> list[str]:
    settings = config.load(
        None,
        {"level": level, "collector": {"listen": "0.0.0.0:24224", "listener": listener}},
    )
    return config.security_warnings(settings)


def test_a_secured_listener_with_default_limits_gets_no_advice() -> None:
    """If this failed, the advice would cry wolf on the recommended set-up."""
    assert warnings(**AUTH) == []
    assert warnings("walk", **AUTH) == []


@pytest.mark.parametrize(
    ("listener", "words"),
    [
        ({**AUTH, "unauthenticated": "warn"}, "unauthenticated is warn at level run"),
        ({"shared_key": "k"}, "cross the network in clear"),
        ({**AUTH, "audit_roles": ["control-plane", "node"]}, "every node identity can send"),
        ({**AUTH, "max_frame_bytes": "64MiB"}, "max_frame_bytes is 64 MiB"),
        ({**AUTH, "max_frame_bytes": "16MiB", "max_connections_per_peer": 100}, "1 GiB"),
        ({**AUTH, "idle_timeout": "1h"}, "idle_timeout is 3600 s"),
        ({**AUTH, "handshake_timeout": "5m"}, "handshake_timeout is 300 s"),
    ],
    ids=["unauthenticated-at-run", "no-tls", "audit-from-nodes", "frame", "per-peer-memory",
         "idle", "handshake"],
)  # fmt: skip
def test_each_unsafe_combination_is_named(listener: dict[str, object], words: str) -> None:
    """If this failed, an operator could run a collector with that opening without being
    told."""
    found = warnings(**listener)
    assert any(words in w for w in found), found


def test_handshake_without_tls_on_loopback_is_not_advised_against() -> None:
    """If this failed, a collector next to its agents (the demo, a sidecar) would be told
    to set up TLS on 127.0.0.1."""
    settings = config.load(
        None,
        {"level": "run", "collector": {"listen": "127.0.0.1:24224",
                                       "listener": {"shared_key": "k"}}},
    )  # fmt: skip
    assert config.security_warnings(settings) == []
