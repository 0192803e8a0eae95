"""The built kloghub image for the run tests, and podman set up to run it as the chart would.

``built()`` names the image of the current sources (``scripts/image.py ref``; `make test`
builds it first, ``make image`` by hand). ``Podman.find()`` tries the ways podman can run
a container on this machine and keeps the first that works; as root, the containers run
in a user namespace (container IDs 0-65535 are host IDs 200000-265535), and ``Pod`` gives
the files it provides the mapped owners. ``Pod`` turns a rendered
workload into podman flags: the container's (or pod's) ``securityContext`` — user, group,
``fsGroup``, read-only root file system, capabilities, no privilege escalation — and its
volumes, each as the kubelet would provide it (a host directory, a read-only directory of
the ConfigMap's and Secrets' files with their modes, a tmpfs for a Memory emptyDir). With a
read-only root and podman's own tmpfs mounts turned off, the mounted volumes are the only
writable paths, as in the cluster.

What this does not cover: the kubelet's probes, resource limits and the seccomp profile
(podman's default profile stands in for RuntimeDefault), NetworkPolicies, and Secrets'
atomic symlink updates.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.charts import _scenarios as sc

REPO = Path(__file__).resolve().parents[2]

# Ways to run podman here, in order. The first is podman's own defaults. The second is
# for hosts like the sandbox these tests were written on: crun refuses its hybrid cgroup
# v1/v2 layout (runc with cgroupfs manages it), and podman's default ulimits (1048576
# open files, 4194304 processes) cannot be set without CAP_SYS_RESOURCE.
ATTEMPTS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    ((), ()),
    (
        ("--runtime", "runc", "--cgroup-manager", "cgroupfs"),
        ("--ulimit", "nofile=8192:8192", "--ulimit", "nproc=8192:8192"),
    ),
)
USERNS_OFFSET = 200_000
"""Host UID/GID of the container's 0 when podman runs as root: the containers run in a
user namespace (0-65535 mapped to 200000-265535), so the agent's root is not the host's."""


def built() -> str | None:
    """``localhost/kloghub:src-<key>`` for the current sources, or None if not built."""
    if shutil.which("buildah") is None:
        return None
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "image.py"), "ref"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


def inspect(image: str) -> dict[str, Any]:
    """The image's OCI config (``config``: User, Entrypoint, Labels, ...)."""
    out = subprocess.run(
        ["buildah", "inspect", "--type", "image", image],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return dict(json.loads(out)["OCIv1"])


@dataclass
class Podman:
    """podman with the global and ``run`` options that work on this machine.

    ``offset``: the host ID of the container's ID 0 (a user namespace), or 0 when podman
    runs rootless (then podman maps the container's root to the calling user itself).
    """

    global_args: tuple[str, ...]
    run_args: tuple[str, ...]
    offset: int = 0

    @classmethod
    def find(cls, image: str) -> Podman | str:
        """The first of ``ATTEMPTS`` that runs ``image --version``, or why none did."""
        if shutil.which("podman") is None:
            return "podman is not installed (Debian: apt-get install podman)"
        offset = USERNS_OFFSET if os.geteuid() == 0 else 0
        userns = (f"--uidmap=0:{offset}:65536", f"--gidmap=0:{offset}:65536") if offset else ()
        errors = []
        for global_args, run_args in ATTEMPTS:
            podman = cls(global_args, (*run_args, *userns), offset)
            result = podman.run(image, "--version", network="none")
            if result.returncode == 0:
                return podman
            errors.append(f"podman {' '.join(global_args)}: {result.stderr.strip()[-300:]}")
        return "podman cannot run containers here: " + "; ".join(errors)

    def host_id(self, container_id: int) -> int:
        """The host UID (or GID) that ``container_id`` is inside the containers."""
        return self.offset + container_id if self.offset else container_id

    def command(self, *args: str) -> list[str]:
        return ["podman", *self.global_args, *args]

    def run(
        self,
        image: str,
        *args: str,
        flags: list[str] | None = None,
        network: str = "none",
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """``podman run --rm`` in the foreground."""
        command = self.command(
            "run", "--rm", f"--network={network}", *self.run_args, *(flags or []), image, *args
        )
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)

    @contextlib.contextmanager
    def daemon(
        self, name: str, image: str, *args: str, flags: list[str], network: str = "none"
    ) -> Iterator[Container]:
        """A detached container, stopped (SIGTERM, then its drain) and removed at the end."""
        command = self.command(
            "run", "--detach", f"--name={name}", f"--network={network}", *self.run_args,
            *flags, image, *args,
        )  # fmt: skip
        subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
        container = Container(self, name)
        try:
            yield container
        finally:
            container.stop()
            subprocess.run(self.command("rm", "--force", name), capture_output=True, check=False)


@dataclass
class Container:
    podman: Podman
    name: str
    exit_code: int | None = None

    def logs(self) -> str:
        result = subprocess.run(
            self.podman.command("logs", self.name), capture_output=True, text=True, check=False
        )
        return result.stdout + result.stderr

    def running(self) -> bool:
        result = subprocess.run(
            self.podman.command("inspect", "--format", "{{.State.Running}}", self.name),
            capture_output=True,
            text=True,
            check=False,
        )
        return result.stdout.strip() == "true"

    def stop(self, timeout: int = 60) -> int:
        """SIGTERM, wait for the exit (SIGKILL after ``timeout`` s); the exit code."""
        if self.exit_code is None:
            subprocess.run(
                self.podman.command("stop", f"--time={timeout}", self.name),
                capture_output=True,
                check=False,
                timeout=timeout + 30,
            )
            result = subprocess.run(
                self.podman.command("inspect", "--format", "{{.State.ExitCode}}", self.name),
                capture_output=True,
                text=True,
                check=False,
            )
            self.exit_code = int(result.stdout.strip() or -1)
        return self.exit_code


# --------------------------------------------------------------------------- the kubelet


@dataclass
class Pod:
    """A rendered workload's first container as podman flags, its volumes under ``root``.

    ``host_paths`` maps a hostPath volume's path to the test directory that stands for it
    (an empty directory for the others); every other volume is provided as the kubelet
    would (see the module docstring).
    """

    manifests: list[sc.Manifest]
    workload: sc.Manifest
    root: Path
    host_paths: dict[str, Path] = field(default_factory=dict)
    podman: Podman | None = None
    """Files are owned by the host IDs that the pod's IDs are in podman's user namespace."""

    def chown(self, path: Path, uid: int, gid: int) -> None:
        host = self.podman.host_id if self.podman else (lambda i: i)
        os.chown(path, host(uid), host(gid))

    @property
    def spec(self) -> dict[str, Any]:
        return sc.pod_spec(self.workload)

    @property
    def container(self) -> dict[str, Any]:
        return dict(self.spec["containers"][0])

    def security(self) -> dict[str, Any]:
        """The effective security settings: the container's over the pod's."""
        return {**self.spec.get("securityContext", {}), **self.container["securityContext"]}

    def security_flags(self) -> list[str]:
        ctx = self.security()
        flags = [f"--user={ctx['runAsUser']}:{ctx['runAsGroup']}"]
        if "fsGroup" in ctx:
            flags.append(f"--group-add={ctx['fsGroup']}")
        if ctx.get("readOnlyRootFilesystem"):
            # No tmpfs of podman's own on /tmp, /run, /var/tmp: only volumes are writable.
            flags += ["--read-only", "--read-only-tmpfs=false"]
        caps = ctx.get("capabilities", {})
        flags += [f"--cap-drop={cap}" for cap in caps.get("drop", [])]
        flags += [f"--cap-add={cap}" for cap in caps.get("add", [])]
        if ctx.get("allowPrivilegeEscalation") is False:
            flags.append("--security-opt=no-new-privileges")
        assert not ctx.get("privileged")
        return flags

    def volume_flags(self, config_text: str | None = None) -> list[str]:
        """One mount per volumeMount. The config directory (ConfigMap with the Secrets
        mounted inside it) is one read-only directory of files, ``config_text`` (default:
        the rendered kloghub.yaml) among them."""
        volumes = {v["name"]: v for v in self.spec["volumes"]}
        for claim in self.workload["spec"].get("volumeClaimTemplates", []):
            volumes[claim["metadata"]["name"]] = {"persistentVolumeClaim": claim["spec"]}
        files_root = self.root / "files"
        sc.pod_files(self.manifests, self.workload, files_root)  # Secrets, with items
        fs_group = self.security().get("fsGroup")
        flags: list[str] = []
        config_dir: str | None = None
        for mount in self.container["volumeMounts"]:
            volume, target = volumes[mount["name"]], mount["mountPath"]
            ro = ":ro" if mount.get("readOnly") else ""
            if "configMap" in volume and mount["name"] != "config":
                # Another ConfigMap (detection rules): pod_files laid it out as the kubelet
                # does; inside the config directory it is already part of that mount.
                if config_dir is None or not target.startswith(config_dir + "/"):
                    flags.append(f"--volume={files_root / target.lstrip('/')}:{target}{ro}")
            elif "configMap" in volume:
                config_dir = target
                directory = files_root / target.lstrip("/")
                directory.mkdir(parents=True, exist_ok=True)
                text = config_text or sc.config_text(self.manifests, _component(self.workload))
                assert text is not None
                (directory / "kloghub.yaml").write_text(text, encoding="utf-8")
                flags.append(f"--volume={directory}:{target}{ro}")
            elif "secret" in volume or "projected" in volume:
                mode = (volume.get("secret") or volume["projected"]).get("defaultMode", 0o644)
                directory = files_root / target.lstrip("/")
                for path in directory.rglob("*"):
                    # The kubelet gives files defaultMode; the folders of items' paths 0755.
                    path.chmod(0o755 if path.is_dir() else mode)
                    self.chown(path, 0, fs_group or 0)
                if config_dir is None or not target.startswith(config_dir + "/"):
                    flags.append(f"--volume={directory}:{target}{ro}")
            elif "hostPath" in volume:
                path = volume["hostPath"]["path"]
                source = self.host_paths.get(path) or self.root / "host" / path.lstrip("/")
                if not source.exists():
                    source.mkdir(parents=True)
                    self.chown(source, 0, 0)  # the kubelet creates it as root
                flags.append(f"--volume={source}:{target}{ro}")
            elif "emptyDir" in volume and volume["emptyDir"].get("medium") == "Memory":
                size = volume["emptyDir"].get("sizeLimit", "64Mi").replace("Mi", "m")
                flags.append(f"--mount=type=tmpfs,destination={target},tmpfs-size={size}")
            elif "emptyDir" in volume or "persistentVolumeClaim" in volume:
                # A disk emptyDir or a StatefulSet's claim: owned by fsGroup, setgid.
                directory = self.root / "volumes" / mount["name"]
                directory.mkdir(parents=True, exist_ok=True)
                if fs_group is not None:
                    self.chown(directory, 0, fs_group)
                    directory.chmod(0o2775)
                flags.append(f"--volume={directory}:{target}{ro}")
            else:
                raise AssertionError(f"no stand-in for volume {volume}")
        return flags

    def env_flags(self, overrides: dict[str, str] | None = None) -> list[str]:
        env = {**sc.pod_env(self.container), **(overrides or {})}
        return [f"--env={key}={value}" for key, value in env.items()]

    def volume_dir(self, name: str) -> Path:
        return self.root / "volumes" / name


def _component(workload: sc.Manifest) -> str:
    return str(workload["metadata"]["labels"]["app.kubernetes.io/component"])


def wait_for(predicate: Any, what: str, containers: list[Container], timeout: float = 180) -> None:
    """Polls ``predicate`` until it holds; on time-out, the containers' logs explain why."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if not all(c.running() for c in containers):
            break
        time.sleep(0.5)
    logs = "\n".join(f"--- {c.name}\n{c.logs()[-3000:]}" for c in containers)
    raise AssertionError(f"{what} did not happen\n{logs}")
