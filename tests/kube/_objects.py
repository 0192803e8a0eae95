"""Objects the Kubernetes tests create on the real apiserver, as plain manifests."""

from __future__ import annotations

from typing import Any

IMAGE = "registry.example/app:1.0"


def owner(obj: Any, *, controller: bool = True) -> dict[str, Any]:
    """An ownerReference to ``obj`` (a client model or a dict the API answered with)."""
    meta = obj["metadata"] if isinstance(obj, dict) else obj.metadata
    get = meta.get if isinstance(meta, dict) else lambda key: getattr(meta, key)
    return {
        "apiVersion": obj["apiVersion"] if isinstance(obj, dict) else obj.api_version,
        "kind": obj["kind"] if isinstance(obj, dict) else obj.kind,
        "name": get("name"),
        "uid": get("uid"),
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def pod(
    name: str,
    node: str,
    *,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    owners: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A pod bound to ``node`` (no scheduler or kubelet: ``spec.nodeName`` is set here)."""
    meta: dict[str, Any] = {"name": name, "labels": labels or {}, "annotations": annotations or {}}
    if owners:
        meta["ownerReferences"] = owners
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {
            "nodeName": node,
            "automountServiceAccountToken": False,
            "containers": [{"name": "app", "image": IMAGE}],
        },
    }


def account_subject(name: str, namespace: str) -> dict[str, Any]:
    """A binding's subject: the ServiceAccount ``name`` of ``namespace``."""
    return {"kind": "ServiceAccount", "name": name, "namespace": namespace}


def binding(name: str, kind: str, role: str, subjects: list[dict[str, Any]]) -> dict[str, Any]:
    """A RoleBinding or ClusterRoleBinding ``name`` of the ``kind`` (``Role`` or
    ``ClusterRole``) ``role`` to ``subjects``."""
    return {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
        "subjects": subjects,
    }


def _template(labels: dict[str, str], restart: str = "Always") -> dict[str, Any]:
    return {
        "metadata": {"labels": labels},
        "spec": {"restartPolicy": restart, "containers": [{"name": "app", "image": IMAGE}]},
    }


def deployment(name: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": labels}, "template": _template(labels)},
    }


def replicaset(name: str, template_hash: str, owner_ref: dict[str, Any]) -> dict[str, Any]:
    labels = {"app": owner_ref["name"], "pod-template-hash": template_hash}
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": name, "labels": labels, "ownerReferences": [owner_ref]},
        "spec": {"selector": {"matchLabels": labels}, "template": _template(labels)},
    }


def cronjob(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name},
        "spec": {
            "schedule": "*/5 * * * *",
            "jobTemplate": {"spec": {"template": _template({"job": name}, "Never")}},
        },
    }


def job(name: str, owner_ref: dict[str, Any] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if owner_ref is not None:
        meta["ownerReferences"] = [owner_ref]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {"template": _template({"job": name}, "Never")},
    }


def running(core: Any, namespace: str, manifest: dict[str, Any], pod_ip: str = "10.0.0.7") -> Any:
    """Create the pod, then report it running as its kubelet would (``pods/status``): a pod
    IP and a started container with containerd's ids. Returns the pod as the server has it."""
    created = core.create_namespaced_pod(namespace, manifest)
    uid = created.metadata.uid
    statuses = []
    for n, container in enumerate(manifest["spec"]["containers"]):
        cid = (uid.replace("-", "") + f"{n:02d}" * 16)[:64]
        statuses.append(
            {
                "name": container["name"],
                "image": container["image"],
                "imageID": f"registry.example/app@sha256:{'ab' * 32}",
                "containerID": f"containerd://{cid}",
                "restartCount": 0,
                "ready": True,
                "started": True,
                "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
            }
        )
    return core.patch_namespaced_pod_status(
        manifest["metadata"]["name"],
        namespace,
        {
            "status": {
                "phase": "Running",
                "podIP": pod_ip,
                "podIPs": [{"ip": pod_ip}],
                "containerStatuses": statuses,
            }
        },
    )
