"""The collector's compiled path writes exactly what the Python path writes.

For generated PackedForward entries (kloghub's agent layout with every variation it has —
flags, owners, invalid-UTF-8 originals, odd times, JSON and control characters in lines —
and foreign layouts: Fluent Bit's ``Merge_Log`` keys, no provenance, bytes logs), several
normalizer settings and sender identities, the queue frames of the kernel (plus the
Python path's frames of the records it hands back) must be byte for byte the frames that
the normalizer, ``sinks._bulk.encode`` and the queue's framing make of the same entries.
Then, through real disk queues, a collector's ``FastPath`` stores what ``_Router`` stores,
and refuses broken requests the way the Python path does.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any
from unittest import mock

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kloghub import config, core, normalize, outputs, runtime, sinks, transport
from kloghub.buffer import _segment
from kloghub.collector import _app, _fastpath
from tests.buffer._util import make_queue
from tests.kernels._support import require_compiled

pytestmark = pytest.mark.usefixtures("_compiled")

_NOW = 1_800_000_000_123_456_789
_FRAME = struct.Struct("<II")
_KERNEL_RECORDS = "kloghub_collector_kernel_records_total"


@pytest.fixture
def _compiled() -> None:
    require_compiled()


# ---------------------------------------------------------------------------- inputs

_PODS: list[dict[str, Any] | None] = [
    None,
    {"pod_name": "web-1", "namespace_name": "shop", "container_name": "app"},
    {
        "pod_name": "web-7c9f-abcde",
        "namespace_name": "shop",
        "pod_id": "3f1c0a52-9d4e-4c7b-8a51-0a6a1f3c2b11",
        "host": "node-a",
        "container_name": "app",
        "container_image": "registry.example/shop/web:1.4",
        "container_id": "containerd://" + "ab" * 32,
        "labels": {"app.kubernetes.io/name": "web", "pod-template-hash": "7c9f"},
        "annotations": {"elastic.co/dataset": "shop.web", "note": "tab\there"},
        "ownerReferences": [{"kind": "ReplicaSet", "name": "web-7c9f"}],
    },
]
_TAGS = ["kube.shop.web-1.app", "kube.var.log.containers.web-1_shop_app-" + "0" * 64 + ".log"]
_TAGS += ["node.kubelet", "node.syslog", "audit", "custom"]

_json_keys = st.sampled_from(
    [
        *("msg", "message", "level", "severity", "log.level", "error", "err", "stack"),
        *("stack_trace", "stacktrace", "user", "n", "a.b", "ts", "é", ""),
    ]
)
_json_scalars = st.one_of(
    st.text(max_size=12),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([True, False, None, 10, 30, 60, 0, -0.0, 1e16, 1e-5, 2.5]),
)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(
            st.tuples(
                st.sampled_from(["message", "msg", "type", "kind", "name", "code", "stack", "x"]),
                inner,
            ),
            max_size=4,
        ).map(dict),
    ),
    max_leaves=8,
)


@st.composite
def json_lines(draw: st.DrawFn) -> str:
    """A JSON object as text, duplicate keys possible (written by hand, not by a dict)."""
    pairs = draw(st.lists(st.tuples(_json_keys, _json_values), max_size=7))
    ascii_ = draw(st.booleans())
    body = ",".join(
        json.dumps(k, ensure_ascii=ascii_) + ":" + json.dumps(v, ensure_ascii=ascii_)
        for k, v in pairs
    )
    text = "{" + body + "}"
    if draw(st.integers(0, 9)) == 0:
        text = text.replace(":", ": ", 1) + " "
    if draw(st.integers(0, 9)) == 0:
        text = text + draw(st.sampled_from(["\n", "\r\n", "x", "}"]))
    return text


_lines = st.one_of(
    st.text(max_size=80),
    json_lines(),
    json_lines(),
    st.sampled_from(
        [
            "",
            "\n",
            "plain line\n",
            "crlf line\r\n",
            'GET /x?q="1" 200\\n',
            '{"message": "json", "level": "warn", "user": {"id": 7}}',
            '{"msg": broken',
            "{not json}\n",
            "\x00\x1f\x7f \u2028 \ue000 \ue001 11806310474565 0abcdef12345",
            "2026-12-03T10:00:00.123Z kubelet says hi",
        ]
    ),
)


@st.composite
def entries(draw: st.DrawFn) -> bytes:
    """One ``[time, record]`` entry as an agent (or a foreign sender) packs it."""
    pick = draw(st.integers(0, 9))
    if pick < 7:
        seconds = draw(st.sampled_from([0, 1_700_000_000, 1_800_000_000, 2**32 - 1]))
        when: Any = msgpack.ExtType(0, struct.pack(">II", seconds, draw(st.integers(0, 10**9 + 5))))
    else:
        when = draw(st.sampled_from([1_700_000_000, -1, 2**62, 1.5]))
    record: dict[str, Any] = {}
    if draw(st.integers(0, 9)):
        record["log"] = draw(_lines)
    else:
        record["log"] = draw(st.sampled_from([b"bytes log\n", 7, None]))
    if draw(st.booleans()):
        record["stream"] = draw(st.sampled_from(["stdout", "stderr", ""]))
    pod = draw(st.sampled_from(_PODS))
    if pod is not None:
        record["kubernetes"] = pod
    if draw(st.integers(0, 9)):
        kh: dict[str, Any] = {"file": "/var/log/containers/web-1_shop_app-x.log"}
        kh["file_id"] = draw(st.sampled_from(["ino:1:2:ab", "ino:9:9:cd", ""]))
        if draw(st.integers(0, 9)):
            kh["offset"] = draw(st.sampled_from([0, 1, 4096, 2**40, 2**63 - 1, 2**63, -5]))
        if draw(st.integers(0, 4)) == 0:
            kh["flags"] = draw(st.sampled_from([["partial"], ["truncated", "invalid_utf8"]]))
        if draw(st.integers(0, 6)) == 0:
            kh["raw"] = b"caf\xe9\n"
        if draw(st.integers(0, 4)) == 0:
            kh["owner"] = draw(st.sampled_from(["Deployment/web", {"kind": "Job", "name": "j"}]))
        record["kloghub"] = kh
    if draw(st.integers(0, 6)) == 0:
        record["level"] = "info"  # Fluent Bit's Merge_Log keys
    return msgpack.packb([when, record], use_bin_type=True)


_NORMALIZERS = [
    config.NormalizerConfig(),
    config.NormalizerConfig(parse_json=False, namespace="prod"),
    config.NormalizerConfig(preserve_original=True),
    config.NormalizerConfig(dedot=False, json_target="app"),
]
_ORIGINS = [
    core.Origin(method="none"),
    core.Origin(method="certificate", identity="node-a", node="node-a", roles=frozenset({"agent"})),
    core.Origin(method="password", identity="fb", claimed_host="edge-1"),
]


# ---------------------------------------------------------------------------- the two paths


def _frames(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        length, _ = _FRAME.unpack_from(data, pos)
        out.append(data[pos : pos + _FRAME.size + length])
        pos += _FRAME.size + length
    return out


def _python_frames(
    normalizer: normalize.Normalizer,
    origin: core.Origin,
    tag: str,
    data: bytes,
    encode: Any = sinks.bulk_encode,
) -> list[bytes]:
    """The specification: decode, normalize, encode (``_bulk`` lines by default), frame —
    one entry at a time (to tell which frame is whose)."""
    encoder = _segment.WireEncoder(encode)
    frames = []
    for events in transport.protocol.packed_slices(tag, data, 1):
        (doc,) = (normalizer(event, origin) for event in events)
        frames.append(encoder.encode([doc])[0])
    return frames


def _fast_frames(
    normalizer: normalize.Normalizer,
    origin: core.Origin,
    tag: str,
    data: bytes,
    slice_bytes: int,
    encode: Any = sinks.bulk_encode,
) -> tuple[list[bytes], int]:
    """The kernel's frames, then the Python path's frames of what it handed back; and how
    many records the kernel took."""
    path = _fastpath.FastPath(normalizer, [], True)
    path._encode = encode
    encoder = _segment.WireEncoder(encode)
    out: list[bytes] = []
    taken = 0
    start = 0
    while start < len(data):
        path._origin = origin
        frames, records, end, others = path._kernel.encode(
            tag, data, start, slice_bytes, normalizer.ingested().encode(), path._scope(origin)
        )
        assert end > start
        taken += records
        out += _frames(frames)
        for first, last in others:
            for events in transport.protocol.packed_slices(tag, data[first:last], 1):
                out.append(encoder.encode([normalizer(event, origin) for event in events])[0])
        start = end
    return out, taken


def _reordered(spec: list[bytes], fast_first: list[int]) -> list[bytes]:
    rest = [f for i, f in enumerate(spec) if i not in set(fast_first)]
    return [spec[i] for i in fast_first] + rest


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(entries(), min_size=1, max_size=12),
    st.sampled_from(_TAGS),
    st.integers(0, len(_NORMALIZERS) - 1),
    st.sampled_from(_ORIGINS),
    st.sampled_from([1, 200, 1 << 20]),
    st.sampled_from([sinks.bulk_encode, outputs.encode_document]),
)
def test_the_kernel_writes_the_frames_of_the_python_path(
    items: list[bytes], tag: str, which: int, origin: core.Origin, slice_bytes: int, encode: Any
) -> None:
    data = b"".join(items)
    cfg = _NORMALIZERS[which]
    with mock.patch("time.time_ns", return_value=_NOW):
        spec = _python_frames(normalize.Normalizer(cfg), origin, tag, data, encode)
        fast, taken = _fast_frames(
            normalize.Normalizer(cfg), origin, tag, data, slice_bytes, encode
        )
    assert len(fast) == len(spec)
    # The kernel's frames come first in each slice: compare as the multiset they are,
    # then check that what the kernel took is what the spec wrote for those entries.
    assert sorted(fast) == sorted(spec)
    assert taken <= len(spec)


def test_the_kernel_takes_the_records_of_the_agent_layout() -> None:
    """Agent records of one container, plain and JSON lines: every one through the kernel
    except the line serde_json cannot read."""
    pod = _PODS[2]
    items = []
    for i in range(50):
        kh = {"file": "/var/log/pods/x/0.log", "file_id": "ino:1:2:ab", "offset": 100 * i}
        line = f"line {i}\n" if i % 5 else f'{{"msg": "j{i}", "level": 30, "n": {i}}}\n'
        if i == 7:
            line = '{"broken": \n'
        items.append(
            msgpack.packb(
                [
                    msgpack.ExtType(0, struct.pack(">II", 1_800_000_000 + i, i)),
                    {"log": line, "stream": "stdout", "kubernetes": pod, "kloghub": kh},
                ],
                use_bin_type=True,
            )
        )
    data = b"".join(items)
    origin = _ORIGINS[1]
    with mock.patch("time.time_ns", return_value=_NOW):
        spec = _python_frames(
            normalize.Normalizer(config.NormalizerConfig()), origin, "kube.shop.web.app", data
        )
        fast, taken = _fast_frames(
            normalize.Normalizer(config.NormalizerConfig()),
            origin,
            "kube.shop.web.app",
            data,
            1 << 20,
        )
    assert taken == 49
    assert fast == _reordered(spec, [i for i in range(50) if i != 7])


# ---------------------------------------------------------------------------- through queues


async def _stored(queue: Any) -> list[bytes]:
    batch = await queue.pop(100_000, 1 << 30, 0.2)
    out = [e.record.data for e in batch.events]
    batch.settle()
    return out


async def test_fast_path_stores_what_the_router_stores(tmp_path: Path) -> None:
    normalizer = normalize.Normalizer(config.NormalizerConfig())
    qa = make_queue(
        tmp_path / "a", 64 << 20, name="a", encode=sinks.bulk_encode, codec=sinks.BULK_CODEC
    )
    qb = make_queue(
        tmp_path / "b", 64 << 20, name="b", encode=sinks.bulk_encode, codec=sinks.BULK_CODEC
    )
    for q in (qa, qb):
        await q.start()
    assert _fastpath.FastPath.applies([qa], None)
    tag = "kube.shop.web.app"
    data = b"".join(
        msgpack.packb(
            [1_800_000_000 + i, {"log": f"l{i}", "kloghub": {"file_id": "f", "offset": i}}]
        )
        for i in range(300)
    )
    origin = _ORIGINS[0]
    compiled = {"path": "compiled"}
    before = runtime.metrics.REGISTRY.get_sample_value(_KERNEL_RECORDS, compiled) or 0
    with mock.patch("time.time_ns", return_value=_NOW):
        count = await _fastpath.FastPath(normalizer, [qa], True).deliver(tag, data, origin)
    assert runtime.metrics.REGISTRY.get_sample_value(_KERNEL_RECORDS, compiled) == before + 300
    with mock.patch("time.time_ns", return_value=_NOW):
        events = next(transport.protocol.packed_slices(tag, data, 1 << 20))
        await _app._Router(normalize.Normalizer(config.NormalizerConfig()), [qb]).deliver(
            core.Batch(events, origin)
        )
    assert count == 300
    assert await _stored(qa) == await _stored(qb)
    for q in (qa, qb):
        await q.stop()


@pytest.mark.parametrize("size", [10, 100_000], ids=["one slice", "many slices"])
async def test_broken_entries_refuse_the_request_and_store_nothing(
    tmp_path: Path, size: int
) -> None:
    normalizer = normalize.Normalizer(config.NormalizerConfig())
    queue = make_queue(tmp_path / "q", name="q", encode=sinks.bulk_encode, codec=sinks.BULK_CODEC)
    await queue.start()
    good = b"".join(
        msgpack.packb([1, {"log": "x" * 20, "kloghub": {"file_id": "f", "offset": i}}])
        for i in range(size)
    )
    with pytest.raises(transport.ProtocolError):
        await _fastpath.FastPath(normalizer, [queue], True).deliver(
            "kube.a.b.c", good + b"\x92\xc1", _ORIGINS[0]
        )
    assert await _stored(queue) == []
    await queue.stop()


def test_the_fast_path_is_left_out_where_its_documents_would_be_wrong(tmp_path: Path) -> None:
    bulk = make_queue(
        tmp_path / "a", 64 << 20, name="a", encode=sinks.bulk_encode, codec=sinks.BULK_CODEC
    )
    events = make_queue(tmp_path / "b", name="b")
    assert _fastpath.FastPath.applies([bulk], None)
    assert not _fastpath.FastPath.applies([bulk, events], None)
    assert not _fastpath.FastPath.applies([], None)
    with mock.patch.dict("os.environ", {"KLOGHUB_KERNELS": "python"}):
        assert not _fastpath.FastPath.applies([bulk], None)


async def test_pods_stay_known_to_the_detections_after_the_metadata_cache_empties(
    tmp_path: Path,
) -> None:
    """The detection stage joins alerts with ``Normalizer.pod``, which learns pods from
    the documents made; the compiled path makes one template per shape, so when the cache
    empties (at its bound) the templates go too and the next records teach it again."""
    normalizer = normalize.Normalizer(config.NormalizerConfig())
    queue = make_queue(tmp_path / "q", name="q", encode=sinks.bulk_encode, codec=sinks.BULK_CODEC)
    await queue.start()
    path = _fastpath.FastPath(normalizer, [queue], True)
    kh = {"file_id": "f", "offset": 1}
    data = msgpack.packb([1, {"log": "x", "kubernetes": _PODS[2], "kloghub": kh}])
    await path.deliver("kube.shop.web.app", data, _ORIGINS[0])
    assert normalizer.pod("shop", "web-7c9f-abcde") is not None
    normalizer._meta._pods.clear()  # what emptying the cache at its bound does
    normalizer._meta._entries.clear()
    normalizer._meta._last = None
    normalizer._meta.generation += 1
    await path.deliver("kube.shop.web.app", data, _ORIGINS[0])
    assert normalizer.pod("shop", "web-7c9f-abcde") is not None
    await queue.stop()
