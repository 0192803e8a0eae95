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


def test_the_agent_and_its_observability_server_import_no_http_stack():
    """If this failed, every node agent would carry aiohttp (~12 MiB resident, a fifth of
    a second at start) although it ships over Forward and serves /metrics without it."""
    loaded = _modules_after(
        "import kloghub.agent, kloghub.transport\n"
        "from kloghub import runtime\n"
        "runtime.ObservabilityServer('127.0.0.1:0', runtime.Readiness())\n"
        "runtime.Daemon"
    )
    assert "kloghub.agent" in loaded
    assert "aiohttp" not in loaded


def test_the_audit_webhook_is_still_reachable_from_the_transport_package():
    """If this failed, the collector could not build its audit webhook input after it was
    made lazy."""
    loaded = _modules_after(
        "from kloghub import transport\nassert transport.AuditWebhook.__name__ == 'AuditWebhook'"
    )
    assert "aiohttp" in loaded
