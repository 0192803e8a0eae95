"""The entry layout: what the reference encoder writes is today's event record, byte-exact."""

from __future__ import annotations

import io
from typing import Any

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from kloghub import kernels, parse
from tests.kernels import _wave1

_PATH = "/var/log/pods/shop_orders-5f6d_0d1e/orders/0.log"
_K8S = {
    "pod_name": "orders-5f6d",
    "namespace_name": "shop",
    "labels": {"app": "orders", "tier": "backend"},
    "container_image": "registry.example/orders:1.2",
}
_OWNER = {"kind": "Deployment", "name": "orders"}


def _ext_hook(code: int, data: bytes) -> Any:
    assert code == 0
    seconds, nanos = int.from_bytes(data[:4], "big"), int.from_bytes(data[4:], "big")
    return ("event_time", seconds * 1_000_000_000 + nanos)


def _today(records, k8s, owner, hint, path=_PATH, file_id="f-1"):
    """The events wave 1's sources/_logs.py built for these records, as (time_ns, record)."""
    return _wave1.events(path, file_id, records, k8s, owner, hint)


_texts = st.text(max_size=40)
_records = st.builds(
    parse.Record,
    st.integers(0, 4_294_967_295 * 1_000_000_000 + 999_999_999),
    st.sampled_from(["stdout", "stderr", ""]),
    _texts,
    st.one_of(st.none(), st.binary(max_size=20)),
    st.integers(0, 31),
    st.integers(0, 2**64 - 1),
)


@settings(max_examples=300, deadline=None)
@given(
    records=st.lists(_records, max_size=8),
    k8s=st.sampled_from([None, {}, _K8S]),
    owner=st.sampled_from([None, _OWNER]),
    hint=st.sampled_from([None, "json", ""]),
)
def test_reference_entries_decode_to_the_records_the_source_builds_today(records, k8s, owner, hint):
    """The agent's events would change shape downstream (ECS, sinks, store) if it failed."""
    if k8s is None:
        owner = None  # an owner comes with pod metadata only (the source drops it without)
    ctx = kernels.EntryContext(_PATH, "f-1", k8s, owner, hint)
    data = kernels.encode_records(records, ctx)
    unpacked = list(msgpack.Unpacker(io.BytesIO(data), raw=False, ext_hook=_ext_hook))
    expected = _today(records, k8s, owner, hint)
    assert [(t[1], rec) for t, rec in unpacked] == expected
    assert all(t[0] == "event_time" for t, _ in unpacked)
    assert kernels.decode_entries(data) == expected


@given(records=st.lists(_records, max_size=4), k8s=st.sampled_from([None, _K8S]))
def test_reference_entries_are_the_smallest_msgpack_forms(records, k8s):
    """Entries would be bigger on the wire (and differ from the native kernel's) if it failed."""
    ctx = kernels.EntryContext(_PATH, "f-1", k8s, _OWNER, "json")
    data = kernels.encode_records(records, ctx)
    packer = msgpack.Packer(use_bin_type=True)
    again = b"".join(
        b"\x92\xd7\x00"
        + (t // 1_000_000_000).to_bytes(4, "big")
        + (t % 1_000_000_000).to_bytes(4, "big")
        + packer.pack(rec)
        for t, rec in kernels.decode_entries(data)
    )
    assert data == again


def test_times_outside_event_time_go_as_integer_seconds():
    """Records from before 1970 or after 2106 would be unencodable if it failed."""
    ctx = kernels.EntryContext(_PATH, "f-1", None, None, None)
    records = [
        parse.Record(-1, "stdout", "before", None, 0, 7),
        parse.Record(2**32 * 1_000_000_000, "stdout", "after", None, 0, 9),
    ]
    data = kernels.encode_records(records, ctx)
    assert data.startswith(b"\x92\xff")  # -1 second, a negative fixint
    decoded = kernels.decode_entries(data)
    assert [t for t, _ in decoded] == [-1_000_000_000, 2**32 * 1_000_000_000]


def test_undecodable_path_bytes_travel_as_they_are_on_disk():
    """A file whose name is not UTF-8 (os.fsdecode surrogates) would break encoding if it failed."""
    path = b"/var/log/\xff.log".decode("utf-8", "surrogateescape")
    ctx = kernels.EntryContext(path, "f-1", None, None, None)
    data = kernels.encode_records([parse.Record(0, "stdout", "x", None, 0, 2)], ctx)
    assert b"/var/log/\xff.log" in data
    assert kernels.decode_entries(data)[0][1]["kloghub"]["file"] == path
