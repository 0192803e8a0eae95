"""The Forward protocol codec: event modes, EventTime, options, handshake digests, limits."""

from __future__ import annotations

import gzip
import hashlib
import struct

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kloghub import core
from kloghub.transport import protocol

NS = 1_700_000_000_123_456_789


def decode_all(data: bytes, max_frame: int = 1 << 20) -> list[protocol.Request | None]:
    decoder = protocol.StreamDecoder(max_frame)
    decoder.feed(data)
    requests = [protocol.decode_request(v, n, max_frame) for v, n in decoder.frames()]
    for request in requests:
        if request is not None:
            request.events  # noqa: B018 - decodes the entries, which may raise
    return requests


def only(data: bytes) -> protocol.Request:
    [request] = decode_all(data)
    assert request is not None
    return request


def event_time(ns: int) -> msgpack.ExtType:
    return msgpack.ExtType(0, struct.pack(">II", *divmod(ns, 1_000_000_000)))


def packed(entries: list[list[object]]) -> bytes:
    return b"".join(msgpack.packb(e, use_bin_type=True) for e in entries)


def test_event_time_is_ext_type_0_with_seconds_and_nanoseconds():
    """If this failed, Fluentd and Fluent Bit would read wrong times from kloghub."""
    packer = protocol.new_packer()
    entry = protocol.pack_entry(packer, NS, {"log": "x"})
    assert entry[:2] == b"\x92\xd7" and entry[2] == 0
    assert struct.unpack(">II", entry[3:11]) == (1_700_000_000, 123_456_789)
    assert msgpack.unpackb(entry, raw=False)[0] == event_time(NS)


def test_message_mode_keeps_nanoseconds_and_types():
    """If this failed, fluent-logger events would lose their time or their bin values."""
    data = msgpack.packb(
        ["app.x", event_time(NS), {"log": "héllo", "raw": b"\xff\x00"}], use_bin_type=True
    )
    request = only(data)
    assert request.mode == "message"
    [event] = request.events
    assert (event.tag, event.time_ns) == ("app.x", NS)
    assert event.record == {"log": "héllo", "raw": b"\xff\x00"}
    assert request.chunk is None


@pytest.mark.parametrize(
    ("wire_time", "expected"),
    [
        (1_700_000_000, 1_700_000_000_000_000_000),
        (1_700_000_000.5, 1_700_000_000_500_000_000),
        ([event_time(NS), {"meta": 1}], NS),
    ],
)
def test_integer_float_and_metadata_times_are_accepted(wire_time, expected):
    """If this failed, Fluentd v0.12 clients or Fluent Bit's metadata form would be refused."""
    data = msgpack.packb(["t", [[wire_time, {"a": 1}]]], use_bin_type=True)
    assert only(data).events[0].time_ns == expected


def test_forward_mode_decodes_every_entry_with_its_chunk():
    """If this failed, Fluentd's Forward mode requests would lose events or their ack."""
    data = msgpack.packb(
        [
            "kube.ns.pod.c",
            [[event_time(NS + i), {"log": f"l{i}"}] for i in range(3)],
            {"chunk": "abc=", "size": 3},
        ],
        use_bin_type=True,
    )
    request = only(data)
    assert request.mode == "forward"
    assert [(e.time_ns, e.record["log"]) for e in request.events] == [
        (NS, "l0"),
        (NS + 1, "l1"),
        (NS + 2, "l2"),
    ]
    assert (request.chunk, request.size_option) == ("abc=", 3)


@pytest.mark.parametrize("as_str", [False, True])
def test_packed_forward_accepts_bin_and_str_entries(as_str):
    """If this failed, Fluentd's out_forward (which sends entries as str) could not feed us."""
    entries = packed([[event_time(NS), {"log": "a"}], [event_time(NS + 1), {"log": "b"}]])
    data = msgpack.packb(["t", entries, {"chunk": "id"}], use_bin_type=not as_str)
    request = only(data)
    assert request.mode == "packed_forward"
    assert [e.record["log"] for e in request.events] == ["a", "b"]
    assert [e.time_ns for e in request.events] == [NS, NS + 1]


def test_compressed_packed_forward_reads_several_gzip_members():
    """If this failed, a client that appends gzip members per flush would be refused."""
    first = packed([[event_time(NS), {"log": "a"}]])
    second = packed([[event_time(NS + 5), {"log": "b"}]])
    body = gzip.compress(first) + gzip.compress(second)
    data = msgpack.packb(["t", body, {"compressed": "gzip", "chunk": "c"}], use_bin_type=True)
    request = only(data)
    assert request.mode == "compressed_packed_forward"
    assert [(e.time_ns, e.record["log"]) for e in request.events] == [(NS, "a"), (NS + 5, "b")]


def test_decompressed_entries_are_held_to_the_frame_limit():
    """If this failed, a 64 KiB gzip bomb could make the collector allocate gigabytes."""
    bomb = gzip.compress(b"\x00" * (10 << 20))
    data = msgpack.packb(["t", bomb, {"compressed": "gzip"}], use_bin_type=True)
    with pytest.raises(protocol.FrameTooLargeError):
        decode_all(data, max_frame=1 << 20)


def test_invalid_utf8_in_strings_is_replaced_not_fatal():
    """If this failed, one bad byte in a log line would break the connection or the JSON."""
    record = b"\x81\xa3log\xa3a\xffb"  # {"log": "a\xffb"} with a raw str
    entries = b"\x92\xd7\x00" + struct.pack(">II", 1, 2) + record
    message = b"\x93\xa1t\xd7\x00" + struct.pack(">II", 1, 2) + record
    for data in (msgpack.packb(["t", entries], use_bin_type=True), message):
        assert only(data).events[0].record == {"log": "a\ufffdb"}


def test_keepalive_nil_is_not_a_request():
    """If this failed, Fluent Bit's keepalive would be taken for a malformed request."""
    assert decode_all(b"\xc0") == [None]


def test_ack_echoes_the_chunk_id():
    """If this failed, clients would never see their chunks acknowledged."""
    assert msgpack.unpackb(protocol.encode_ack("p8n9gmxT=="), raw=False) == {"ack": "p8n9gmxT=="}
    assert protocol.parse_ack({"ack": "x"}) == "x"
    assert protocol.parse_ack(["HELO", {}]) is None


def test_chunk_ids_are_base64_of_16_random_bytes():
    """If this failed, chunk ids would collide or not be what Fluentd expects."""
    ids = {protocol.new_chunk_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(len(i) == 24 and i.endswith("==") for i in ids)


def test_handshake_digests_follow_the_specification():
    """If this failed, Fluentd and Fluent Bit would refuse our handshake and we theirs."""
    expected = hashlib.sha512(b"salt" + b"host" + b"nonce" + b"key").hexdigest()
    assert protocol.shared_key_digest("salt", "host", b"nonce", "key") == expected
    password = hashlib.sha512(b"auth" + b"user" + b"pw").hexdigest()
    assert protocol.password_digest(b"auth", "user", "pw") == password
    ping = protocol.parse_ping(msgpack.unpackb(protocol.encode_ping("h", "s", "d", "u", "p")))
    assert ping == protocol.Ping("h", b"s", "d", "u", "p")
    helo = protocol.parse_helo(msgpack.unpackb(protocol.encode_helo(b"\x01" * 16, b"")))
    assert helo.nonce == b"\x01" * 16 and helo.auth_salt == b""


def test_streaming_decoder_reassembles_frames_split_anywhere():
    """If this failed, requests split across TCP reads would be lost or misread."""
    frames = [
        msgpack.packb(["t", [[i, {"n": i}]], {"chunk": str(i)}], use_bin_type=True)
        for i in range(5)
    ]
    stream = b"".join(frames)
    decoder = protocol.StreamDecoder(1 << 20)
    got = []
    for i in range(0, len(stream), 7):
        decoder.feed(stream[i : i + 7])
        got.extend(decoder.frames())
    assert [size for _, size in got] == [len(f) for f in frames]
    assert decoder.pending == 0


def test_streaming_decoder_refuses_a_frame_over_the_limit_while_it_arrives():
    """If this failed, a client could make the collector buffer an unbounded frame."""
    decoder = protocol.StreamDecoder(64 * 1024)
    decoder.feed(b"\x93\xa1t\xc6" + struct.pack(">I", 100 << 20))
    with pytest.raises(protocol.FrameTooLargeError):
        for _ in range(10):
            decoder.feed(b"x" * 16 * 1024)
            list(decoder.frames())


@pytest.mark.parametrize(
    "value",
    [
        42,
        "text",
        [],
        [1, 2],
        ["t"],
        ["t", 1],
        ["t", 1, "not a map"],
        ["t", [[1]]],
        ["t", [["x", {}]]],
        ["t", [1, {}], {"chunk": 5}],
        ["t", b"\x92\x01", {}],
        ["t", b"\x92\x01\x02"],
        ["t", b"junk", {"compressed": "gzip"}],
        ["t", b"", {"compressed": "zstd"}],
        ["t", [[1, {}]], "not a map"],
        ["t", [[1, {}]], {"fluent_signal": 1}],
        ["t", [[float("nan"), {}]]],
    ],
)
def test_requests_that_break_the_protocol_raise_protocol_error(value):
    """If this failed, malformed requests would crash the connection task or be stored."""
    data = msgpack.packb(value, use_bin_type=True)
    with pytest.raises(protocol.ProtocolError):
        decode_all(data)


def test_event_time_round_trips_through_forward_encoders():
    """If this failed, kloghub's own Message and Forward encoders would drop nanoseconds."""
    events = [core.Event("t", NS + i, {"i": i}) for i in range(3)]
    assert only(protocol.encode_message("t", NS, {"a": 1})).events[0].time_ns == NS
    assert [e.time_ns for e in only(protocol.encode_forward("t", events)).events] == [
        NS,
        NS + 1,
        NS + 2,
    ]


# --------------------------------------------------------------------------- fuzz

_records = st.dictionaries(
    st.text(max_size=8),
    st.one_of(st.text(max_size=20), st.binary(max_size=20), st.integers(-(2**63), 2**63 - 1)),
    max_size=4,
)


@st.composite
def _valid_frames(draw: st.DrawFn) -> bytes:
    tag = draw(st.text(min_size=1, max_size=10))
    entries = draw(st.lists(st.tuples(st.integers(0, 2**40), _records), max_size=5))
    mode = draw(st.sampled_from(["message", "forward", "packed", "compressed"]))
    option = {"chunk": protocol.new_chunk_id(), "size": len(entries)}
    if mode == "message":
        return protocol.encode_message(tag, NS, entries[0][1] if entries else {}, "c")
    pairs = [[event_time(ns), record] for ns, record in entries]
    if mode == "forward":
        return msgpack.packb([tag, pairs, option], use_bin_type=True)
    body = packed(pairs)
    if mode == "compressed":
        body = gzip.compress(body)
        option["compressed"] = "gzip"
    return msgpack.packb([tag, body, option], use_bin_type=True)


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(b"".join(draw(st.lists(_valid_frames(), min_size=1, max_size=3))))
    for _ in range(draw(st.integers(1, 6))):
        action = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        if action == "flip" and data:
            data[position] = draw(st.integers(0, 255))
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif action == "delete" and data:
            del data[position : position + draw(st.integers(1, 8))]
        elif action == "truncate":
            del data[position:]
    return bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(st.binary(max_size=512), _mutated()), split=st.integers(1, 64))
def test_decoder_fuzz_raises_nothing_but_protocol_error(data, split):
    """If this failed, some byte sequence could crash the collector's connection handling."""
    decoder = protocol.StreamDecoder(64 * 1024)
    try:
        for i in range(0, len(data), split):
            decoder.feed(data[i : i + split])
            for value, size in decoder.frames():
                request = protocol.decode_request(value, size, 64 * 1024)
                if request is not None:
                    for event in request.events:
                        assert isinstance(event.time_ns, int)
                        assert type(event.record) is dict
    except protocol.ProtocolError:
        pass
