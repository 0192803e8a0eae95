"""The metrics every daemon exports (Prometheus); names are stable and low-cardinality.

Metrics live in the process-wide registry of ``prometheus_client``: components import
this module and update the metric they own. Labels are component kinds and reasons,
never file names or pods.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

__all__ = [
    "ALERTS",
    "ALERTS_SUPPRESSED",
    "ALERT_HOOK_ERRORS",
    "AUDIT_WEBHOOK_REFUSED",
    "BUFFER_BYTES",
    "BYTES_READ",
    "DEAD_LETTERED",
    "DETECTION_ERRORS",
    "DROPPED",
    "FILES_TAILED",
    "FORWARD_CONNECTIONS",
    "FORWARD_DUPLICATE_CHUNKS",
    "FORWARD_IN_FLIGHT_BYTES",
    "FORWARD_PAUSED",
    "FORWARD_REFUSED",
    "GZ_CONTINUATIONS",
    "INVALID_UTF8",
    "KERNEL_FALLBACKS",
    "KERNEL_RECORDS",
    "LAG_BYTES",
    "LINES_READ",
    "NOTIFICATIONS_DROPPED",
    "NOTIFICATIONS_FAILED",
    "NOTIFICATIONS_PENDING",
    "NOTIFICATIONS_RETRIED",
    "NOTIFICATIONS_SENT",
    "PARSE_ERRORS",
    "POD_CACHE_SIZE",
    "POLICY_VIOLATIONS",
    "READY",
    "RECORDS_ACKED",
    "RECORDS_RECEIVED",
    "RECORDS_RETRIED",
    "RECORDS_SENT",
    "REDACTIONS",
    "REGISTRY",
    "REQUEST_SECONDS",
    "ROLLOVER_COPIES",
    "ROTATIONS",
    "TAIL_PAUSED_SECONDS",
    "TRUNCATED_LINES",
    "TRUNCATIONS",
    "CollectorRegistry",
]

KERNEL_FALLBACKS = Counter(
    "kloghub_kernel_fallbacks",
    "Files encoded by the Python reference kernel instead of the compiled one, by reason.",
    ["reason"],
)
KERNEL_RECORDS = Counter(
    "kloghub_collector_kernel_records",
    "Records of PackedForward requests the collector made documents of, by path: "
    "compiled (the request kernel) or python (records it left to the normalizer).",
    ["path"],
)
LINES_READ = Counter("kloghub_lines_read", "Lines read from tailed files.", ["source"])
BYTES_READ = Counter("kloghub_bytes_read", "Bytes read from tailed files.", ["source"])
PARSE_ERRORS = Counter(
    "kloghub_parse_errors", "Lines passed on as raw text because they did not parse.", ["format"]
)
RECORDS_SENT = Counter("kloghub_records_sent", "Records handed to a next hop.", ["output"])
RECORDS_ACKED = Counter("kloghub_records_acked", "Records the next hop acknowledged.", ["output"])
RECORDS_RETRIED = Counter("kloghub_records_retried", "Records sent again.", ["output"])
DROPPED = Counter("kloghub_records_dropped", "Records dropped, by reason.", ["reason"])
DEAD_LETTERED = Counter(
    "kloghub_records_dead_lettered", "Records refused permanently and kept in the DLQ.", ["sink"]
)
BUFFER_BYTES = Gauge("kloghub_buffer_bytes", "Bytes held in a disk buffer or queue.", ["buffer"])
FILES_TAILED = Gauge("kloghub_files_tailed", "Files currently open for tailing.")
LAG_BYTES = Gauge(
    "kloghub_lag_bytes", "Bytes written to tailed files and not yet acknowledged downstream."
)
POD_CACHE_SIZE = Gauge("kloghub_pod_cache_size", "Pods in the metadata cache (with tombstones).")
REDACTIONS = Counter(
    "kloghub_redactions", "Secrets replaced with [REDACTED] in messages, by kind.", ["kind"]
)
READY = Gauge("kloghub_ready", "1 when the daemon is ready to accept and ship data.")
ROTATIONS = Counter("kloghub_tail_rotations", "Tailed files renamed or deleted (rotations).")
TRUNCATIONS = Counter(
    "kloghub_tail_truncations", "Tailed files that shrank below the read offset (copytruncate)."
)
GZ_CONTINUATIONS = Counter(
    "kloghub_tail_gz_continuations",
    "Rotated files continued inside their gzip because they were compressed before the end.",
)
INVALID_UTF8 = Counter(
    "kloghub_invalid_utf8",
    "Records read with invalid UTF-8 (shipped flagged, the raw bytes kept), by source.",
    ["source"],
)
TRUNCATED_LINES = Counter(
    "kloghub_truncated_lines", "Lines or joined records cut at the configured size limit."
)
TAIL_PAUSED_SECONDS = Counter(
    "kloghub_tail_paused_seconds", "Time reading was paused by back-pressure from outputs."
)
REQUEST_SECONDS = Histogram(
    "kloghub_request_seconds", "Duration of requests to a next hop.", ["output"]
)
RECORDS_RECEIVED = Counter(
    "kloghub_records_received", "Records received and stored by an input.", ["input"]
)
FORWARD_CONNECTIONS = Gauge(
    "kloghub_forward_connections", "Open connections to the Forward protocol listener."
)
AUDIT_WEBHOOK_REFUSED = Counter(
    "kloghub_audit_webhook_refused",
    "Audit webhook requests refused (not stored), by reason.",
    ["reason"],
)
FORWARD_REFUSED = Counter(
    "kloghub_forward_refused",
    "Forward connections or requests refused or closed by a listener limit, by reason.",
    ["reason"],
)
ROLLOVER_COPIES = Counter(
    "kloghub_sink_rollover_copies_removed",
    "Resent documents that landed in a newer backing index than their first copy and were "
    "removed from it (deduplication across a data stream rollover).",
    ["output"],
)
FORWARD_DUPLICATE_CHUNKS = Counter(
    "kloghub_forward_duplicate_chunks",
    "Resent Forward chunks acknowledged again without being stored twice.",
)
POLICY_VIOLATIONS = Counter(
    "kloghub_policy_violations",
    "Records a sender was not allowed to send as they were (stored flagged), by reason.",
    ["reason"],
)
FORWARD_IN_FLIGHT_BYTES = Gauge(
    "kloghub_forward_in_flight_bytes",
    "Bytes the Forward listener read and has not yet stored in every sink queue.",
)
FORWARD_PAUSED = Counter(
    "kloghub_forward_paused",
    "Reads the Forward listener delayed because max_in_flight_bytes was reached.",
)
ALERTS = Counter(
    "kloghub_alerts",
    "Alerts raised by the detection rules and written to the sinks, by mode (alert, dry-run).",
    ["mode"],
)
ALERTS_SUPPRESSED = Counter(
    "kloghub_alerts_suppressed",
    "Rule matches an exception of the rule's settings suppressed.",
)
DETECTION_ERRORS = Counter(
    "kloghub_detection_errors",
    "Rule evaluations that raised on a document (the rule is skipped for it).",
)
ALERT_HOOK_ERRORS = Counter(
    "kloghub_alert_hook_errors",
    "Alert callbacks (notifications) that raised when handed an alert.",
)
NOTIFICATIONS_SENT = Counter(
    "kloghub_notifications_sent",
    "Alert notifications (requests) a receiver accepted, by receiver.",
    ["receiver"],
)
NOTIFICATIONS_FAILED = Counter(
    "kloghub_notifications_failed",
    "Alert notifications given up (permanent answer or retry.max_attempts), by receiver.",
    ["receiver"],
)
NOTIFICATIONS_RETRIED = Counter(
    "kloghub_notifications_retried",
    "Alert notification attempts made again after a failure, by receiver.",
    ["receiver"],
)
NOTIFICATIONS_DROPPED = Counter(
    "kloghub_notifications_dropped",
    "Alerts not notified to a receiver, by receiver and reason (queue_full).",
    ["receiver", "reason"],
)
NOTIFICATIONS_PENDING = Gauge(
    "kloghub_notifications_pending",
    "Alerts a receiver holds (waiting in groups, in flight, or remembered until resolved).",
    ["receiver"],
)
