"""Libraries stay light to import: counting is loaded on first use, the HTTP stack with
the daemon (issue 12, item 5)."""

import subprocess
import sys


def _modules_after(code: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys\nprint(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return set(result.stdout.split())


def test_importing_the_libraries_imports_no_http_stack_or_prometheus():
    """If this failed, every `import kloghub.tail` (and `kloghub search`) would pay for
    aiohttp and prometheus-client again."""
    loaded = _modules_after(
        "import kloghub.tail, kloghub.parse, kloghub.buffer, kloghub.filters, kloghub.store\n"
        "from kloghub.runtime import metrics"
    )
    assert "aiohttp" not in loaded
    assert "prometheus_client" not in loaded


def test_first_metric_use_registers_the_metrics():
    """If this failed, the lazy metrics module would hand out something that is not the
    registered prometheus metric, and /metrics would miss what libraries count."""
    loaded = _modules_after(
        "from kloghub.runtime import metrics, _metrics\n"
        "assert metrics.LINES_READ is _metrics.LINES_READ\n"
        "metrics.LINES_READ.labels('containers').inc(3)\n"
        "assert _metrics.REGISTRY.get_sample_value("
        "'kloghub_lines_read_total', {'source': 'containers'}) == 3"
    )
    assert "prometheus_client" in loaded
