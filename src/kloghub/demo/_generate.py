"""A realistic node for the demo: kubelet-style pod logs and an audit log with a story.

Pods (``/var/log/pods/<ns>_<pod>_<uid>/<container>/0.log``, CRI format):

- ``shop/web-…``: nginx access logs (one of them rotates kubelet-style half-way);
- ``shop/orders-…``: a Java service that logs a stack trace;
- ``jobs/worker-…``: a Python worker writing JSON lines, some at level error;
- ``jobs/migrate-…``: a pod whose folder is deleted half-way (its lines must survive);
- ``payments/api-…``: the pod an attacker execs into.

The audit log tells a short attack story: an anonymous request, a secret read by an
unexpected service account, an ``exec`` into ``payments/api``, and a ClusterRoleBinding
to cluster-admin.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ATTACKER_SA", "DemoNode", "generate_first_half", "generate_second_half"]

ATTACKER_SA = "system:serviceaccount:jobs:report-builder"
"""The service account the story's attacker uses."""


@dataclass
class DemoNode:
    root: Path
    start: dt.datetime
    lines: int = 0
    """Log lines written so far (container logs + audit)."""
    pods: dict[str, Path] = field(default_factory=dict)

    @property
    def pods_dir(self) -> Path:
        return self.root / "var/log/pods"

    @property
    def audit_log(self) -> Path:
        return self.root / "var/log/kubernetes/audit/audit.log"


def _ts(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def _container(node: DemoNode, ns: str, pod: str, container: str) -> Path:
    uid = str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{ns}/{pod}"))
    d = node.pods_dir / f"{ns}_{pod}_{uid}" / container
    d.mkdir(parents=True, exist_ok=True)
    path = d / "0.log"
    node.pods[f"{ns}/{pod}/{container}"] = path
    return path


def _write(node: DemoNode, path: Path, lines: list[tuple[dt.datetime, str, str]]) -> None:
    with path.open("a", encoding="utf-8") as f:
        for t, stream, message in lines:
            f.write(f"{_ts(t)} {stream} F {message}\n")
    node.lines += len(lines)


def _access(rng: random.Random, t: dt.datetime, n: int) -> list[tuple[dt.datetime, str, str]]:
    paths = ["/", "/cart", "/api/products", "/api/orders", "/static/app.js", "/login"]
    out = []
    for i in range(n):
        when = t + dt.timedelta(milliseconds=37 * i)
        status = rng.choice([200] * 12 + [304, 404, 500])
        ip = f"10.0.{rng.randint(0, 9)}.{rng.randint(2, 250)}"
        out.append(
            (
                when,
                "stdout",
                f'{ip} - - [{when.strftime("%d/%b/%Y:%H:%M:%S +0000")}] "GET {rng.choice(paths)} '
                f'HTTP/1.1" {status} {rng.randint(200, 9000)} "-" "Mozilla/5.0"',
            )
        )
    return out


JAVA_TRACE = [
    "ERROR OrderService - payment authorisation failed for order 4711",
    "java.net.SocketTimeoutException: Read timed out",
    "\tat java.base/java.net.SocketInputStream.socketRead0(Native Method)",
    "\tat com.shop.orders.PaymentClient.authorise(PaymentClient.java:88)",
    "\tat com.shop.orders.OrderService.place(OrderService.java:142)",
    "Caused by: java.io.IOException: connection reset by peer",
    "\t... 12 more",
]


def _worker(rng: random.Random, t: dt.datetime, n: int) -> list[tuple[dt.datetime, str, str]]:
    out = []
    for i in range(n):
        level = "error" if i % 17 == 5 else "info"
        msg = "report failed: upstream 503" if level == "error" else "report generated"
        doc = {
            "level": level,
            "msg": msg,
            "report_id": rng.randint(1000, 9999),
            "duration_ms": rng.randint(5, 900),
        }
        out.append((t + dt.timedelta(milliseconds=211 * i), "stdout", json.dumps(doc)))
    return out


def _audit(
    t: dt.datetime,
    verb: str,
    user: str,
    resource: str,
    *,
    ns: str | None = None,
    name: str | None = None,
    sub: str | None = None,
    decision: str = "allow",
    code: int = 200,
    groups: list[str] | None = None,
    ip: str = "10.0.3.17",
    agent: str = "kubectl/v1.31.0",
) -> dict[str, object]:
    obj: dict[str, object] = {"resource": resource, "apiVersion": "v1"}
    if ns:
        obj["namespace"] = ns
    if name:
        obj["name"] = name
    if sub:
        obj["subresource"] = sub
    uri = f"/api/v1/namespaces/{ns}/{resource}/{name or ''}" if ns else f"/apis/{resource}"
    stamp = t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{stamp}{verb}{user}{resource}{name}")),
        "stage": "ResponseComplete",
        "requestURI": uri + (f"/{sub}" if sub else ""),
        "verb": verb,
        "user": {"username": user, "groups": groups or ["system:authenticated"]},
        "sourceIPs": [ip],
        "userAgent": agent,
        "objectRef": obj,
        "responseStatus": {"metadata": {}, "code": code},
        "requestReceivedTimestamp": stamp,
        "stageTimestamp": stamp,
        "annotations": {
            "authorization.k8s.io/decision": decision,
            "authorization.k8s.io/reason": "RBAC: allowed" if decision == "allow" else "",
        },
    }


def generate_first_half(root: Path, seed: int = 7) -> DemoNode:
    """Write the first half of the node's logs (the agent starts reading these)."""
    rng = random.Random(seed)
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=20)
    node = DemoNode(root, start)
    web = _container(node, "shop", "web-7c9d8f6b5-x2x9z", "nginx")
    _write(node, web, _access(rng, start, 300))
    orders = _container(node, "shop", "orders-5f6d7c8b9-qw12e", "orders")
    _write(
        node,
        orders,
        [
            (
                start + dt.timedelta(seconds=i),
                "stdout",
                f"INFO OrderService - order {4000 + i} placed",
            )
            for i in range(40)
        ],
    )
    t = start + dt.timedelta(minutes=3)
    _write(node, orders, [(t, "stderr", line) for line in JAVA_TRACE])
    worker = _container(node, "jobs", "worker-6b7c8d9e0-zz8k1", "worker")
    _write(node, worker, _worker(rng, start, 120))
    migrate = _container(node, "jobs", "migrate-28430211-4kq9s", "migrate")
    _write(
        node,
        migrate,
        [
            (start + dt.timedelta(seconds=i), "stdout", f"applied migration {i:03d}")
            for i in range(25)
        ],
    )
    api = _container(node, "payments", "api-84d9f7c6d5-m4n5b", "api")
    _write(
        node,
        api,
        [
            (
                start + dt.timedelta(seconds=3 * i),
                "stdout",
                f"POST /v1/charges 201 {rng.randint(20, 90)}ms",
            )
            for i in range(60)
        ],
    )

    node.audit_log.parent.mkdir(parents=True, exist_ok=True)
    story = [
        _audit(
            start + dt.timedelta(minutes=5),
            "get",
            "system:anonymous",
            "namespaces",
            decision="forbid",
            code=403,
            groups=["system:unauthenticated"],
            ip="203.0.113.66",
            agent="curl/8.5.0",
        ),
        _audit(
            start + dt.timedelta(minutes=6),
            "list",
            "system:serviceaccount:shop:web",
            "pods",
            ns="shop",
        ),
        _audit(
            start + dt.timedelta(minutes=9),
            "get",
            ATTACKER_SA,
            "secrets",
            ns="payments",
            name="stripe-api-key",
            ip="10.0.7.23",
            agent="python-requests/2.32",
        ),
    ]
    _write_audit(node, story)
    return node


def generate_second_half(node: DemoNode, seed: int = 8) -> None:
    """Rotate a file, delete a pod's folder, and finish the attack story."""
    rng = random.Random(seed)
    start = node.start + dt.timedelta(minutes=10)
    web = node.pods["shop/web-7c9d8f6b5-x2x9z/nginx"]
    rotated = web.with_name("0.log." + start.strftime("%Y%m%d-%H%M%S"))
    web.rename(rotated)  # kubelet-style rotation: rename, then a new file
    _write(node, web, _access(rng, start, 200))
    shutil.rmtree(node.pods["jobs/migrate-28430211-4kq9s/migrate"].parent.parent)
    worker = node.pods["jobs/worker-6b7c8d9e0-zz8k1/worker"]
    _write(node, worker, _worker(rng, start, 80))
    story = [
        _audit(
            start + dt.timedelta(minutes=1),
            "create",
            ATTACKER_SA,
            "pods",
            ns="payments",
            name="api-84d9f7c6d5-m4n5b",
            sub="exec",
            code=101,
            ip="10.0.7.23",
            agent="kubectl/v1.31.0",
        ),
        _audit(
            start + dt.timedelta(minutes=2),
            "create",
            ATTACKER_SA,
            "rbac.authorization.k8s.io/v1/clusterrolebindings",
            name="debug-admin",
            code=201,
            ip="10.0.7.23",
        ),
    ]
    # A long-running request (exec) is audited twice, as the API server does: when the
    # response starts (the stream is open) and when it completes.
    started = dict(story[0], stage="ResponseStarted")
    story.insert(0, started)
    story[-1]["objectRef"] = {
        "resource": "clusterrolebindings",
        "name": "debug-admin",
        "apiGroup": "rbac.authorization.k8s.io",
        "apiVersion": "v1",
    }
    story[-1]["requestObject"] = {
        "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "report-builder", "namespace": "jobs"}],
    }
    _write_audit(node, story)
    api = node.pods["payments/api-84d9f7c6d5-m4n5b/api"]
    _write(
        node,
        api,
        [
            (
                start + dt.timedelta(minutes=1, seconds=5),
                "stderr",
                "sh: cat /var/run/secrets/kubernetes.io/serviceaccount/token",
            )
        ],
    )


def _write_audit(node: DemoNode, events: list[dict[str, object]]) -> None:
    with node.audit_log.open("a", encoding="utf-8") as f:
        for event in events:
            f.write(json.dumps(event, separators=(",", ":")) + "\n")
    node.lines += len(events)
