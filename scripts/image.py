"""Build kloghub's OCI image without a daemon or a registry (buildah), and its SBOM.

Usage:
  python3 scripts/image.py build  [--base debian|IMAGE]   build now (layers are reused)
  python3 scripts/image.py ensure [--base debian|IMAGE]   build only if the image for the
                                                          current sources is not there yet
  python3 scripts/image.py ref    [--base debian|IMAGE]   print that image's name, or exit 1

``build`` and ``ensure`` print the image's name on stdout (progress goes to stderr) and
tag it ``localhost/kloghub:src-<content key>`` and ``localhost/kloghub:<version>``. The
content key hashes everything the image is built from: agent/Dockerfile, the files of the
build context (pyproject.toml, README.md, native/, src/) and the base.

The base (agent/Dockerfile's one build argument, BASE_IMAGE):
- ``debian`` (the default): a minimal Debian trixie root file system that mmdebstrap
  makes from Debian packages (python3, ca-certificates; no docs, man pages or locales),
  imported as ``localhost/kloghub-base:trixie-<recipe key>``. Needs only the Debian
  archive. The tarball is cached (``<cache>/image/base-trixie-<key>.tar``) and remade
  only when the recipe below changes.
- any image reference, e.g. ``python:3.13-slim-trixie`` (pulled from its registry).

Next to the image, in ``${KLOGHUB_CACHE:-~/.cache/kloghub}/image/``: the image as an OCI
archive (``kloghub-src-<key>.oci.tar``, gzip layers as a registry stores them), its SBOM
(``...spdx.json``, SPDX 2.3 JSON by syft) and a summary (``...json``: compressed size,
package count, build time). syft is taken from PATH or built once from the Go module proxy
(``go install github.com/anchore/syft/cmd/syft@SYFT_VERSION``) into ``<cache>/tools/bin``.

Needs buildah (Debian: ``apt-get install buildah``), plus mmdebstrap for the Debian base;
run as root or where buildah can use a user namespace. Builds run with ``--isolation
chroot`` (no runtime, no cgroups needed) and ``--layers`` (unchanged stages are reused).
Measured on two shared cores (2026-12-03): the Debian base 30-45 s (mmdebstrap); a
build with no layer and no cache reused 140 s (the build stage's Debian packages, then
cargo); after a change to the Python sources 45-75 s; the OCI archive and SBOM another
~25 s; ``ensure`` with nothing changed 0.6 s.
Standard library only.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "agent" / "Dockerfile"
IGNOREFILE = REPO / "agent" / "Dockerfile.dockerignore"
NAME = "localhost/kloghub"
SOURCE = "https://github.com/kloghub/kloghub"
SYFT_VERSION = "v1.57.2"
SYFT_MODULE = "github.com/anchore/syft/cmd/syft"

# What the build context holds (agent/Dockerfile.dockerignore lets only these in).
CONTEXT_FILES = ("pyproject.toml", "README.md")
CONTEXT_TREES = ("native", "src")
SKIPPED_PARTS = {"__pycache__", "target"}
SKIPPED_SUFFIXES = (".pyc", ".so", ".egg-info")

# --------------------------------------------------------------------------- Debian base
SUITE = "trixie"
MIRROR = "http://deb.debian.org/debian"
SECURITY = "http://deb.debian.org/debian-security"
BASE_PACKAGES = ("python3", "ca-certificates")
DPKG_OPTIONS = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",  # licences stay (and syft reads them)
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/locale/*",
)


def log(message: str) -> None:
    print(f"image: {message}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    root = os.environ.get("KLOGHUB_CACHE") or str(Path.home() / ".cache" / "kloghub")
    path = Path(root).expanduser() / "image"
    path.mkdir(parents=True, exist_ok=True)
    return path


def run(*command: str, capture: bool = False) -> str:
    """Runs a command; its output goes to stderr unless captured (then returned)."""
    result = subprocess.run(
        command,
        stdout=subprocess.PIPE if capture else sys.stderr,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        sys.exit(f"image: `{' '.join(command)}` failed (exit {result.returncode})")
    return result.stdout if capture else ""


def image_id(ref: str) -> str | None:
    """The ID of image ``ref`` in local storage, or None."""
    result = subprocess.run(
        ["buildah", "inspect", "--type", "image", "--format", "{{.FromImageID}}", ref],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() if result.returncode == 0 else None


def image_exists(ref: str) -> bool:
    return image_id(ref) is not None


def need(tool: str, why: str) -> str:
    path = shutil.which(tool)
    if path is None:
        sys.exit(
            f"image: {tool} is needed {why} and is not on PATH (Debian: apt-get install {tool})"
        )
    return path


# --------------------------------------------------------------------------- the base


def debian_recipe() -> list[str]:
    """The mmdebstrap arguments (without the output path) of the Debian base."""
    return [
        "--variant=minbase",
        "--include=" + ",".join(BASE_PACKAGES),
        '--aptopt=Acquire::Languages "none"',  # no translations downloaded
        *(f"--dpkgopt={option}" for option in DPKG_OPTIONS),
        SUITE,
        "-",  # the output path goes here
        f"deb {MIRROR} {SUITE} main",
        f"deb {MIRROR} {SUITE}-updates main",
        f"deb {SECURITY} {SUITE}-security main",
    ]


def debian_key() -> str:
    return hashlib.sha256(json.dumps(debian_recipe()).encode()).hexdigest()[:16]


def debian_base() -> str:
    """The Debian base image, made (mmdebstrap) and imported only when not there yet."""
    key = debian_key()
    ref = f"localhost/kloghub-base:{SUITE}-{key}"
    if image_exists(ref):
        return ref
    tarball = cache_dir() / f"base-{SUITE}-{key}.tar"
    if not tarball.exists():
        need("mmdebstrap", "to make the Debian base from Debian packages")
        log(f"making the Debian {SUITE} base with mmdebstrap (packages from {MIRROR})")
        started = time.monotonic()
        partial = tarball.with_suffix(".partial.tar")
        args = debian_recipe()
        args[args.index("-")] = str(partial)
        run("mmdebstrap", "--quiet", *args)
        partial.replace(tarball)
        log(f"base root file system made in {time.monotonic() - started:.0f} s: {tarball}")
    log(f"importing {tarball.name} as {ref}")
    container = run("buildah", "from", "scratch", capture=True).strip()
    try:
        run("buildah", "add", "--quiet", container, str(tarball), "/")
        run("buildah", "config", "--env", "LANG=C.UTF-8", container)
        run("buildah", "commit", "--quiet", container, ref)
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True, check=False)
    return ref


def resolve_base(base: str) -> str:
    """The base's local name, pulled (registry) or made (Debian) when missing."""
    if base == "debian":
        return debian_base()
    if not image_exists(base):
        run("buildah", "pull", "--quiet", base)
    return base


# --------------------------------------------------------------------------- the image


def context_paths() -> list[Path]:
    paths = [REPO / name for name in CONTEXT_FILES]
    for tree in CONTEXT_TREES:
        for path in sorted((REPO / tree).rglob("*")):
            rel = path.relative_to(REPO)
            if path.is_dir() or SKIPPED_PARTS & set(rel.parts):
                continue
            if path.name.endswith(SKIPPED_SUFFIXES) or any(
                part.endswith(".egg-info") for part in rel.parts
            ):
                continue
            paths.append(path)
    return [DOCKERFILE, IGNOREFILE, *paths]


def content_key(base_ref: str) -> str:
    """Hash of the base (its image ID: a moved tag is a new base) and of every file the
    image is built from."""
    digest = hashlib.sha256(f"base {image_id(base_ref)}\n".encode())
    for path in context_paths():
        data = path.read_bytes()
        mode = "x" if os.access(path, os.X_OK) else "-"
        digest.update(f"{path.relative_to(REPO)} {mode} {len(data)}\n".encode())
        digest.update(data)
    return digest.hexdigest()[:16]


def version() -> str:
    for line in (REPO / "pyproject.toml").read_text(encoding="utf-8").splitlines():
        if line.startswith("version = "):
            return line.split('"')[1]
    sys.exit("image: no version in pyproject.toml")


def revision() -> str:
    """The commit the sources are from (``-dirty`` when the build context differs)."""

    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False
        )
        return result.stdout.strip() if result.returncode == 0 else ""

    head = git("rev-parse", "HEAD") or "unknown"
    watched = ["agent", *CONTEXT_FILES, *CONTEXT_TREES]
    dirty = git("status", "--porcelain", "--", *watched)
    return f"{head}-dirty" if dirty else head


def artifacts(key: str) -> dict[str, Path]:
    stem = cache_dir() / f"kloghub-src-{key}"
    return {
        "archive": stem.with_suffix(".oci.tar"),
        "sbom": stem.with_suffix(".spdx.json"),
        "summary": stem.with_suffix(".json"),
    }


# The build downloads (PyPI, crates.io) with this machine's trust: its CA bundle and pip's
# site config are bind-mounted read-only into the RUN steps, so a TLS-intercepting proxy's
# CA that the host trusts works in the build too. Mounts never reach a layer.
HOST_TRUST = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pip.conf")


def host_trust() -> list[str]:
    return [f"--volume={path}:{path}:ro" for path in HOST_TRUST if Path(path).is_file()]


def build(base: str, key: str, base_ref: str) -> str:
    ref = f"{NAME}:src-{key}"
    log(f"building {ref} from {base_ref} (buildah, --isolation chroot)")
    started = time.monotonic()
    run(
        "buildah",
        "bud",
        "--layers",
        "--isolation",
        "chroot",
        "--file",
        str(DOCKERFILE),
        "--ignorefile",
        str(IGNOREFILE),
        "--build-arg",
        f"BASE_IMAGE={base_ref}",
        "--build-arg",
        f"VERSION={version()}",
        "--build-arg",
        f"REVISION={revision()}",
        "--build-arg",
        f"SOURCE={SOURCE}",
        *host_trust(),
        "--label",
        f"io.kloghub.content={key}",
        "--tag",
        ref,
        "--tag",
        f"{NAME}:{version()}",
        str(REPO),
    )
    seconds = time.monotonic() - started
    log(f"built {ref} in {seconds:.0f} s (base {base})")
    for stale in artifacts(key).values():  # of an earlier build of the same sources
        stale.unlink(missing_ok=True)
    summary = artifacts(key)["summary"]
    summary.write_text(json.dumps({"image": ref, "build_seconds": round(seconds)}) + "\n")
    return ref


def syft() -> str:
    found = shutil.which("syft")
    if found:
        return found
    bindir = cache_dir().parent / "tools" / "bin"
    target = bindir / "syft"
    if target.exists():
        return str(target)
    go = need("go", "to build syft (the SBOM generator) from the Go module proxy")
    log(f"building syft {SYFT_VERSION} from the Go module proxy (once; a few minutes)")
    bindir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=bindir, prefix=".syft-") as tmp:
        env = dict(os.environ, GOBIN=tmp, CGO_ENABLED="0")
        command = [go, "install", "-p", "2", "-trimpath", f"{SYFT_MODULE}@{SYFT_VERSION}"]
        if subprocess.run(command, env=env, stdout=sys.stderr, check=False).returncode != 0:
            sys.exit(f"image: `{' '.join(command)}` failed")
        (Path(tmp) / "syft").replace(target)
    return str(target)


def compressed_size(archive: Path) -> int:
    """Bytes a registry stores for the image: its manifest's config and (gzip) layers."""
    with tarfile.open(archive) as tar:

        def blob(digest: str) -> dict[str, object]:
            member = tar.extractfile("blobs/" + digest.replace(":", "/"))
            assert member is not None
            return dict(json.load(member))

        index = tar.extractfile("index.json")
        assert index is not None
        (manifest_ref,) = json.load(index)["manifests"]
        manifest = blob(manifest_ref["digest"])
    layers = manifest["layers"]
    assert isinstance(layers, list)
    config = manifest["config"]
    assert isinstance(config, dict)
    return int(config["size"]) + sum(int(layer["size"]) for layer in layers)


def describe(key: str) -> None:
    """The OCI archive, the SBOM and the summary of image ``key`` (made once)."""
    paths = artifacts(key)
    ref = f"{NAME}:src-{key}"
    if not paths["archive"].exists():
        partial = paths["archive"].with_suffix(".partial")
        partial.unlink(missing_ok=True)
        run("buildah", "push", "--quiet", ref, f"oci-archive:{partial}:{ref}")
        partial.replace(paths["archive"])
    if not paths["sbom"].exists():
        log(f"SBOM of {ref} (syft, SPDX JSON)")
        partial = paths["sbom"].with_suffix(".partial")
        run(
            syft(),
            "scan",
            "--quiet",
            f"oci-archive:{paths['archive']}",
            "--output",
            f"spdx-json={partial}",
        )
        partial.replace(paths["sbom"])
    summary = json.loads(paths["summary"].read_text()) if paths["summary"].exists() else {}
    packages = json.loads(paths["sbom"].read_text()).get("packages", [])
    summary |= {
        "image": ref,
        "compressed_bytes": compressed_size(paths["archive"]),
        "packages": len(packages),
        "archive": str(paths["archive"]),
        "sbom": str(paths["sbom"]),
    }
    paths["summary"].write_text(json.dumps(summary, indent=2) + "\n")
    log(
        f"{ref}: {summary['compressed_bytes'] / 1e6:.1f} MB compressed, "
        f"{summary['packages']} packages in the SBOM ({paths['sbom']})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("build", "ensure", "ref"))
    parser.add_argument(
        "--base",
        default=os.environ.get("KLOGHUB_IMAGE_BASE", "debian"),
        help="`debian` (mmdebstrap, no registry) or an image such as python:3.13-slim-trixie",
    )
    parser.add_argument("--no-sbom", action="store_true", help="skip the OCI archive and SBOM")
    args = parser.parse_args()
    need("buildah", "to build the image without a daemon")
    if args.command == "ref":  # no lock: answers at once, even while a build runs
        base_ref = (
            f"localhost/kloghub-base:{SUITE}-{debian_key()}" if args.base == "debian" else args.base
        )
        if not image_exists(base_ref):
            log(f"the base {base_ref} is not there: run `make image`")
            return 1
        ref = f"{NAME}:src-{content_key(base_ref)}"
        if not image_exists(ref):
            log(f"{ref} is not built: run `make image`")
            return 1
        print(ref)
        return 0
    with (cache_dir() / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two runs at once build once
        base_ref = resolve_base(args.base)
        key = content_key(base_ref)
        ref = f"{NAME}:src-{key}"
        if args.command == "ensure" and image_exists(ref):
            log(f"reusing {ref} (built from the current sources)")
        else:
            build(args.base, key, base_ref)
        if not args.no_sbom:
            describe(key)
    print(ref)
    return 0


if __name__ == "__main__":
    sys.exit(main())
