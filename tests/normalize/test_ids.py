"""Document ids: the same event always gets the same id, different events never share one."""

from __future__ import annotations

from kloghub import core, normalize


def _record(offset: int, file_id: str = "0123456789abcdef", log: str = "x") -> dict[str, object]:
    return {"log": log, "kloghub": {"file": "/f", "file_id": file_id, "offset": offset}}


def test_kloghub_ids_come_from_the_file_and_offset_only() -> None:
    """A resent record (same file identity and offset) has the same id whatever its tag,
    time or text, and another offset or file a different one; broken, retries would index
    duplicates or distinct lines would overwrite each other."""
    one = normalize.document_id("kube.a.b.c", 1, _record(10))
    assert one == normalize.document_id("kube.x.y.z", 2, _record(10, log="other"))
    assert one != normalize.document_id("kube.a.b.c", 1, _record(11))
    assert one != normalize.document_id("kube.a.b.c", 1, _record(10, file_id="fedcba9876543210"))
    assert len(one) == 24 and one.isascii()


def test_ids_of_one_file_share_a_prefix_and_sort_by_offset() -> None:
    """Ids of a file start alike and grow with the offset; broken, id lookups in Lucene
    (every create checks the id) would be random and slow."""
    ids = [normalize.document_id("t", 0, _record(offset)) for offset in (1, 255, 4096, 2**40)]
    assert len({i[:12] for i in ids}) == 1
    assert ids == sorted(ids)


def test_the_audit_stage_is_part_of_the_id() -> None:
    """The stage makes ids of one line position differ; broken, the stages of one request
    (same auditID) could collapse into one document."""
    base = normalize.document_id("audit", 0, _record(5))
    stages = {
        normalize.document_id("audit", 0, _record(5), s)
        for s in ("ResponseComplete", "Panic", "Odd")
    }
    assert base not in stages and len(stages) == 3


def test_records_without_offsets_hash_tag_time_and_line() -> None:
    """Fluent Bit records (no kloghub block) get a hash of tag, time and line; broken,
    resent chunks from Fluent Bit would be indexed twice."""
    rec = {"log": "hello", "stream": "stdout"}
    one = normalize.document_id("kube.a", 5, rec)
    assert one == normalize.document_id("kube.a", 5, dict(rec))
    assert one != normalize.document_id("kube.a", 6, rec)
    assert one != normalize.document_id("kube.b", 5, rec)
    assert one != normalize.document_id("kube.a", 5, {"log": "hello!"})
    no_log = {"kind": "Event", "auditID": "x"}
    assert normalize.document_id("audit", 1, no_log) == normalize.document_id(
        "audit", 1, dict(no_log)
    )
    bad = {"kloghub": {"file_id": 3, "offset": "x"}, "log": "y"}
    assert normalize.document_id("t", 1, bad).startswith("f")


def test_the_normalizer_uses_these_ids() -> None:
    """The document event carries document_id of its input; broken, the sinks' duplicate
    detection (409 on create) would not protect anything."""
    from kloghub import config

    record = _record(42)
    out = normalize.Normalizer(config.NormalizerConfig())(core.Event("kube.a.b.c", 1, record))
    assert out.record["id"] == normalize.document_id("kube.a.b.c", 1, record)
