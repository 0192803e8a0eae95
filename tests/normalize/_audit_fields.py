"""The audit fields that Kubernetes detection rules query, and those queries on a real server.

:data:`FIELD_TYPES` lists the fields under ``kubernetes.audit`` that the rules of the
field read — Elastic's prebuilt Kubernetes rules (elastic/detection-rules
``rules/integrations/kubernetes``, with the types its ``non-ecs-schema.json`` gives them),
SigmaHQ's and Falco's Kubernetes audit rules, and kloghub's own pack — with the mapping
type such a rule expects: a boolean for ``hostNetwork: true``, a keyword for exact and
wildcard values (``image: quay.io/calico*``), numbers for ids and ports.

:data:`QUERIES` are field queries a security team runs on the audit documents of
:mod:`tests.kube._risky`'s activity (its recorded fixture, or the same activity live).
:func:`check_on_server` indexes the documents into a product with kloghub's templates and
checks that every query finds exactly the documents whose fields hold the values (worked
out here from the documents themselves, with Elasticsearch's path semantics), and that
every field has its type in the index's mapping.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from kloghub import config, core, normalize
from tests.normalize import _fixtures as fx

AUDIT = "kubernetes.audit."
RISKY = fx.FIXTURES / "kube-audit" / "risky.log"

_CONTAINERS = ("containers", "initContainers", "ephemeralContainers")
FIELD_TYPES: dict[str, str] = {
    # Host namespaces, where a PodSpec has them, in what was asked and what was stored.
    **{
        f"{body}.spec.{name}": "boolean"
        for body in ("requestObject", "responseObject")
        for name in ("hostNetwork", "hostPID", "hostIPC")
    },
    "requestObject.spec.serviceAccountName": "keyword",
    "requestObject.spec.automountServiceAccountToken": "boolean",
    "requestObject.spec.nodeName": "keyword",
    "requestObject.spec.securityContext.runAsUser": "long",
    "requestObject.spec.securityContext.runAsNonRoot": "boolean",
    "requestObject.spec.volumes.hostPath.path": "keyword",
    # Every kind of container: images, privilege, capabilities, mounts.
    **{
        f"{body}.spec.{kind}.{field}": kind_type
        for body in ("requestObject", "responseObject")
        for kind in _CONTAINERS
        for field, kind_type in (
            ("image", "keyword"),
            ("securityContext.privileged", "boolean"),
            ("securityContext.allowPrivilegeEscalation", "boolean"),
            ("securityContext.runAsUser", "long"),
            ("securityContext.capabilities.add", "keyword"),
            ("volumeMounts.mountPath", "keyword"),
            ("ports.hostPort", "integer"),
        )
    },
    # Services.
    "requestObject.spec.type": "keyword",
    "requestObject.spec.externalIPs": "keyword",
    "requestObject.spec.ports.nodePort": "integer",
    # RBAC: what a role allows, what a binding grants, and to whom.
    **{
        f"{body}.{field}": "keyword"
        for body in ("requestObject", "responseObject")
        for field in (
            "rules.verbs",
            "rules.resources",
            "rules.apiGroups",
            "rules.resourceNames",
            "rules.nonResourceURLs",
            "roleRef.name",
            "roleRef.kind",
            "roleRef.apiGroup",
            "subjects.kind",
            "subjects.name",
            "subjects.namespace",
        )
    },
    # Admission webhooks, secret types (policies that record Secret bodies), the object kind.
    "requestObject.webhooks.clientConfig.url": "keyword",
    "requestObject.webhooks.clientConfig.service.name": "keyword",
    "requestObject.type": "keyword",
    "requestObject.kind": "keyword",
    # Who: impersonation, user agents, groups, the object.
    "impersonatedUser.username": "keyword",
    "impersonatedUser.groups": "keyword",
    "user.username": "keyword",
    "user.groups": "keyword",
    "userAgent": "keyword",
    "objectRef.subresource": "keyword",
    "responseStatus.code": "integer",
}
"""Field under ``kubernetes.audit`` → the mapping type both templates give it."""

DYNAMIC_TYPES = {"user.extra.authentication.kubernetes.io/pod-name": "keyword"}
"""Fields mapped by the template's dynamic rule when a document first has them."""


@dataclass(frozen=True)
class Query:
    """Terms that must all hold, and an object that must be among the documents found."""

    terms: dict[str, Any]
    finds: str | None = None


QUERIES: dict[str, Query] = {
    "a pod created with hostNetwork": Query(
        {"objectRef.resource": "pods", "verb": "create", "requestObject.spec.hostNetwork": True},
        "host-ns",
    ),
    "hostPID": Query({"requestObject.spec.hostPID": True}, "host-ns"),
    "hostIPC": Query({"requestObject.spec.hostIPC": True}, "host-ns"),
    "added capabilities": Query(
        {
            "objectRef.resource": "pods",
            "requestObject.spec.containers.securityContext.capabilities.add": "SYS_ADMIN",
        },
        "caps",
    ),
    "a privileged init container": Query(
        {"requestObject.spec.initContainers.securityContext.privileged": True}, "caps"
    ),
    "the pod's ServiceAccount": Query(
        {"requestObject.spec.serviceAccountName": "intruder"}, "caps"
    ),
    "root in the pod": Query({"requestObject.spec.securityContext.runAsUser": 0}, "caps"),
    "a hostPath volume of /": Query({"requestObject.spec.volumes.hostPath.path": "/"}, "hostpath"),
    "its mount": Query(
        {"requestObject.spec.containers.volumeMounts.mountPath": "/host"}, "hostpath"
    ),
    "an image": Query({"requestObject.spec.containers.image": "registry.example/app:1.0"}, "caps"),
    "an image by wildcard": Query({"requestObject.spec.containers.image": "registry.example/*"}),
    "an ephemeral container": Query(
        {
            "objectRef.subresource": "ephemeralcontainers",
            "requestObject.spec.ephemeralContainers.image": "registry.example/debug:1.0",
        },
        "caps",
    ),
    "a NodePort service": Query({"requestObject.spec.type": "NodePort"}, "exposed"),
    "an external IP": Query({"requestObject.spec.externalIPs": "203.0.113.10"}, "exposed"),
    "a binding to cluster-admin": Query(
        {
            "objectRef.resource": "rolebindings",
            "requestObject.roleRef.name": "cluster-admin",
            "requestObject.roleRef.kind": "ClusterRole",
            "requestObject.roleRef.apiGroup": "rbac.authorization.k8s.io",
        },
        "intruder-admin",
    ),
    "cluster-admin bound, in the response": Query({"responseObject.roleRef.name": "cluster-admin"}),
    "a binding's subjects": Query(
        {"requestObject.subjects.name": "system:anonymous", "requestObject.subjects.kind": "User"},
        "anonymous",
    ),
    "a group granted": Query({"responseObject.subjects.kind": "Group"}),
    "a wildcard Role": Query(
        {
            "objectRef.resource": "roles",
            "verb": "create",
            "requestObject.rules.verbs": "*",
            "requestObject.rules.resources": "*",
            "requestObject.rules.apiGroups": "*",
        },
        "wildcard",
    ),
    "a role patched to wildcards": Query(
        {"verb": "patch", "responseObject.rules.verbs": "*", "responseObject.rules.resources": "*"}
    ),
    "escalate on cluster-admin": Query(
        {
            "requestObject.rules.verbs": "escalate",
            "requestObject.rules.resourceNames": "cluster-admin",
        }
    ),
    "pods/exec allowed": Query({"requestObject.rules.resources": "pods/exec"}),
    "a non-resource URL": Query({"requestObject.rules.nonResourceURLs": "/metrics"}),
    "impersonation": Query(
        {"impersonatedUser.username": "system:admin", "impersonatedUser.groups": "system:masters"}
    ),
    "an enumeration tool's user agent": Query({"userAgent": "access_matrix/*"}),
    "a token bound to a pod": Query({"user.extra.authentication.kubernetes.io/pod-name": "caps"}),
    "a webhook outside the cluster": Query(
        {"requestObject.webhooks.clientConfig.url": "https://203.0.113.7/validate"}
    ),
}
"""Name → the query (field names under ``kubernetes.audit``; ``*`` is a wildcard only in
the two queries named for it)."""

WILDCARDS = {"an image by wildcard", "an enumeration tool's user agent"}
"""The queries whose ``*`` is a wildcard."""


def documents(events: list[str], namespace: str) -> list[core.Event]:
    """The audit lines ``events``, normalized into ``logs-kubernetes.audit_logs-<namespace>``."""
    normalizer = normalize.Normalizer(config.NormalizerConfig(namespace=namespace))
    return [normalizer(fx.audit_event(line, offset)) for offset, line in enumerate(events)]


def risky_lines() -> list[str]:
    """The recorded activity of :mod:`tests.kube._risky` (tests/fixtures/kube-audit)."""
    return [line for line in RISKY.read_text().split("\n") if line]


def _leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(field, scalar) pairs as Elasticsearch indexes them: lists fan out, and a key that
    holds dots is the same path as the nested keys (``a.b`` ≡ ``a`` → ``b``)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item, path)
    elif value is not None:
        yield path, value


def _holds(doc: dict[str, Any], field: str, value: Any, wildcard: bool) -> bool:
    import fnmatch

    for path, got in _leaves(doc):
        if path != field:
            continue
        if wildcard and isinstance(got, str) and fnmatch.fnmatchcase(got, value):
            return True
        if type(got) is type(value) and got == value:
            return True
    return False


def expected(docs: list[core.Event], name: str) -> set[str]:
    """The ids of the documents the query ``name`` must find."""
    query = QUERIES[name]
    wildcard = name in WILDCARDS
    return {
        event.record["id"]
        for event in docs
        if all(
            _holds(event.record["doc"], AUDIT + field, value, wildcard)
            for field, value in query.terms.items()
        )
    }


def dsl(name: str) -> dict[str, Any]:
    """The query ``name`` as the query DSL (term or wildcard clauses in a filter)."""
    kind = "wildcard" if name in WILDCARDS else "term"
    return {
        "bool": {
            "filter": [
                {kind: {AUDIT + field: value}} for field, value in QUERIES[name].terms.items()
            ]
        }
    }


Call = Callable[..., Awaitable[Any]]


@dataclass
class Server:
    """What :func:`check_on_server` needs of one product, over its official client."""

    kind: normalize.Kind
    put: Call
    bulk: Call
    search: Call
    field_types: Call
    """index → {field under kubernetes.audit: its mapping type}."""


def elasticsearch(client: Any) -> Server:
    headers = {"content-type": "application/json", "accept": "application/json"}

    async def put(path: str, body: Any) -> None:
        await client.perform_request("PUT", "/" + path, headers=headers, body=body)

    async def bulk(operations: list[Any]) -> Any:
        return (await client.bulk(operations=operations, refresh="true")).body

    async def search(index: str, query: dict[str, Any]) -> Any:
        answer = await client.search(index=index, query=query, size=100, source=False)
        return answer.body

    async def field_types(index: str) -> dict[str, str]:
        answer = await client.indices.get_field_mapping(index=index, fields=AUDIT + "*")
        return _types(answer.body)

    return Server("elasticsearch", put, bulk, search, field_types)


def opensearch(client: Any) -> Server:
    async def put(path: str, body: Any) -> None:
        await client.transport.perform_request("PUT", "/" + path, body=body)

    async def bulk(operations: list[Any]) -> Any:
        return await client.bulk(body=operations, params={"refresh": "true"})

    async def search(index: str, query: dict[str, Any]) -> Any:
        return await client.search(
            index=index, body={"query": query, "size": 100, "_source": False}
        )

    async def field_types(index: str) -> dict[str, str]:
        return _types(await client.indices.get_field_mapping(index=index, fields=AUDIT + "*"))

    return Server("opensearch", put, bulk, search, field_types)


def _types(answer: dict[str, Any]) -> dict[str, str]:
    index = next(iter(answer.values()))
    out: dict[str, str] = {}
    for field, found in index["mappings"].items():
        leaf = next(iter(found["mapping"].values()))
        out[field] = leaf.get("type", "object")
    return out


async def check_on_server(server: Server, docs: list[core.Event]) -> dict[str, set[str]]:
    """Install the templates, index ``docs`` (one audit data stream), run every query and
    compare; returns query name → the ``objectRef.name`` values it found."""
    for path, body in normalize.templates(server.kind, 7, lifecycle=False).items():
        await server.put(path, body)
    streams = {event.tag for event in docs}
    assert len(streams) == 1 and next(iter(streams)).startswith("logs-kubernetes.audit_logs-")
    stream = next(iter(streams))
    operations: list[Any] = []
    for event in docs:
        operations += [
            {"create": {"_index": stream, "_id": event.record["id"]}},
            event.record["doc"],
        ]
    answer = await server.bulk(operations)
    assert not answer["errors"], [i for i in answer["items"] if i["create"].get("error")][:3]
    names = {event.record["id"]: event.record["doc"]["kubernetes"]["audit"] for event in docs}
    found_names: dict[str, set[str]] = {}
    for name, query in QUERIES.items():
        wanted = expected(docs, name)
        assert wanted, f"{name}: the activity made no document for it"
        hits = (await server.search(stream, dsl(name)))["hits"]["hits"]
        got = {hit["_id"] for hit in hits}
        assert got == wanted, (server.kind, name, len(got), len(wanted))
        found_names[name] = {names[i].get("objectRef", {}).get("name", "") for i in got}
        if query.finds is not None:
            assert query.finds in found_names[name], (server.kind, name, found_names[name])
    every = {AUDIT + field: kind for field, kind in {**FIELD_TYPES, **DYNAMIC_TYPES}.items()}
    types = await server.field_types(stream)
    assert {f: types.get(f) for f in every} == every, {
        f: (types.get(f), t) for f, t in every.items() if types.get(f) != t
    }
    return found_names
