"""Shared test configuration: the real search servers come from tests/_servers.py, the real
Kubernetes control plane (etcd + kube-apiserver) from tests/_kube.py."""

from pathlib import Path

import pytest

from tests._world import World

pytest_plugins = ["tests._servers", "tests._kube"]


@pytest.fixture
def world(tmp_path: Path) -> World:
    """A kubelet-like /var/log/pods tree and a state dir under tmp_path."""
    return World(tmp_path)
