"""Translation of the query tree: parameters for SQL, clauses for the query DSL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kloghub import search, store
from tests.normalize import _audit_fields as af
from tests.search import _docs

NOW = 1_795_759_200 * 1_000_000_000


def _walk_keys(value):
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _walk_keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk_keys(item)


HOSTILE = [
    "x' OR '1'='1",
    '"x\\" OR 1=1 --"',
    '"x); DROP TABLE events; --"',
    "user:x\\);DROP\\ TABLE\\ events;--",
    'pod:"a\\" OR \\"1"',
    'user:"\'; DELETE FROM events; --"',
    'NEAR(a b) "x" OR "y"',
    "level:*]*[",
]


@pytest.mark.parametrize("query", HOSTILE)
def test_sql_carries_user_text_only_in_parameters(query):
    """If this failed, a crafted query could run SQL of its own against the store."""
    tree = search.parse(query)
    sql, params = search.to_sql(tree, NOW)
    for fragment in ("'1'='1", "DROP", "DELETE", "NEAR", "1=1"):
        assert fragment not in sql
    assert sql.count("?") == len(params)


@pytest.mark.parametrize("query", HOSTILE)
def test_hostile_queries_run_on_the_store_and_change_nothing(query, incident_store: Path):
    """If this failed, a crafted query could break or alter the store it searches."""
    with store.Store.open(incident_store) as db:
        sql, params = search.to_sql(search.parse(query), NOW)
        db.select(sql, params)
        assert db.count() == len(_docs.load())


@pytest.mark.parametrize("query", [*HOSTILE, "a OR b", "pod:web-* -level:info", "time*"])
def test_dsl_never_uses_query_string(query):
    """If this failed, user text would be parsed by Elasticsearch's own query syntax."""
    body = search.to_dsl(search.parse(query), NOW)
    keys = set(_walk_keys(body))
    assert not keys & {"query_string", "simple_query_string", "script"}


def test_dsl_clauses_for_each_form():
    """If this failed, a form of the language would ask Elasticsearch the wrong question."""

    def dsl(query: str):
        return search.to_dsl(search.parse(query), NOW)

    assert dsl("level:error") == {"term": {"log.level": {"value": "error"}}}
    assert dsl(r"pod:web-*\?") == {"wildcard": {"kubernetes.pod.name": {"value": "web-*\\?"}}}
    assert dsl("pod:*") == {"exists": {"field": "kubernetes.pod.name"}}
    assert dsl('"connection refused"') == {
        "match_phrase": {"message": {"query": "connection refused"}}
    }
    assert dsl("Time*") == {"prefix": {"message": {"value": "time"}}}
    assert dsl("timed-ou*")["match_phrase_prefix"]["message"]["query"] == "timed-ou"
    assert dsl("NOT a") == {"bool": {"must_not": [{"match_phrase": {"message": {"query": "a"}}}]}}
    assert dsl("a OR b")["bool"]["minimum_should_match"] == 1
    assert dsl("@timestamp:[now-1h TO now}") == {
        "range": {
            "@timestamp": {
                "format": "strict_date_optional_time_nanos",
                "gte": "2026-11-27T05:00:00.000000000Z",
                "lt": "2026-11-27T06:00:00.000000000Z",
            }
        }
    }


def test_page_request_continues_after_ties_without_repeating_them():
    """If this failed, paging through Elasticsearch would skip or repeat documents that share
    a timestamp."""
    after = [
        search.Hit("a", NOW, {}),
        search.Hit("b", NOW, {}),
    ]
    body = search.request_body(search.All(), NOW, newest_first=True, size=10, after=after)
    assert body["sort"][0]["@timestamp"]["order"] == "desc"
    bool_ = body["query"]["bool"]
    assert bool_["must_not"] == [{"ids": {"values": ["a", "b"]}}]
    assert bool_["filter"][1]["range"]["@timestamp"]["lte"] == "2026-11-27T06:00:00.000000000Z"
    json.dumps(body)  # plain JSON, no objects the client would have to guess about


def _escaped(value: object, wildcard: bool) -> str:
    text = "true" if value is True else "false" if value is False else str(value)
    return "".join(c if c.isalnum() or (wildcard and c == "*") else "\\" + c for c in text)


def test_fields_through_lists_and_dotted_keys_are_found_as_elasticsearch_finds_them(
    tmp_path: Path,
):
    """Every detection field query of tests/normalize/_audit_fields.py, on the real audit
    events of tests/fixtures/kube-audit/risky.log, finds in the store exactly what it finds
    in Elasticsearch and OpenSearch (test_servers.py proves those equal ``af.expected``):
    lists on the way fan out (spec.containers.image, rules.verbs, subjects.name) and the
    apiserver's dotted user.extra key is found at its dotted path; if this failed, a
    responder's query would find the privileged pod or the wildcard role in the SIEM but
    not in the embedded store."""
    docs = af.documents(af.risky_lines(), "default")
    with store.Store.open(tmp_path / "store.db") as db:
        db.add([(e.record["id"], e.time_ns, e.record["doc"]) for e in docs])

        def ids(query: str) -> set[str]:
            sql, params = search.to_sql(search.parse(query), NOW)
            return {row.id for row in db.select(sql, params)}

        for name, query in af.QUERIES.items():
            wildcard = name in af.WILDCARDS
            text = " AND ".join(
                f"{af.AUDIT}{field}:{_escaped(value, wildcard)}"
                for field, value in query.terms.items()
            )
            wanted = af.expected(docs, name)
            assert wanted and ids(text) == wanted, (name, text)
        field = af.AUDIT + "user.extra.authentication.kubernetes.io/pod-name"
        bound = af.expected(docs, "a token bound to a pod")
        assert ids(f"{field}:ca*") == ids(f"{field}:*") == bound
        assert ids(f"NOT {field}:*") == {e.record["id"] for e in docs} - bound
        assert not ids(f"{field}:web")
        containers = af.AUDIT + "requestObject.spec.containers.image"
        assert ids(f"NOT {containers}:*") == {e.record["id"] for e in docs} - ids(f"{containers}:*")
