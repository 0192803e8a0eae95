"""Which kernel a file gets: the compiled one when built and covering, never silently not."""

from __future__ import annotations

import logging

import pytest

from kloghub import config, kernels, runtime
from kloghub.kernels import _compiled, _select
from tests.kernels._support import require_compiled

_CTX = kernels.EntryContext("/a.log", "f", None, None, None)


def _fallbacks(reason: str) -> float:
    return runtime.metrics.KERNEL_FALLBACKS.labels(reason=reason)._value.get()


@pytest.fixture
def fresh_log(monkeypatch):
    monkeypatch.setattr(_select, "_said", set())
    monkeypatch.delenv("KLOGHUB_KERNELS", raising=False)


@pytest.mark.usefixtures("fresh_log")
def test_covered_files_get_the_compiled_kernel():
    """The agent would run the slow path on every file if it failed."""
    require_compiled()
    assert kernels.native_available()
    for fmt in ("auto", "cri", "docker", "text"):
        assert kernels.FileEncoder(fmt, config.ParsersConfig(), None, _CTX, 0).native


@pytest.mark.usefixtures("fresh_log")
def test_multiline_files_fall_back_to_the_reference_and_say_so_once(caplog):
    """A file with multiline rules would be mis-joined, or fall back silently, if it failed."""
    require_compiled()
    ml = config.MultilineConfig(enabled=True)
    before = _fallbacks("multiline")
    with caplog.at_level(logging.INFO, logger="kloghub.kernels._select"):
        first = kernels.FileEncoder("cri", config.ParsersConfig(), ml, _CTX, 0)
        second = kernels.FileEncoder("cri", config.ParsersConfig(multiline=ml), None, _CTX, 0)
    assert not first.native
    assert not second.native
    assert _fallbacks("multiline") - before == 2
    assert [r.reason for r in caplog.records] == ["multiline"]
    data = b"2024-05-01T12:00:00Z stdout F Exception\n2024-05-01T12:00:00Z stdout F \tat x.y\n"
    first.feed(data, 0)
    (only,) = kernels.decode_entries(first.flush(0, force=True).entries)
    assert only[1]["log"] == "Exception\n\tat x.y"


@pytest.mark.usefixtures("fresh_log")
def test_json_files_fall_back_to_the_reference():
    """Audit (json) files would be refused if it failed."""
    before = _fallbacks("format_json")
    enc = kernels.FileEncoder("json", config.ParsersConfig(), None, _CTX, 0)
    assert not enc.native
    if kernels.native_available():
        assert _fallbacks("format_json") - before == 1
    assert enc.feed(b'{"stageTimestamp":"2024-05-01T12:00:00Z"}\n', 0).count == 1


@pytest.mark.usefixtures("fresh_log")
def test_kloghub_kernels_python_forces_the_reference(monkeypatch):
    """Comparing the kernels (and a workaround in production) would be impossible if it failed."""
    monkeypatch.setenv("KLOGHUB_KERNELS", "python")
    assert not kernels.native_available()
    assert not kernels.FileEncoder("cri", config.ParsersConfig(), None, _CTX, 0).native


def test_unknown_formats_are_refused_by_both():
    """A typo in a format would be tailed as something else if it failed."""
    with pytest.raises(ValueError, match="unknown log format"):
        kernels.FileEncoder("syslog", config.ParsersConfig(), None, _CTX, 0)


@pytest.mark.usefixtures("fresh_log")
def test_the_facade_passes_calls_through():
    """The tailer would read wrong offsets or lose context changes if it failed."""
    enc = kernels.FileEncoder("cri", config.ParsersConfig(), None, _CTX, 10)
    result = enc.feed(b"2024-05-01T12:00:00Z stdout P a\n2024-05-01T12:00:00Z stdout", 0)
    assert (result.count, result.lines) == (0, 1)
    assert (enc.read_offset, enc.safe_offset(), enc.format) == (10 + 59, 10, "cri")
    enc.set_context(kernels.EntryContext("/b.log", "g", {"pod_name": "p"}, None, "json"))
    (entry,) = kernels.decode_entries(enc.flush(0, force=True).entries)
    assert entry[1]["kloghub"]["file"] == "/b.log"
    assert entry[1]["kubernetes"] == {"pod_name": "p"}
    assert entry[1]["kloghub"]["parser"] == "json"


def test_a_missing_extension_fails_the_kernel_tests_under_ci(monkeypatch):
    """CI would pass by skipping the equivalence tests on a build without Rust if it failed."""
    monkeypatch.setattr(_compiled, "NATIVE", None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require_compiled()
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception):
        require_compiled()


@pytest.mark.usefixtures("fresh_log")
def test_a_missing_extension_is_a_warning_not_a_silent_slow_path(monkeypatch, caplog):
    """An agent built without Rust would run several times slower unnoticed if it failed."""
    monkeypatch.setattr(_compiled, "NATIVE", None)
    before = _fallbacks("not_built")
    with caplog.at_level(logging.WARNING, logger="kloghub.kernels._select"):
        enc = kernels.FileEncoder("cri", config.ParsersConfig(), None, _CTX, 0)
        kernels.FileEncoder("cri", config.ParsersConfig(), None, _CTX, 0)
    assert not enc.native
    assert not kernels.native_available()
    assert _fallbacks("not_built") - before == 2
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
