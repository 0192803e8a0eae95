"""Check that this machine can build kloghub (its Rust kernels included), its virtualenv,
Helm and the test suite's Kubernetes control plane (kube-apiserver, etcd, kubectl); say
what is missing.

Usage: python3 scripts/prereqs.py   (the search-server prerequisites are checked by
`scripts/search_servers.py check`).
"""

import shutil
import subprocess
import sys

NEED = (3, 11)

if sys.version_info < NEED:
    sys.exit(
        f"kloghub needs Python {NEED[0]}.{NEED[1]} or newer; this is "
        f"{sys.version.split()[0]} ({sys.executable}). Set PYTHON=/path/to/python3.11 for make."
    )
try:
    import ensurepip  # noqa: F401
    import venv  # noqa: F401
except ImportError:
    sys.exit("Python's venv/ensurepip modules are missing: install python3-venv (Debian).")
if shutil.which("go") is None:
    sys.exit(
        "Go is needed to build Helm (scripts/get_helm.py) and kube-apiserver, etcd and kubectl "
        "(scripts/get_kube.py) for the tests: install Go 1.26 or newer."
    )
if shutil.which("openssl") is None:
    sys.exit(
        "The openssl command is needed to make the test control plane's certificates "
        "(tests/_kube.py): install openssl."
    )

_RUST = (
    "Rust is needed to build kloghub's compiled kernels (native/, the extension module "
    "kloghub._native, built by maturin): install a toolchain with rustup "
    "(https://rustup.rs: `curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh`, then "
    "open a new shell or `. ~/.cargo/env`), or your distribution's `cargo` and `rustc` packages "
    "(Rust 1.85 or newer)."
)
for tool in ("cargo", "rustc"):
    if shutil.which(tool) is None:
        sys.exit(f"{tool} was not found on PATH. {_RUST}")
try:
    subprocess.run(["cargo", "--version"], check=True, capture_output=True, timeout=60)
except (OSError, subprocess.SubprocessError) as exc:
    sys.exit(f"`cargo --version` failed ({exc}). {_RUST}")
