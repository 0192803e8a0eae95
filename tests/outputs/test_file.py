"""The file: output writes NDJSON and acknowledges only what it wrote."""

import orjson

from kloghub import core, outputs


async def test_file_output_writes_records_with_timestamp_and_tag(tmp_path):
    """If this failed, the file: output would lose the event time or the tag."""
    out = outputs.FileOutput(tmp_path / "sub" / "out.ndjson")
    await out.start()
    seen = []
    fin = core.Finalizer(seen.append, count=2)
    await out.send(
        core.Batch(
            [
                core.Event("kube.a.b.c", 1_700_000_000_123_456_789, {"log": "hello"}, fin),
                core.Event("audit", 1_700_000_001_000_000_000, {"log": b"raw \xff"}, fin),
            ]
        )
    )
    await out.stop(5)
    lines = (tmp_path / "sub" / "out.ndjson").read_bytes().splitlines()
    docs = [orjson.loads(line) for line in lines]
    assert docs[0] == {
        "@timestamp": "2023-11-14T22:13:20.123456789Z",
        "tag": "kube.a.b.c",
        "log": "hello",
    }
    assert docs[1]["log"] == "raw \ufffd"
    assert seen == [core.Delivery.DELIVERED]


async def test_file_output_refuses_batches_when_not_running(tmp_path):
    """If this failed, events sent after stop would vanish without an acknowledgement."""
    out = outputs.FileOutput(tmp_path / "out.ndjson")
    try:
        await out.send(core.Batch())
    except RuntimeError as exc:
        assert "not running" in str(exc)
    else:
        raise AssertionError("send before start was accepted")


async def test_file_output_cuts_a_torn_last_line_left_by_a_crash(tmp_path):
    """If this failed, a SIGKILL mid-write would glue half a line to the next record."""
    path = tmp_path / "out.ndjson"
    path.write_bytes(b'{"log": "whole"}\n{"log": "ha')
    out = outputs.FileOutput(path)
    await out.start()
    await out.send(core.Batch([core.Event("t", 0, {"log": "next"})]))
    await out.stop(5)
    docs = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert [d["log"] for d in docs] == ["whole", "next"]
