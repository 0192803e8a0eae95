"""Helpers for the kernel tests: the compiled kernel or a clear failure, and a driver that
runs both kernels over the same calls."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

from kloghub import config, kernels
from kloghub.kernels import _compiled

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures")


def require_compiled() -> None:
    """Skip without the extension; under CI=true that is a failure (CI must build it)."""
    if _compiled.NATIVE is not None:
        return
    message = "the compiled kernels (kloghub._native) are not built: run `make venv`"
    if os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}:
        pytest.fail(f"{message} (CI=true: a missing extension is a failure)", pytrace=False)
    pytest.skip(message)


@dataclass
class Call:
    """One call on a file encoder: ``feed`` of bytes, or ``flush`` at a time."""

    kind: str
    data: bytes = b""
    now_ns: int = 0
    force: bool = False


def state(enc: kernels.CompiledFileEncoder | kernels.ReferenceFileEncoder) -> tuple[object, ...]:
    return (enc.safe_offset(), enc.read_offset, enc.format)


def outcome(encoded: kernels.Encoded) -> tuple[object, ...]:
    return (
        encoded.entries,
        encoded.count,
        encoded.lines,
        encoded.end_offset,
        encoded.truncated,
        encoded.invalid_utf8,
    )


def run_both(
    fmt: str,
    cfg: config.ParsersConfig,
    ctx: kernels.EntryContext,
    offset: int,
    calls: list[Call],
) -> None:
    """Run ``calls`` on both kernels; assert identical results and state after each."""
    ref = kernels.ReferenceFileEncoder(fmt, cfg, None, ctx, offset)
    nat = kernels.CompiledFileEncoder(fmt, cfg, None, ctx, offset)
    for index, call in enumerate(calls):
        if call.kind == "feed":
            want, got = ref.feed(call.data, call.now_ns), nat.feed(call.data, call.now_ns)
        else:
            want = ref.flush(call.now_ns, call.force)
            got = nat.flush(call.now_ns, call.force)
        assert outcome(got) == outcome(want), (index, call, decode(want), decode(got))
        assert state(nat) == state(ref), (index, call)


def decode(encoded: kernels.Encoded) -> object:
    try:
        return kernels.decode_entries(encoded.entries)
    except ValueError as exc:
        return f"undecodable: {exc}"
