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


def test_a_key_that_holds_dots_is_found_as_elasticsearch_finds_it(tmp_path: Path):
    """The apiserver's user.extra key authentication.kubernetes.io/pod-name, kept dotted
    (real audit events, tests/fixtures/kube-audit/risky.log), is found in the store by the
    field path Elastic's rules and Elasticsearch use, only where it holds the value, and
    NOT keeps the others; if this failed, the same query would find the pod-bound token's
    requests in the SIEM but not in the embedded store."""
    docs = af.documents(af.risky_lines(), "default")
    field = "kubernetes.audit.user.extra.authentication.kubernetes.io/pod-name"
    wanted = af.expected(docs, "a token bound to a pod")  # pod-name "caps"
    assert wanted
    with store.Store.open(tmp_path / "store.db") as db:
        db.add([(e.record["id"], e.time_ns, e.record["doc"]) for e in docs])

        def ids(query: str) -> set[str]:
            sql, params = search.to_sql(search.parse(query), NOW)
            return {row.id for row in db.select(sql, params)}

        assert ids(f"{field}:caps") == wanted
        assert ids(f"{field}:ca*") == wanted
        assert ids(f"{field}:*") == wanted  # the only request with a pod-bound token
        assert not ids(f"{field}:web")
        assert ids(f"NOT {field}:*") == {e.record["id"] for e in docs} - wanted
