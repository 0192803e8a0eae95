"""A search on the embedded store, end to end in the library: order, limits, paging,
--follow, progress and the output formats."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path

import pytest

from kloghub import search, store
from kloghub.search import _run
from tests.search import _docs

NS = 1_000_000_000


class Collect:
    """A formatter that keeps what it is given."""

    def __init__(self) -> None:
        self.hits: list[search.Hit] = []
        self.started = self.finished = False

    def start(self) -> None:
        self.started = True

    def write(self, hits) -> None:
        self.hits += hits

    def finish(self) -> None:
        self.finished = True

    @property
    def ids(self) -> list[str]:
        return [hit.id for hit in self.hits]


async def _search(path: Path, **request) -> list[str]:
    request.setdefault("since", _docs.SINCE)
    request.setdefault("until", _docs.UNTIL)
    backend = search.StoreBackend.open(path)
    out = Collect()
    try:
        await search.run(search.Request(**request), backend, out)
    finally:
        await backend.close()
    assert out.started and out.finished
    return out.ids


async def test_limit_keeps_the_newest_matches_printed_oldest_first(incident_store: Path):
    """If this failed, the default search would show stale lines instead of the latest ones,
    or in an order that does not read like a log."""
    assert await _search(incident_store, limit=3) == ["a-node-0001", "c-web-0004", "c-web-0005"]
    assert await _search(incident_store, limit=3, sort="desc") == [
        "c-web-0005",
        "c-web-0004",
        "a-node-0001",
    ]
    assert await _search(incident_store, limit=3, sort="asc") == [
        "c-web-0001",
        "c-web-0002",
        "c-web-0003",
    ]


async def test_shortcuts_and_query_combine(incident_store: Path):
    """If this failed, --namespace/--pod/--container would not narrow the query."""
    ids = await _search(
        incident_store, query="level:error", namespace="pay*", container="app", pod="*-abcde"
    )
    assert ids == ["c-pay-0001", "c-pay-0002"]


async def test_the_default_window_is_the_last_hour(incident_store: Path):
    """If this failed, a search without --since would scan all history (or nothing)."""
    all_ids = {doc_id for doc_id, _t, _d in _docs.load()}
    last = max(t for _i, t, _d in _docs.load())
    backend = search.StoreBackend.open(incident_store)
    try:
        for now, expected in ((last + 50 * 60 * NS, 2), (last + 2 * 3600 * NS, 0)):
            out = Collect()
            await search.run(search.Request(limit=1000), backend, out, clock=lambda n=now: n)
            assert len(out.ids) == expected
            assert set(out.ids) <= all_ids
    finally:
        await backend.close()


QUERIES = ["", "level:error OR refused", "NOT level:*", "health", "pod:payments-*"]


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("sort", [None, "asc", "desc"])
async def test_small_pages_give_the_same_results_as_one_page(
    incident_store: Path, monkeypatch: pytest.MonkeyPatch, query, sort
):
    """If this failed, a search larger than one page would lose or repeat documents,
    in particular ones that share a timestamp."""
    whole = await _search(incident_store, query=query, sort=sort, limit=100)
    monkeypatch.setattr(_run, "_PAGE", 2)
    paged = await _search(incident_store, query=query, sort=sort, limit=100)
    assert paged == whole
    assert len(set(paged)) == len(paged)


def _row(doc_id: str, time_ns: int, message: str, pod: str = "web-1") -> tuple:
    return (
        doc_id,
        time_ns,
        {"message": message, "kubernetes": {"namespace": "shop", "pod": {"name": pod}}},
    )


async def test_follow_prints_new_and_late_matches_once_and_not_the_backlog(tmp_path: Path):
    """If this failed, --follow would miss lines that arrive, print them twice, or flood the
    screen with older matches that --limit had left out."""
    now = 1_795_759_200 * NS
    path = tmp_path / "s.db"
    with store.Store.open(path) as db:
        db.add(_row(f"old-{i}", now - (20 - i) * NS, f"boot {i}") for i in range(10))
    writer = store.Store.open(path)
    backend = search.StoreBackend.open(path)
    out = Collect()
    stop = asyncio.Event()
    clock = [now]
    task = asyncio.create_task(
        search.run(
            search.Request(query="NOT skip", limit=2, follow=True, since="1h"),
            backend,
            out,
            poll_interval=0.02,
            lookback=30,
            clock=lambda: clock[0],
            stop=stop,
        )
    )
    try:
        await asyncio.sleep(0.1)
        assert out.ids == ["old-8", "old-9"]
        writer.add(
            [
                _row("new-1", now + NS, "hello"),
                _row("skip-1", now + NS, "skip"),
                _row("late-1", now - 5 * NS, "late but within the look-back"),
                _row("too-late", now - 60 * NS, "older than the look-back"),
            ]
        )
        await asyncio.sleep(0.1)
        clock[0] = now + 10 * NS
        writer.add([_row("new-2", now + 9 * NS, "world")])
        await asyncio.sleep(0.1)
    finally:
        stop.set()
        written = await asyncio.wait_for(task, 5)
        writer.close()
        await backend.close()
    assert out.ids == ["old-8", "old-9", "late-1", "new-1", "new-2"]
    assert written == 5
    assert out.finished


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_progress_shows_on_a_terminal_only_and_is_cleared(
    incident_store: Path, monkeypatch: pytest.MonkeyPatch
):
    """If this failed, long searches would look hung, or progress would corrupt piped output."""
    monkeypatch.setattr(_run, "_PAGE", 2)
    monkeypatch.setattr(_run, "_PROGRESS_AFTER_S", 0.0)
    backend = search.StoreBackend.open(incident_store)
    try:
        for err, shown in ((FakeTTY(), True), (io.StringIO(), False)):
            await search.run(
                search.Request(since=_docs.SINCE, limit=10), backend, Collect(), err=err
            )
            text = err.getvalue()
            assert ("matches so far" in text) is shown
            assert text.endswith("\r\x1b[K") is shown
    finally:
        await backend.close()


# --------------------------------------------------------------------------- formats


def _hits() -> list[search.Hit]:
    return [search.Hit(i, t, d) for i, t, d in _docs.load()]


def test_table_is_aligned_cut_to_the_width_and_escapes_control_characters():
    """If this failed, the table would overflow the terminal, or a log line could inject
    escape sequences into the responder's terminal."""
    hits = _hits()
    evil = search.Hit("evil", hits[0].time_ns, {"message": "red\x1b[31mALERT\x07\nnext line"})
    out = io.StringIO()
    table = search.make_formatter("table", out, width=140, colour=False)
    table.start()
    table.write([*hits, evil])
    table.finish()
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["TIME", "NAMESPACE", "POD", "CONTAINER", "LEVEL", "MESSAGE"]
    assert all(len(line) <= 140 for line in lines)
    assert any(line.endswith("…") for line in lines)
    assert lines[1].startswith("2026-11-27T06:00:05.120Z  shop")
    assert "\x1b" not in out.getvalue()
    assert "red\\x1b[31mALERT" in lines[-1]
    wide = io.StringIO()
    search.make_formatter("table", wide, width=None).write([evil])
    assert wide.getvalue().endswith("red\\x1b[31mALERT\\x07 ⏎ next line\n")
    audit = next(line for line in lines if "system:anonymous" in line)
    assert "system:anonymous get /api/v1/namespaces/payments/secrets" in audit
    assert "payments" in audit.split()[1]
    message_column = lines[0].index("MESSAGE")
    assert all(line[message_column - 2 : message_column] == "  " for line in lines[1:])


def test_table_colours_only_when_asked():
    """If this failed, colour codes would end up in files and pipes (or never on a TTY)."""
    coloured = io.StringIO()
    table = search.make_formatter("table", coloured, width=None, colour=True)
    table.write(_hits())
    assert "\x1b[31m" in coloured.getvalue()  # errors in red
    plain = io.StringIO()
    search.make_formatter("table", plain, width=None, colour=False).write(_hits())
    assert "\x1b[" not in plain.getvalue()


def test_json_ndjson_and_csv_carry_the_documents():
    """If this failed, scripts reading `kloghub search --format json|ndjson|csv` would break."""
    hits = _hits()
    outputs = {}
    for name in ("json", "ndjson", "csv"):
        out = io.StringIO()
        formatter = search.make_formatter(name, out)
        formatter.start()
        formatter.write(hits[:3])
        formatter.write(hits[3:])
        formatter.finish()
        outputs[name] = out.getvalue()
    assert json.loads(outputs["json"]) == [hit.doc for hit in hits]
    assert [json.loads(line) for line in outputs["ndjson"].splitlines()] == [h.doc for h in hits]
    rows = list(csv.DictReader(io.StringIO(outputs["csv"])))
    assert [row["_id"] for row in rows] == [hit.id for hit in hits]
    assert rows[0]["@timestamp"] == "2026-11-27T06:00:05.120000000Z"
    assert rows[0]["kubernetes.pod.name"] == "web-7d9f4c-x2xkq"
    empty = io.StringIO()
    formatter = search.make_formatter("json", empty)
    formatter.start()
    formatter.finish()
    assert json.loads(empty.getvalue()) == []


def test_csv_defuses_cells_a_spreadsheet_would_run():
    """If this failed, a log line could run a formula on the responder's machine when the
    CSV is opened in a spreadsheet."""
    out = io.StringIO()
    formatter = search.make_formatter("csv", out)
    formatter.start()
    formatter.write([search.Hit("x", 0, {"message": '=HYPERLINK("http://evil","click")'})])
    (row,) = csv.DictReader(io.StringIO(out.getvalue()))
    assert row["message"].startswith("'=")
