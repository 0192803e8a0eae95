"""What the file path says about the pod, before any API lookup."""

from kloghub import sources


def test_pods_path_gives_namespace_pod_uid_container_and_restart():
    """If this failed, crawl-level logs would carry no pod identity at all."""
    meta = sources.from_path(
        "/var/log/pods/payments_api-7d9f8c6b5-x2x9z_0b3c5a4e-1111-2222-3333-444455556666/api/3.log"
    )
    assert meta == sources.PathMeta(
        namespace="payments",
        pod="api-7d9f8c6b5-x2x9z",
        pod_uid="0b3c5a4e-1111-2222-3333-444455556666",
        container="api",
        restart=3,
    )


def test_rotated_pods_path_still_gives_the_pod():
    """If this failed, lines finished from a rotated or gzipped file would lose their pod."""
    meta = sources.from_path(
        "/var/log/pods/ns_p_0b3c5a4e-1111-2222-3333-444455556666/c/0.log.20261127-062043.gz"
    )
    assert (meta.namespace, meta.pod, meta.container) == ("ns", "p", "c")


def test_containers_symlink_name_gives_pod_namespace_container_and_id():
    """If this failed, docker-era /var/log/containers paths would carry no identity."""
    cid = "f" * 64
    meta = sources.from_path(f"/var/log/containers/web-1_default_nginx-sidecar-{cid}.log")
    assert (meta.pod, meta.namespace, meta.container, meta.container_id) == (
        "web-1",
        "default",
        "nginx-sidecar",
        cid,
    )


def test_unknown_path_gives_nothing_rather_than_a_guess():
    """If this failed, node logs would be tagged with a made-up pod."""
    assert sources.from_path("/var/log/syslog") == sources.PathMeta()
