"""Secret redaction: real-looking secrets go, strings that only look like them stay."""

from __future__ import annotations

import pytest

from kloghub import core, filters
from kloghub.runtime import metrics

ALL = list(filters.BUILTIN)
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkFsaWNlIn0"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)


@pytest.mark.parametrize(
    ("line", "expected", "kind"),
    [
        (
            "GET /v1 Authorization: Bearer ghp_16C7e42F292c6912E7710c838347Ae178B4a ok",
            "GET /v1 Authorization: Bearer [REDACTED] ok",
            "bearer_token",
        ),
        (
            "authorization: bearer abcdefghijklmnopqrstuvwxyz",
            "authorization: bearer [REDACTED]",
            "bearer_token",
        ),
        (
            'headers={"Authorization": "Basic dXNlcjpwYXNzd29yZA=="}',
            'headers={"Authorization": "Basic [REDACTED]"}',
            "bearer_token",
        ),
        (f"session {JWT} accepted", "session [REDACTED] accepted", "jwt"),
        ("using AKIAIOSFODNN7EXAMPLE for s3", "using [REDACTED] for s3", "aws_access_key"),
        ("temp creds ASIAY34FZKBOKMUTVV7A", "temp creds [REDACTED]", "aws_access_key"),
        (
            "dsn=postgres://app:s3cr3t-P4ss@db.internal:5432/orders",
            "dsn=postgres://app:[REDACTED]@db.internal:5432/orders",
            "url_password",
        ),
        (
            "login user=bob password=hunter2 ok",
            "login user=bob password=[REDACTED] ok",
            "key_value_secret",
        ),
        ("DB_PASSWORD='c0rrect horse'", "DB_PASSWORD='[REDACTED]'", "key_value_secret"),
        (
            '{"user": "bob", "password": "hunter2", "n": 1}',
            '{"user": "bob", "password": "[REDACTED]", "n": 1}',
            "key_value_secret",
        ),
        ('{"token":"a\\"b"}', '{"token":"[REDACTED]"}', "key_value_secret"),
        (
            "GET /cb?code=1&access_token=ya29.a0Af&state=x",
            "GET /cb?code=1&access_token=[REDACTED]&state=x",
            "key_value_secret",
        ),
        ('client_secret: "abc"', 'client_secret: "[REDACTED]"', "key_value_secret"),
        (
            "X-Api-Key: a8f5f167f44f4964e6c998dee827110c",
            "X-Api-Key: [REDACTED]",
            "key_value_secret",
        ),
        (
            "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "aws_secret_access_key=[REDACTED]",
            "key_value_secret",
        ),
        ("Grüße: password=geheim", "Grüße: password=[REDACTED]", "key_value_secret"),
        ("İstanbul PASSWORD=geheim", "İstanbul PASSWORD=[REDACTED]", "key_value_secret"),
    ],
)
def test_real_looking_secrets_are_redacted_and_counted(line, expected, kind):
    """If this failed, credentials written to logs would reach the SIEM in clear text."""
    counter = metrics.REDACTIONS.labels(kind)
    before = counter._value.get()
    assert filters.Redactor(ALL).redact(line) == expected
    assert counter._value.get() > before


@pytest.mark.parametrize(
    "line",
    [
        "password reset email sent to bob@example.com",
        "Password must be at least 12 characters",
        "failed to refresh token: connection refused",
        "bearer token expired, asking for a new one",
        "Basic configuration loaded",
        "request 3f2a9c1e-5b7d-4c2a-9e8f-0a1b2c3d4e5f done in 12ms",
        "deployed commit 9fceb02d0ae598e95dc970b74767f19372d61af8",
        "image sha256:4bf92f3577b34da6a3ce929d0e0e47364bf92f3577b34da6a3ce929d0e0e4736",
        "max_tokens=1024 tokens_used=55 token_count=3",
        "secretary=alice secrets_synced=4 passwords_match",
        "see https://example.com:8443/path?q=1 and mailto:ops@example.com",
        "http://localhost:8080/@admin",
        "EXAMPLEAKIAIOSFODNN7EXAMPLEX is not a key",
        "eyJhbGciOiJIUzI1NiJ9 alone is a header, not a token",
        "token: null",
        "GET /healthz 200",
    ],
)
def test_strings_that_only_look_like_secrets_stay(line):
    """If this failed, redaction would destroy ordinary log lines (false positives)."""
    assert filters.Redactor(ALL).redact(line) == line


def test_only_the_chosen_kinds_and_custom_patterns_apply():
    """If this failed, disabling a kind or adding a pattern would have no effect."""
    r = filters.Redactor(["jwt"], [r"ssn=(\d{3}-\d{2}-\d{4})", r"card \d{16}"])
    line = f"password=x {JWT} ssn=123-45-6789 card 4111111111111111"
    assert r.redact(line) == "password=x [REDACTED] ssn=[REDACTED] [REDACTED]"


def test_redaction_changes_the_message_and_never_the_offsets():
    """If this failed, redaction would move checkpoints or leave the secret in raw bytes."""
    kh = {"file": "/x.log", "file_id": "f", "offset": 1234, "raw": b"password=hunter2 \xff"}
    event = core.Event("t", 1, {"log": "password=hunter2 \ufffd", "kloghub": kh})
    out = filters.Redactor(ALL)(event)
    assert out is event
    assert event.record["log"] == "password=[REDACTED] \ufffd"
    assert kh["offset"] == 1234
    assert kh["raw"] == b"password=[REDACTED] \xff"  # the invalid byte kept, the secret not
