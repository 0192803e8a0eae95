"""The compiled file encoder gives byte-identical output to the Python reference.

For generated inputs (CRI with P/F groups across streams, docker json-file lines with
partials and broken JSON, invalid UTF-8, lines over the caps, garbage, odd timestamps) cut
into random feeds with flushes in between, both kernels must return the same Encoded and
report the same safe offset after every call; and so on the fixture files.
"""

from __future__ import annotations

import os
import time

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kloghub import config, kernels, runtime
from tests.kernels._support import FIXTURES, Call, require_compiled, run_both

pytestmark = pytest.mark.usefixtures("_compiled")


@pytest.fixture
def _compiled() -> None:
    require_compiled()


_NOW = 1_800_000_000_000_000_000

# ---------------------------------------------------------------------------- timestamps


@st.composite
def timestamps(draw: st.DrawFn) -> bytes:
    year = draw(st.sampled_from([0, 1, 1969, 1970, 2000, 2024, 2100, 2106, 2107, 9999]))
    month = draw(st.integers(0, 13))
    day = draw(st.integers(0, 32))
    hour, minute, second = (
        draw(st.integers(0, 25)),
        draw(st.integers(0, 61)),
        draw(st.integers(0, 61)),
    )
    t = draw(st.sampled_from(["T", "t", " ", "x"]))
    stamp = f"{year:04d}-{month:02d}-{day:02d}{t}{hour:02d}:{minute:02d}:{second:02d}"
    if draw(st.booleans()):
        stamp += draw(st.sampled_from([".", ","])) + draw(st.text("0123456789", max_size=12))
    zone = draw(
        st.one_of(
            st.sampled_from(
                [
                    "Z",
                    "z",
                    "",
                    "+00:00",
                    "-23:59",
                    "+24:00",
                    "+01:60",
                    "+0530",
                    "-07",
                    "+1",
                    "+01:",
                    "Zx",
                ]
            ),
            st.builds(
                lambda s, h, m: f"{s}{h:02d}:{m:02d}",
                st.sampled_from("+-"),
                st.integers(0, 25),
                st.integers(0, 61),
            ),
        )
    )
    return (stamp + zone).encode()


_good_stamps = st.builds(
    lambda sec, frac: (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + frac + "Z").encode(),
    st.integers(0, 2**32),
    st.one_of(st.just(""), st.text("0123456789", min_size=1, max_size=9).map(lambda d: "." + d)),
)
_stamps = st.one_of(_good_stamps, _good_stamps, timestamps())

# ---------------------------------------------------------------------------- lines

_payload = st.one_of(
    st.text(max_size=30).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.binary(max_size=30),
    st.sampled_from(
        [b"", b"caf\xc3\xa9", b"\xe2\x82", b"\xed\xa0\x80", b"\xf0\x9f\x98\x80", b"ok \xff"]
    ),
).map(lambda b: b.replace(b"\n", b" "))


@st.composite
def cri_lines(draw: st.DrawFn) -> bytes:
    stream = draw(st.sampled_from([b"stdout", b"stderr", b"stdout", b"stdin"]))
    tag = draw(st.sampled_from([b"F", b"P", b"P", b"F:x", b"P:y:z", b"X", b""]))
    parts = [draw(_stamps), stream, tag, draw(_payload)]
    if draw(st.integers(0, 9)) == 0:
        parts = parts[: draw(st.integers(1, 3))]
    return b" ".join(parts)


def _docker_obj(log: str, stream: object, when: object, extra: dict[str, object]) -> bytes:
    obj: dict[str, object] = {"log": log}
    if stream is not None:
        obj["stream"] = stream
    if when is not None:
        obj["time"] = when
    obj.update(extra)
    return orjson.dumps(obj)


_docker_extra = st.dictionaries(
    st.sampled_from(["attrs", "x", "n"]),
    st.one_of(
        st.integers(-(2**63), 2**64 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(st.characters(exclude_categories=["Cs"]), max_size=5),
        st.none(),
        st.lists(st.integers(-5, 5), max_size=3),
    ),
    max_size=2,
)


@st.composite
def docker_lines(draw: st.DrawFn) -> bytes:
    log = draw(st.text(st.characters(exclude_categories=["Cs"]), max_size=30)) + draw(
        st.sampled_from(["\n", "\n", ""])
    )
    stream = draw(st.sampled_from(["stdout", "stderr", "stdin", None, 7]))
    when = draw(
        st.one_of(_stamps.map(lambda b: b.decode("latin-1")), st.sampled_from([None, 5, "é"]))
    )
    line = _docker_obj(log, stream, when, draw(_docker_extra))
    mangle = draw(st.integers(0, 14))
    if mangle == 0:  # invalid UTF-8 inside the log string
        line = line.replace(b'"log":"', b'"log":"\xff\xc3', 1)
    elif mangle == 1:  # cut short
        line = line[: draw(st.integers(0, len(line)))]
    elif mangle == 2:  # a lone surrogate escape (orjson refuses it)
        line = line.replace(b'"log":"', b'"log":"\\ud800', 1)
    elif mangle == 3:
        line = line[:-1] + b',"deep":' + b"[" * 200 + b"]" * 200 + b"}"
    elif mangle == 4:
        line = line[:-1] + b',"deep":' + b"[" * 1100 + b"]" * 1100 + b"}"
    elif mangle == 5:  # duplicate keys: the last one wins
        line = line[:-1] + draw(
            st.sampled_from([b',"log":"dup\\n"}', b',"log":5}', b',"stream":"stderr"}'])
        )
    elif mangle == 6:
        line = draw(
            st.sampled_from(
                [
                    b"[1,2]",
                    b'"log"',
                    b"null",
                    b"1e400",
                    b"{}",
                    b'{"log":"a\\u00e9\\n"}',
                    b' {"log":"sp\\n"} ',
                    b'{"log":"x\\n"} tail',
                    b'\xef\xbb\xbf{"log":"bom\\n"}',
                ]
            )
        )
    elif mangle == 7:
        line = line[:-1] + b',"big":1' + b"0" * 400 + b"}"
    elif mangle == 8:  # an escape in a key, and a raw control character
        line = line.replace(b'"log"', draw(st.sampled_from([b'"l\\u006fg"', b'"log\\u0000"'])), 1)
    return line


_lines = st.one_of(
    cri_lines(),
    cri_lines(),
    docker_lines(),
    docker_lines(),
    _payload,
    st.sampled_from(
        [b"", b"   ", b"\t{", b"x" * 300, b"2024-05-01T12:00:00.5Z stdout P " + b"y" * 120]
    ),
    st.builds(lambda s, p: s + b" " + p, _stamps, _payload),  # text with a leading time
)


@st.composite
def calls(draw: st.DrawFn, data: bytes) -> list[Call]:
    """``data`` cut into feeds at random points, with flushes (timed or forced) between."""
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=8)))
    out: list[Call] = []
    pos = 0
    now = _NOW
    for cut in [*cuts, len(data)]:
        now += draw(st.sampled_from([0, 1, 400_000_000, 2_000_000_000]))
        out.append(Call("feed", data[pos:cut], now))
        pos = cut
        flush = draw(st.sampled_from([None, None, False, True]))
        if flush is not None:
            now += draw(st.sampled_from([0, 999_999_999, 1_000_000_000, 5_000_000_000]))
            out.append(Call("flush", now_ns=now, force=flush))
    if draw(st.booleans()):
        out.append(Call("flush", now_ns=now, force=True))
    return out


_contexts = st.sampled_from(
    [
        kernels.EntryContext("/var/log/containers/a.log", "f-1", None, None, None),
        kernels.EntryContext(
            "/var/log/pods/ns_p_u/c/0.log",
            "f-2",
            {"pod_name": "p", "namespace_name": "ns", "labels": {"app": "x"}},
            {"kind": "Deployment", "name": "x"},
            "json",
        ),
    ]
)


@settings(max_examples=700, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    fmt=st.sampled_from(["auto", "cri", "docker", "text"]),
    lines=st.lists(_lines, max_size=14),
    tail=_payload,
    caps=st.sampled_from([(1 << 20, 1 << 20), (40, 1 << 20), (16, 8), (200, 50), (64, 0)]),
    offset=st.sampled_from([0, 7, 2**40]),
    ctx=_contexts,
    data=st.data(),
)
def test_compiled_kernel_matches_the_reference_for_any_input_and_split(
    fmt, lines, tail, caps, offset, ctx, data
):
    """The compiled kernel would ship different events than the reference if it failed."""
    blob = b"".join(line + b"\n" for line in lines) + tail
    cfg = config.ParsersConfig(
        max_line_bytes=caps[0],
        max_record_bytes=caps[1],
        multiline=config.MultilineConfig(flush_timeout=data.draw(st.sampled_from([0.0, 1.0]))),
    )
    run_both(fmt, cfg, ctx, offset, data.draw(calls(blob)))


@st.composite
def partial_groups(draw: st.DrawFn) -> bytes:
    """CRI P…F groups interleaved across stdout and stderr, some never finished."""
    out = []
    for _ in range(draw(st.integers(1, 12))):
        stream = draw(st.sampled_from([b"stdout", b"stderr"]))
        tag = draw(st.sampled_from([b"P", b"P", b"F"]))
        out.append(
            b"2024-05-01T12:00:00.%dZ %s %s %s"
            % (draw(st.integers(0, 999)), stream, tag, draw(_payload))
        )
    return b"\n".join(out) + b"\n"


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    blob=partial_groups(),
    caps=st.sampled_from([(1 << 20, 1 << 20), (30, 20), (1 << 20, 5)]),
    data=st.data(),
)
def test_partial_groups_across_streams_join_the_same_way(blob, caps, data):
    """Joined CRI partials (and their checkpoints) would differ between kernels if it failed."""
    cfg = config.ParsersConfig(max_line_bytes=caps[0], max_record_bytes=caps[1])
    ctx = kernels.EntryContext("/a.log", "f", None, None, None)
    run_both("cri", cfg, ctx, 0, data.draw(calls(blob)))


def _fixture_inputs() -> list[tuple[str, str]]:
    return [
        ("docker", "fluent-bit/dockermode_splitted_multiple_lines.log"),
        ("docker", "fluent-bit/core_base_fluent-bit.log"),
        ("docker", "fluent-bit/core_unescaping_json.log"),
        ("docker", "fluent-bit/options_merge-log-enabled_json.log"),
        ("docker", "beats/docker_corrupted.log"),
        ("text", "elastic-kubernetes/container_logs/test-nginx.log"),
        ("text", "elastic-kubernetes/audit_logs/test-audit.log"),
    ]


def _fixture_bytes(path: str) -> bytes:
    with open(os.path.join(FIXTURES, path), "rb") as fh:
        return fh.read()


def _avro_cri() -> bytes:
    """The real CRI lines inside fluent-bit's avro_multiline.json (8- and 9-digit fractions)."""
    records = orjson.loads(_fixture_bytes("fluent-bit/avro_multiline.json"))
    return "".join(r["log"] for r in records).encode()


@pytest.mark.parametrize(("fmt", "path"), _fixture_inputs())
@pytest.mark.parametrize("as_fmt", ["given", "auto"])
@pytest.mark.parametrize("chunk", [1, 7, 1 << 20])
def test_fixture_files_encode_identically(fmt, path, as_fmt, chunk):
    """Real runtime output would be encoded differently by the two kernels if it failed."""
    blob = _fixture_bytes(path)
    steps = [Call("feed", blob[i : i + chunk], _NOW) for i in range(0, len(blob), chunk)]
    steps.append(Call("flush", now_ns=_NOW, force=True))
    ctx = kernels.EntryContext("/f.log", "f", {"pod_name": "p"}, None, None)
    run_both(fmt if as_fmt == "given" else "auto", config.ParsersConfig(), ctx, 0, steps)


@pytest.mark.parametrize("chunk", [1, 13, 1 << 20])
def test_real_cri_lines_encode_identically(chunk):
    """Real CRI lines (containerd's trimmed fractions) would differ if it failed."""
    blob = _avro_cri()
    assert blob.count(b" stderr F ") > 3
    steps = [Call("feed", blob[i : i + chunk], _NOW) for i in range(0, len(blob), chunk)]
    ctx = kernels.EntryContext("/f.log", "f", None, None, None)
    run_both("cri", config.ParsersConfig(), ctx, 0, steps)
    run_both("auto", config.ParsersConfig(max_line_bytes=50), ctx, 0, steps)


def test_parse_errors_are_counted_like_the_reference():
    """The kloghub_parse_errors metric would go wrong on the compiled kernel if it failed."""
    errors = runtime.metrics.PARSE_ERRORS
    ctx = kernels.EntryContext("/f.log", "f", None, None, None)
    blob = b"junk\n\n2024-05-01T12:00:00Z stdout F ok\nmore junk\n"

    def counts() -> tuple[float, float]:
        return (
            errors.labels(format="auto")._value.get(),
            errors.labels(format="cri")._value.get(),
        )

    before = counts()
    kernels.ReferenceFileEncoder("auto", config.ParsersConfig(), None, ctx, 0).feed(blob, _NOW)
    middle = counts()
    kernels.CompiledFileEncoder("auto", config.ParsersConfig(), None, ctx, 0).feed(blob, _NOW)
    after = counts()
    assert (middle[0] - before[0], middle[1] - before[1]) == (2, 1)
    assert (after[0] - middle[0], after[1] - middle[1]) == (2, 1)
