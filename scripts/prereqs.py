"""Check that this machine can build kloghub's virtualenv and Helm; say what is missing.

Usage: python3 scripts/prereqs.py   (the search-server prerequisites are checked by
`scripts/search_servers.py check`).
"""

import shutil
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
    sys.exit("Go is needed to build Helm for the chart tests (scripts/get_helm.py): install Go.")
