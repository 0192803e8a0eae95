"""The built image, run as the chart runs it: version, the chart's configs, agent to collector.

The image is the one of the current sources (`make test` builds or reuses it; by hand:
`make image`). Without it these tests are skipped on a developer machine and fail in CI
(``CI=true``). Where podman cannot run containers at all they are skipped with podman's
own error as the reason. Each container gets the rendered workload's securityContext and
volumes (tests/charts/_image.py), so the read-only root leaves only the volumes writable.
Run as root, podman puts the containers in a user namespace: the agent's UID 0 is host UID
200000, and the test's files are owned by the mapped IDs, as the kubelet's are by the real
ones on a node.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.charts import _image
from tests.charts import _scenarios as sc
from tests.charts.conftest import CHART, NAMESPACE, missing

VERSION = tomllib.loads((_image.REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"][
    "version"
]
COLLECTOR_HOST = f"kl-kloghub-collector.{NAMESPACE}.svc.cluster.local"


@pytest.fixture(scope="module")
def image() -> str:
    ref = _image.built()
    if ref is None:
        missing(
            "the kloghub image of the current sources is not built: run `make image` "
            "(buildah, no daemon needed); `make test` builds it"
        )
    return ref


@pytest.fixture(scope="module")
def podman(image: str) -> _image.Podman:
    found = _image.Podman.find(image)
    if isinstance(found, str):
        pytest.skip(found)  # the image is built; only running it is impossible here
    return found


def pod(
    podman: _image.Podman,
    manifests: list[sc.Manifest],
    component: str,
    root: Path,
    host_paths: dict[str, Path] | None = None,
) -> _image.Pod:
    """``component``'s workload; ``host_paths``: the test directory for each hostPath."""
    workload = sc.workload(manifests, component)
    assert workload is not None
    return _image.Pod(manifests, workload, root / component, host_paths or {}, podman)


def pod_flags(p: _image.Pod, env: dict[str, str] | None = None) -> list[str]:
    return [*p.security_flags(), *p.volume_flags(), *p.env_flags(env)]


# --------------------------------------------------------------------------- it runs


def test_image_runs_the_kloghub_command_of_these_sources(image, podman):
    """If this failed, the image would not start (broken virtualenv, missing native
    extension, wrong entrypoint) or would carry other sources than these."""
    result = podman.run(image, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"kloghub {VERSION}"
    native = podman.run(
        image,
        "-c",
        "import kloghub._native as n, os; print(n.__file__, os.getuid())",
        flags=["--entrypoint=python3", "--read-only", "--read-only-tmpfs=false"],
    )
    assert native.returncode == 0, native.stderr
    assert native.stdout.split()[1] == "10001", "the image runs as its non-root user"


@pytest.mark.parametrize(
    ("scenario", "component"),
    [("run", "agent"), ("run", "collector"), ("everything", "agent"), ("everything", "collector")],
)
def test_image_validates_the_charts_run_config_as_the_pod_runs_it(
    image, podman, render, scenario, component, tmp_path
):
    """If this failed, a run-level install would crash-loop: the image's kloghub would
    refuse the config the chart renders, or could not read its mounted Secret files under
    the pod's user and read-only root."""
    manifests = render(sc.SCENARIOS[scenario])
    host = {"/var/log": tmp_path, "/var/lib/kloghub": tmp_path}
    p = pod(podman, manifests, component, tmp_path, host)
    result = podman.run(
        image,
        "validate",
        "--config",
        "/etc/kloghub/kloghub.yaml",
        "--level",
        "run",
        flags=pod_flags(p),
    )
    assert result.returncode == 0, result.stderr
    assert "level: run" in result.stdout
    for key, value in sc.SECRETS.items():
        if key not in sc.CERTIFICATES:
            assert value not in result.stdout, f"secret {key} was printed"


# --------------------------------------------------------------------------- agent → collector


def cri_line(n: int) -> bytes:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return f"{now}000Z stdout F image-run n={n}\n".encode()


def search(store: Path) -> list[dict]:
    """The documents of the collector's store (read on the host while it runs)."""
    if not store.exists():
        return []
    result = subprocess.run(
        [sys.executable, "-m", "kloghub", "search", "--store", f"store:{store}", "--since",
         "1h", "--limit", "10000", "--format", "ndjson"],
        capture_output=True, text=True, timeout=60, check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("KLOGHUB_")},
    )  # fmt: skip
    if result.returncode != 0:
        return []  # the store is being created
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_agent_image_ships_a_mounted_host_folder_to_a_collector_container(
    image, podman, render, tmp_path
):
    """If this failed, the chart's default install would not move a node's logs: the
    image's agent could not read the host's log folder or write its state as the
    DaemonSet runs it (UID 0, no capabilities but DAC_READ_SEARCH, read-only root), or the
    collector could not take them over TLS with the shared key and store them as UID
    10001 on its volume."""
    manifests = render({"level": "walk"})
    varlog, state = tmp_path / "varlog", tmp_path / "agent-state"
    state.mkdir()
    logs = varlog / "pods" / "shop_api-1_0b3c5a4e-1111-2222-3333-444455556666" / "app"
    logs.mkdir(parents=True)
    (logs / "0.log").write_bytes(b"".join(cri_line(n) for n in range(200)))
    # A node log as syslog writes it (syslog:adm 0640): root without DAC_READ_SEARCH
    # could not read it once every capability is dropped. Node logs are read from their
    # end: its line is appended once the agent runs.
    agent = pod(
        podman, manifests, "agent", tmp_path, {"/var/log": varlog, "/var/lib/kloghub": state}
    )
    collector = pod(podman, manifests, "collector", tmp_path)
    agent.chown(state, 0, 0)  # the kubelet creates the hostPath state dir as root
    syslog = varlog / "syslog"
    syslog.write_text("Dec  3 09:00:00 node-a kernel: booted\n")
    agent.chown(syslog, 104, 4)
    syslog.chmod(0o640)
    name = f"kloghub-image-run-{os.getpid()}-{time.monotonic_ns()}"
    # The chart's configs as rendered; only what a test has no cluster for is changed:
    # no Kubernetes API to watch (metadata from the file path), and the collector's
    # Service name resolves to the loopback the two containers share.
    agent_flags = [
        *pod_flags(agent, {"KLOGHUB_AGENT__ENRICHMENT__KUBERNETES_API": "false"}),
        f"--add-host={COLLECTOR_HOST}:127.0.0.1",
    ]
    with (
        podman.daemon(f"{name}-agent", image, *agent.container["args"], flags=agent_flags) as a,
        podman.daemon(
            f"{name}-collector",
            image,
            *collector.container["args"],
            flags=pod_flags(collector),
            network=f"container:{name}-agent",
        ) as c,
    ):
        store = collector.volume_dir("data") / "store.db"
        docs: list[dict] = []

        def arrived(text: str, count: int) -> bool:
            docs[:] = search(store)
            return len([d for d in docs if text in d.get("message", "")]) >= count

        _image.wait_for(lambda: arrived("image-run n=", 200), "200 container lines", [a, c])
        with syslog.open("a") as f:
            f.write("Dec  3 09:00:01 node-a kernel: image-run node line\n")
        _image.wait_for(lambda: arrived("image-run node line", 1), "the node log line", [a, c])
        assert a.stop() == 0, a.logs()[-3000:]
        assert c.stop() == 0, c.logs()[-3000:]
    container = [d for d in docs if "image-run n=" in d["message"]]
    numbers = sorted(int(d["message"].rsplit("n=", 1)[1]) for d in container)
    assert numbers == list(range(200)), "every line once"
    assert container[0]["kubernetes"]["namespace"] == "shop"
    assert container[0]["kubernetes"]["pod"]["name"] == "api-1"
    # What the agent wrote stayed in its state volume: checkpoints survive the pod.
    assert any(state.iterdir())


# --------------------------------------------------------------------------- chart ↔ image


def test_chart_image_reference_and_tags_match_the_built_image(image, render):
    """If this failed, `helm install` would pull a tag that `make image` does not produce
    (the chart's appVersion, the package version and the image's label disagree)."""
    manifests = render({})
    refs = {c["image"] for _, c in sc.all_containers(manifests)}
    chart = (CHART / "Chart.yaml").read_text(encoding="utf-8")
    app_version = next(
        line.split(":", 1)[1].strip().strip('"')
        for line in chart.splitlines()
        if line.startswith("appVersion:")
    )
    assert app_version == VERSION
    assert refs == {f"ghcr.io/kloghub/kloghub:{VERSION}"}
    config = _image.inspect(image)["config"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == VERSION
    assert labels["org.opencontainers.image.source"] == "https://github.com/kloghub/kloghub"
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.revision"]
    # `make image` tags <name>:<version>, the tag the chart asks for under its registry.
    same = _image.inspect(f"localhost/kloghub:{VERSION}")
    assert same["config"]["Labels"]["io.kloghub.content"] == labels["io.kloghub.content"]


def test_chart_security_context_matches_the_image_user_and_ports(image, render):
    """If this failed, the collector would run under a UID the image has no user for (or
    as root), or the chart would probe ports the image does not serve."""
    config = _image.inspect(image)["config"]
    manifests = render({"level": "walk"})
    collector = sc.workload(manifests, "collector")
    assert collector is not None
    ctx = sc.pod_spec(collector)["securityContext"]
    assert config["User"] == f"{ctx['runAsUser']}:{ctx['runAsGroup']}"
    assert ctx["runAsNonRoot"] is True
    assert config["Entrypoint"] == ["kloghub"]
    ports = {int(p.split("/")[0]) for p in config["ExposedPorts"]}
    for _, container in sc.all_containers(manifests):
        assert {p["containerPort"] for p in container.get("ports", [])} <= ports


@pytest.mark.parametrize("level", ["crawl", "walk", "run"])
def test_everything_kloghub_writes_is_on_a_mounted_volume(render, level, tmp_path):
    """If this failed, a pod would die on its read-only root file system the first time
    it writes its state, queue, store or a temporary file."""
    manifests = render({"level": level})
    for component in ("agent", "agent-audit", "collector"):
        workload = sc.workload(manifests, component)
        if workload is None:
            continue
        p = _image.Pod(manifests, workload, tmp_path / f"{component}-pod")
        assert p.security()["readOnlyRootFilesystem"] is True
        writable = [m["mountPath"] for m in p.container["volumeMounts"] if not m.get("readOnly")]
        text, env = sc.pod(manifests, component, tmp_path / component)
        settings = sc.load(text, tmp_path, env)
        section = getattr(settings, component.split("-")[0])
        written = [str(section.state_dir), "/tmp"]
        sinks = getattr(section, "sinks", [])
        written += [s.url.split(":", 1)[1] for s in sinks if s.url.startswith(("store:", "file:"))]
        for path in written:
            assert any(path == w or path.startswith(w + "/") for w in writable), (component, path)
