"""The configuration models: one per component, the user-facing documentation of each key.

Every model refuses unknown keys. Sizes take units (``256MiB``), durations take units
(``30s``, ``10m``). Secrets are ``SecretStr``: they print as ``**********``.

Every secret ``X`` can instead be read from a file with ``X_file`` (a mounted Kubernetes
Secret, a Docker secret): the file is read once, when the configuration is loaded, and
its content fills ``X``, so the code that uses the secret reads ``X`` whatever its
source. One trailing line ending (``\n`` or ``\r\n``) is removed, as ``echo`` and
``kubectl create secret --from-file`` leave one; everything else, including quotes,
backslashes and inner newlines, is kept byte for byte. Setting both ``X`` and ``X_file``
is an error, as are a missing, unreadable, non-UTF-8, empty or oversized file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_core import PydanticCustomError

from kloghub.config._types import (
    OUTPUT_SCHEMES,
    SINK_SCHEMES,
    Duration,
    HostPort,
    Model,
    Size,
    check_url,
)

__all__ = [
    "AgentConfig",
    "AuditSource",
    "AuditWebhookConfig",
    "BufferConfig",
    "CollectorConfig",
    "ContainerSource",
    "DetectionsConfig",
    "EnrichmentConfig",
    "FiltersConfig",
    "ListenerConfig",
    "MultilineConfig",
    "NodeSource",
    "NormalizerConfig",
    "NotifyConfig",
    "OutputConfig",
    "ParsersConfig",
    "QueueConfig",
    "RedactionConfig",
    "RetryConfig",
    "SearchConfig",
    "SinkConfig",
    "SourcesConfig",
    "TLSConfig",
    "UserCredential",
    "read_secret_file",
]

Level = Literal["crawl", "walk", "run"]
WhenFull = Literal["block", "drop_oldest"]
ReadFrom = Literal["head", "tail"]
MultilineRule = Literal["java", "python", "go"]
SecretKind = Literal["bearer_token", "jwt", "aws_access_key", "url_password", "key_value_secret"]


# --------------------------------------------------------------------------- secrets in files

MAX_SECRET_FILE_BYTES = 64 * 1024
"""A secret file larger than this is refused: it is not a key, a password or a token."""


def read_secret_file(path: Path) -> str:
    """The secret held in ``path``: UTF-8 text minus one trailing line ending.

    Raises ValueError with a sentence that names the file and never its content.
    """
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_SECRET_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: is a directory, not a file") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if len(data) > MAX_SECRET_FILE_BYTES:
        raise ValueError(f"{path}: larger than {MAX_SECRET_FILE_BYTES // 1024} KiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: is not UTF-8 text") from None
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    if not text:
        raise ValueError(f"{path}: is empty")
    return text


class FileSecret(SecretStr):
    """A secret read from a file; remembers the file so re-validation does not read it again."""

    def __init__(self, secret_value: str, source: Path) -> None:
        super().__init__(secret_value)
        self.source = source


class SecretFilesModel(Model):
    """A model whose secrets ``X`` (listed in ``secret_files``) may come from ``X_file``."""

    secret_files: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _read_secret_files(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for name in cls.secret_files:
            key = f"{name}_file"
            given = out.get(key)
            if given is None:
                continue
            current = out.get(name)
            if isinstance(current, FileSecret) and current.source == Path(given):
                continue  # re-validation (an assignment): already read from this file
            if current is not None and not isinstance(current, FileSecret):
                raise PydanticCustomError(
                    "secret_file",
                    "{key}: set {name} or {key}, not both",
                    {"key": key, "name": name},
                )
            if not isinstance(given, str | Path) or not str(given):
                raise PydanticCustomError(
                    "secret_file", "{key}: expected a file path", {"key": key, "name": name}
                )
            try:
                out[name] = FileSecret(read_secret_file(Path(given)), Path(given))
            except ValueError as exc:
                raise PydanticCustomError(
                    "secret_file", "{key}: {problem}", {"key": key, "problem": str(exc)}
                ) from None
        return out


# --------------------------------------------------------------------------- shared


class TLSConfig(Model):
    """TLS settings; certificates come from files (mounted Secrets in the chart)."""

    enabled: bool = False
    """Use TLS (implied by a ``+tls``/``+https`` URL scheme)."""
    ca_file: Path | None = None
    """CA bundle that signs the peer's certificate; the system store when unset."""
    cert_file: Path | None = None
    """Own certificate, for mutual TLS."""
    key_file: Path | None = None
    """Private key of ``cert_file``."""
    credential_bundle_file: Path | None = None
    """Own key and certificate chain in one PEM file (a pod certificate's
    ``credentialBundlePath``, which the kubelet rotates): read again whenever it changes,
    for new connections. Instead of ``cert_file`` and ``key_file``."""
    verify: bool = True
    """Verify the peer's certificate and host name. Turn off only for tests."""

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> TLSConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        if self.credential_bundle_file is not None and self.cert_file is not None:
            raise ValueError("set credential_bundle_file or cert_file and key_file, not both")
        return self


class RetryConfig(Model):
    """Exponential backoff with full jitter between attempts (tenacity)."""

    initial_backoff: Duration = 0.5
    """First wait after a failure."""
    max_backoff: Duration = 60.0
    """Upper bound of any wait (a server's Retry-After is honoured up to this)."""
    max_attempts: int | None = Field(default=None, ge=1)
    """Give up after this many attempts; unset = retry forever (the default: nothing is lost)."""


class QueueConfig(Model):
    """A bounded disk queue in front of a sink or an output."""

    max_bytes: Size = Size(1024 * 1024 * 1024)
    """Upper bound on the bytes the queue keeps on disk."""
    segment_bytes: Size = Size(8 * 1024 * 1024)
    """Size of one segment file; a segment is deleted once all its events are delivered."""
    when_full: WhenFull = "block"
    """``block``: apply back-pressure (agents stop reading); ``drop_oldest``: drop and count."""


NOTIFY_LABELS = ("rule_id", "alertname", "severity", "user", "namespace", "resource", "name")
"""Labels of a notified alert (its identity; Alertmanager labels), from the alert document:
``rule.id``, ``rule.name``, ``kloghub.alert.severity``, ``user.name``, the namespace, the
resource (``pods/exec``) and the object name of the triggering audit event."""


class NotifyConfig(SecretFilesModel):
    """One receiver of alert notifications (``collector.detections.notify[]``).

    Alerts are grouped per receiver by ``group_by`` (rule + identity by default) and sent
    with Alertmanager's timing: a new group waits ``group_wait`` (collecting the rest of
    its burst), alerts new to a notified group wait until ``group_interval`` after the
    previous notification, and the same alert (same labels) recurring is notified again
    at most every ``repeat_interval``. Dry-run alerts are never notified. A receiver that
    fails, hangs or is down is retried with backoff in the background and never holds
    back ingestion: beyond ``max_pending`` alerts waiting, new alerts are dropped for this
    receiver (counted in ``kloghub_notifications_dropped{reason="queue_full"}`` and
    announced in the next notification)."""

    secret_files = ("url", "password", "token")

    type: Literal["webhook", "slack", "alertmanager"]
    """``webhook``: a JSON POST of the group (Alertmanager's webhook payload shape, with
    the ECS alert documents); ``slack``: a Slack-compatible incoming webhook (``text``);
    ``alertmanager``: Alertmanager API v2, ``POST <url>/api/v2/alerts``."""
    name: str | None = None
    """Receiver name in metrics and logs; ``<type>-<index>`` when unset."""
    url: SecretStr | None = None
    """``http(s)://`` endpoint (a secret: incoming-webhook URLs carry their token). For
    ``alertmanager`` the base URL (``http://alertmanager:9093``)."""
    url_file: Path | None = None
    """Read ``url`` from this file at load (one trailing newline removed)."""
    username: str | None = None
    """HTTP basic authentication (with ``password``)."""
    password: SecretStr | None = None
    password_file: Path | None = None
    """Read ``password`` from this file at load (one trailing newline removed)."""
    token: SecretStr | None = None
    """Bearer token (``Authorization: Bearer ...``)."""
    token_file: Path | None = None
    """Read ``token`` from this file at load (one trailing newline removed)."""
    tls: TLSConfig = Field(default_factory=TLSConfig)
    timeout: Duration = 10.0
    """One request's time limit; a request that takes longer is retried."""
    retry: RetryConfig = Field(
        default_factory=lambda: RetryConfig(initial_backoff=1.0, max_backoff=60.0)
    )
    """Backoff between attempts of one notification (``Retry-After`` honoured); 4xx
    answers other than 408/429 are permanent (the notification is given up, counted as
    failed)."""
    group_by: list[str] = Field(default_factory=lambda: ["rule_id", "user"])
    """Labels that make a group (``...``: every label, one group per alert)."""
    group_wait: Duration = 1.0
    """How long a new group waits before its first notification (Alertmanager's default is
    30s; 1s keeps the first alert within the 5 s bound)."""
    group_interval: Duration = 300.0
    """Minimum time between two notifications of one group about new alerts."""
    repeat_interval: Duration = 4 * 3600.0
    """Minimum time before an alert already notified (same labels, still recurring) is
    notified again."""
    resolve_timeout: Duration = 300.0
    """An alert not seen again for this long is resolved (Alertmanager's
    ``resolve_timeout``): its ``endsAt``; recurring after that, it is new again."""
    rate_limit: int | None = Field(default=30, ge=1)
    """At most this many notifications (requests) per minute to this receiver; groups
    that are due wait for their turn (unset: no limit)."""
    max_pending: int = Field(default=10_000, ge=1)
    """Alerts held in memory for this receiver (waiting in groups, in flight, or remembered
    until resolved); beyond it, alerts wait in the disk queue (``queue_max_bytes``), and
    alerts submitted faster than the disk takes them are dropped and counted."""
    queue_max_bytes: Size = Size(64 * 1024 * 1024)
    """Alerts not yet notified are kept in a disk queue (``<state_dir>/notify/<name>``)
    until the receiver accepted them, so that a restart notifies them then; beyond this
    many bytes the oldest are dropped (``kloghub_records_dropped{reason="buffer_full"}``)."""
    max_alerts: int = Field(default=50, ge=1)
    """Alerts listed in one notification; the rest are counted as truncated."""
    generator_url: str | None = None
    """Link sent with each alert (Alertmanager ``generatorURL``, webhook
    ``externalURL``), e.g. your Kibana or OpenSearch Dashboards URL."""

    @model_validator(mode="after")
    def _check(self) -> NotifyConfig:
        if self.url is None:
            raise ValueError("a receiver needs url (or url_file)")
        url = self.url.get_secret_value()
        if not url.startswith(("http://", "https://")):
            raise ValueError("url: expected an http:// or https:// URL")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if self.token is not None and self.username is not None:
            raise ValueError("set token or username/password, not both")
        for label in self.group_by:
            if label != "..." and label not in NOTIFY_LABELS:
                raise ValueError(
                    f"group_by: {label}: not a label (one of {', '.join(NOTIFY_LABELS)}, or ...)"
                )
        return self


class RuleSettings(Model):
    """Tuning of one rule (``collector.detections.rules.<rule id or title>``)."""

    enabled: bool = True
    """Off: the rule raises no alert (a correlation reading it still counts its matches)."""
    mode: Literal["alert", "dry-run"] | None = None
    """``dry-run`` writes the alert marked ``kloghub.alert.mode: dry-run`` and notifies
    nobody; unset: ``detections.mode``."""
    severity: Literal["informational", "low", "medium", "high", "critical"] | None = None
    """Replaces the rule's ``level``."""
    exceptions: list[dict[str, Any]] = Field(default_factory=list)
    """Events that must not alert: each entry is a Sigma selection (every field must
    match; a list matches any of its values; modifiers allowed), e.g.
    ``{"user.username|startswith": "system:serviceaccount:argocd:"}``. Field names are
    Sigma's audit taxonomy or ECS names."""


class DetectionsConfig(Model):
    """Sigma detections evaluated on every ECS document: in the collector
    (``collector.detections``, on at level ``run``), or at level ``crawl`` in the agent on
    what it keeps in the node's store (``agent.detections``: the node's own audit log).

    Alerts are ECS documents (``event.kind: alert``) written to every sink, in the
    ``kloghub.alerts`` dataset (data stream ``logs-kloghub.alerts-<namespace>``; in the
    embedded store, ``kloghub search 'event.kind:alert'`` finds them)."""

    enabled: bool = False
    """Run the rules. Loading them (pySigma) costs about a second and 20 MiB at start."""
    default_pack: bool = True
    """Load kloghub's default Kubernetes rules (``kloghub rules list``)."""
    rules_dirs: list[Path] = Field(default_factory=list)
    """More Sigma rule files or folders (``*.yml``/``*.yaml``), loaded after the pack."""
    mode: Literal["alert", "dry-run"] = "alert"
    """Default mode of every rule."""
    rules: dict[str, RuleSettings] = Field(default_factory=dict)
    """Per-rule settings by rule id or title; a key that names no loaded rule is an error."""
    max_groups: int = Field(default=10_000, ge=1)
    """Per correlation rule: groups (e.g. identities) kept at once; the least recently seen
    is evicted beyond (counted)."""
    notify: list[NotifyConfig] = Field(default_factory=list)
    """Receivers of alert notifications (webhook, Slack, Alertmanager); dry-run alerts are
    never notified."""

    @field_validator("notify")
    @classmethod
    def _unique_names(cls, value: list[NotifyConfig]) -> list[NotifyConfig]:
        names = [r.name or f"{r.type}-{i}" for i, r in enumerate(value)]
        if len(set(names)) != len(names):
            raise ValueError("receiver names must be unique")
        return value


# --------------------------------------------------------------------------- agent


class ContainerSource(Model):
    """Container logs written by the kubelet (CRI or docker json-file)."""

    enabled: bool = True
    paths: list[str] = Field(default_factory=lambda: ["/var/log/pods/*/*/*.log"])
    """Globs of files to tail. ``/var/log/containers/*.log`` symlinks are resolved."""
    exclude: list[str] = Field(default_factory=list)
    """Globs of files never to tail."""
    format: Literal["auto", "cri", "docker"] = "auto"
    """Line format; ``auto`` detects it per file."""
    read_from: ReadFrom = "head"
    """Where to start in a file seen for the first time."""


class NodeSource(Model):
    """Plain-text node logs (syslog, kubelet, containerd)."""

    enabled: bool = False
    paths: list[str] = Field(
        default_factory=lambda: ["/var/log/syslog", "/var/log/messages", "/var/log/kubelet.log"]
    )
    exclude: list[str] = Field(default_factory=list)
    read_from: ReadFrom = "tail"
    """Node logs can be large on first start: by default only new lines are shipped."""


class AuditSource(Model):
    """The Kubernetes API server's audit log (JSON lines), on control-plane nodes."""

    enabled: bool = False
    path: str = "/var/log/kubernetes/audit/audit.log"
    read_from: ReadFrom = "head"


class SourcesConfig(Model):
    """What the agent tails, and how it watches files."""

    containers: ContainerSource = Field(default_factory=ContainerSource)
    node: NodeSource = Field(default_factory=NodeSource)
    audit: AuditSource = Field(default_factory=AuditSource)
    rescan_interval: Duration = 60.0
    """Full rescan of the globs, in addition to inotify, which rescans at once when an entry
    is created, moved or deleted (Fluent Bit's ``Refresh_Interval``). Where inotify is
    missing or its watch limit is reached, new files are found only by this rescan."""
    poll_interval: Duration = 0.25
    """How often an idle file is checked for growth when inotify is not available (or does
    not cover every directory), and while a partial line or multiline group waits for its
    flush timeout."""
    progress_check_interval: Duration = 2.0
    """With inotify covering every directory: how often every open file is still checked
    for growth, rotation and truncation, whatever inotify said (the safety net for missed
    events; Fluent Bit's ``Progress_Check_Interval``). Changed directories are read at once."""
    fingerprint_bytes: int = Field(default=1024, ge=16, le=65536)
    """Bytes at the head of a file that identify it together with (device, inode)."""
    close_deleted_after: Duration = 60.0
    """A deleted file is read to its end, then closed; never held open longer than this."""
    max_open_files: int = Field(default=1024, ge=1)
    """Upper bound on files open at once; the rest wait their turn."""


class MultilineConfig(Model):
    """Joining the lines of one stack trace into one record (after CRI/docker reassembly)."""

    enabled: bool = False
    rules: list[MultilineRule] = Field(default_factory=lambda: list(get_args(MultilineRule)))
    """Built-in rules to apply."""
    start_pattern: str | None = None
    """A custom regex that marks the first line of a record; other lines are continuations."""
    flush_timeout: Duration = 1.0
    """Emit a pending record after this long without a continuation."""

    @field_validator("start_pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            import re

            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


class ParsersConfig(Model):
    """How lines become records."""

    max_line_bytes: Size = Size(1024 * 1024)
    """Longer lines are truncated and flagged; the file keeps being tailed."""
    max_record_bytes: Size = Size(1024 * 1024)
    """Cap on a record joined from CRI ``P`` parts or docker partials; past it, truncated."""
    multiline: MultilineConfig = Field(default_factory=MultilineConfig)


class EnrichmentConfig(Model):
    """Pod metadata from a node-scoped watch of the Kubernetes API."""

    kubernetes_api: bool = True
    """Watch the pods of this node; off = only what the file path tells (pod, namespace, uid)."""
    kubeconfig: Path | None = None
    """Outside a cluster: the kubeconfig file; in a pod the service account is used."""
    tombstone_ttl: Duration = 600.0
    """Deleted pods stay in the cache this long, so their last lines are still enriched."""
    persist_cache: bool = True
    """Keep the cache in the state dir so a restarted agent enriches immediately."""
    namespace_metadata: bool = False
    """Add namespace labels and annotations (a namespace watch; more API load)."""
    node_labels: bool = False
    """Add the node's labels (one node watch)."""


class RedactionConfig(Model):
    """Secrets in messages replaced with ``[REDACTED]`` (offsets are never changed)."""

    enabled: bool = False
    builtin: list[SecretKind] = Field(default_factory=lambda: list(get_args(SecretKind)))
    patterns: list[str] = Field(default_factory=list)
    """Extra regexes whose matches are redacted."""


class FiltersConfig(Model):
    """Agent-side filters, applied in this order."""

    include_namespaces: list[str] = Field(default_factory=list)
    """Globs; when set, only these namespaces are shipped."""
    exclude_namespaces: list[str] = Field(default_factory=list)
    label_selector: str | None = None
    """A Kubernetes label selector (``app=web,tier!=cache``) pods must match."""
    exclude_containers: list[str] = Field(default_factory=list)
    """Container names (globs) never shipped."""
    drop_regex: list[str] = Field(default_factory=list)
    """Messages matching any of these are dropped."""
    keep_regex: list[str] = Field(default_factory=list)
    """When set, only messages matching one of these are kept."""
    redact: RedactionConfig = Field(default_factory=RedactionConfig)


class BufferConfig(QueueConfig):
    """The agent's disk buffer between the pipeline and the outputs."""

    max_bytes: Size = Size(256 * 1024 * 1024)
    flush_interval: Duration = Field(default=0.25, ge=0.0, le=60.0)
    """Group commit (like Fluent Bit's ``Flush``): what all files pushed during this
    interval is written and ``fsync``-ed together, once. A file's checkpoint moves only
    after that, so this is also the longest a read waits to count as safe; ``0`` commits
    as soon as the writer is free. The tailer does not wait for it: at most 8 MiB may wait
    for their ``fsync``, then reading pauses (back-pressure)."""


class OutputConfig(SecretFilesModel):
    """One destination of the agent, named by URL (credentials never in the URL)."""

    secret_files = ("shared_key", "password")

    url: str
    """``forward://host:port``, ``forward+tls://host:port``, ``file:PATH``, ``stdout:``,
    ``store:PATH``. Several forward outputs are load-balanced with failover."""
    shared_key: SecretStr | None = None
    """Forward protocol shared key (HELO/PING/PONG handshake)."""
    shared_key_file: Path | None = None
    """Read ``shared_key`` from this file at load (one trailing newline removed)."""
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    """Read ``password`` from this file at load (one trailing newline removed)."""
    tls: TLSConfig = Field(default_factory=TLSConfig)
    compress: Literal["none", "gzip"] = "none"
    """``gzip`` sends CompressedPackedForward: less network, more CPU."""
    batch_max_records: int = Field(default=2048, ge=1)
    batch_max_bytes: Size = Size(2 * 1024 * 1024)
    flush_interval: Duration = 1.0
    """Send a partial batch after this long."""
    ack_timeout: Duration = 30.0
    """Resend a chunk that was not acknowledged in this time."""
    retry: RetryConfig = Field(default_factory=RetryConfig)

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        return check_url(value, OUTPUT_SCHEMES)


class AgentConfig(Model):
    """The DaemonSet agent."""

    node_name: str | None = None
    """This node's name (``NODE_NAME`` from the downward API); scopes the pod watch."""
    state_dir: Path = Path("/var/lib/kloghub")
    """Checkpoints, buffer segments and the metadata cache (a hostPath in the chart)."""
    metrics_addr: HostPort = "127.0.0.1:2020"
    """Serves /metrics, /healthz and /readyz."""
    drain_timeout: Duration = 30.0
    """On SIGTERM, time to hand on in-flight data before a hard stop."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    sources: SourcesConfig = Field(default_factory=SourcesConfig)
    parsers: ParsersConfig = Field(default_factory=ParsersConfig)
    enrichment: EnrichmentConfig = Field(default_factory=EnrichmentConfig)
    filters: FiltersConfig = Field(default_factory=FiltersConfig)
    buffer: BufferConfig = Field(default_factory=BufferConfig)
    outputs: list[OutputConfig] = Field(
        default_factory=lambda: [OutputConfig(url="forward://127.0.0.1:24224")]
    )
    detections: DetectionsConfig = Field(default_factory=DetectionsConfig)
    """Level crawl: run the detections on what the agent keeps in its ``store:`` output
    (audit rules need ``sources.audit`` on: a control-plane node's own audit log); alerts
    go to the same store. Only with a ``store:`` output: where the agent forwards, the
    collector runs the detections (``collector.detections``)."""

    @field_validator("outputs")
    @classmethod
    def _at_least_one(cls, value: list[OutputConfig]) -> list[OutputConfig]:
        if not value:
            raise ValueError("at least one output is needed")
        return value

    @model_validator(mode="after")
    def _detections_need_the_store(self) -> AgentConfig:
        if self.detections.enabled and not all(o.url.startswith("store:") for o in self.outputs):
            raise ValueError(
                "detections.enabled needs the store: output (level crawl); where the agent "
                "forwards, enable collector.detections instead"
            )
        return self


# --------------------------------------------------------------------------- collector


class UserCredential(SecretFilesModel):
    """One user of the Forward handshake (Fluentd ``<user>``, Fluent Bit ``Username``)."""

    secret_files = ("password",)

    username: str = Field(min_length=1)
    """The identity this user proves; the node's name unless ``shared``."""
    password: SecretStr
    """The user's password; or give ``password_file``."""
    password_file: Path | None = None
    """Read ``password`` from this file at load (one trailing newline removed)."""
    shared: bool = False
    """A credential several agents use (one Secret mounted by a whole DaemonSet): it proves
    membership, not a node, so ``host.name`` stays the sender's claim (and document ids
    are kept apart per claimed host, not per proven node). Off: ``username`` is the node's
    name and becomes ``host.name`` of everything this user sends."""
    roles: list[str] = Field(default_factory=lambda: ["node"])
    """What this identity may send: ``control-plane`` (see ``audit_roles``) may send
    Kubernetes audit events."""


class ListenerConfig(SecretFilesModel):
    """The Forward protocol listener."""

    secret_files = ("shared_key",)

    shared_key: SecretStr | None = None
    """When set, clients must complete the HELO/PING/PONG handshake with this key."""
    shared_key_file: Path | None = None
    """Read ``shared_key`` from this file at load (one trailing newline removed)."""
    users: list[UserCredential] = Field(default_factory=list)
    """Username/password pairs checked in the handshake (Fluentd ``user_auth`` with
    ``<user>`` entries, Fluent Bit ``Username``/``Password``); with users set, every peer
    must give one of them, except one with a verified client certificate (which may give
    none)."""
    self_hostname: str = "kloghub-collector"
    tls: TLSConfig = Field(default_factory=TLSConfig)
    require_client_cert: bool = False
    """Mutual TLS: refuse clients without a certificate signed by ``tls.ca_file``. With
    ``tls.ca_file`` set and this off, a certificate is checked when a client offers one."""
    unauthenticated: Literal["refuse", "warn", "allow"] = "warn"
    """Peers that proved nothing (no certificate, no handshake): ``refuse`` them (level
    run), accept them with one warning per peer address (``warn``, level walk), or
    ``allow`` silently. Their records are stored with ``kloghub.sender.method: none``."""
    audit_roles: list[str] = Field(default_factory=lambda: ["control-plane"])
    """Roles whose records may become Kubernetes audit documents (tag ``audit``). From any
    other sender they are stored as node logs flagged ``policy_violation`` and counted in
    ``kloghub_policy_violations_total``. A certificate's roles are its Organization (O)
    names; a user's are ``users[].roles``."""
    max_frame_bytes: Size = Size(8 * 1024 * 1024)
    """Frames larger than this are refused and the connection closed (also the bound of
    decompressed entries). Agents send requests of ``batch_max_bytes`` (2 MiB)."""
    max_connections: int = Field(default=1024, ge=1)
    """Open connections at once, all peers together."""
    max_connections_per_peer: int = Field(default=16, ge=1)
    """Open connections at once from one IP address (an agent needs a few)."""
    handshake_timeout: Duration = 10.0
    """Time a new connection has to finish TLS and the HELO/PING/PONG handshake."""
    idle_timeout: Duration = 90.0
    """Close connections silent for this long (agents send keepalives or data sooner)."""
    frame_timeout: Duration = 60.0
    """Close a connection that started a frame and did not finish it in this time."""
    dedup_window: Duration = 600.0
    """Resent chunks with an id seen within this window are acknowledged, not stored twice."""


class NormalizerConfig(Model):
    """Records → ECS documents."""

    preserve_original: bool = False
    """Keep the raw line in ``event.original``."""
    parse_json: bool = True
    """Parse JSON application logs (``level`` → ``log.level``, ``msg`` → ``message``)."""
    json_target: str = "json"
    """Where the remaining keys of a parsed JSON message go."""
    dedot: bool = True
    """``app.kubernetes.io/name`` → ``app_kubernetes_io/name`` in labels and annotations."""
    namespace: str = "default"
    """The data stream namespace (``logs-kubernetes.container_logs-<namespace>``)."""


class SinkConfig(SecretFilesModel):
    """One destination of the collector, named by URL (credentials never in the URL)."""

    secret_files = ("password", "api_key", "token")

    url: str
    """``elasticsearch+https://host:9200``, ``opensearch+https://host:9200``,
    ``splunk-hec+https://host:8088``, ``store:PATH``, ``file:PATH`` or ``stdout:``."""
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    """Read ``password`` from this file at load (one trailing newline removed)."""
    api_key: SecretStr | None = None
    """Elasticsearch API key (base64 ``id:key``)."""
    api_key_file: Path | None = None
    """Read ``api_key`` from this file at load (one trailing newline removed)."""
    token: SecretStr | None = None
    """Splunk HEC token."""
    token_file: Path | None = None
    """Read ``token`` from this file at load (one trailing newline removed)."""
    index: str | None = None
    """Splunk index (the token's default when unset)."""
    indexer_ack: bool = False
    """Splunk: wait for indexer acknowledgement before events leave the queue."""
    tls: TLSConfig = Field(default_factory=TLSConfig)
    compress: bool = True
    """gzip request bodies."""
    batch_max_records: int = Field(default=1000, ge=1)
    batch_max_bytes: Size = Size(5 * 1024 * 1024)
    flush_interval: Duration = 1.0
    concurrency: int = Field(default=2, ge=1, le=64)
    """Requests in flight at once."""
    retry: RetryConfig = Field(default_factory=RetryConfig)
    queue: QueueConfig = Field(default_factory=QueueConfig)
    retention: Duration | None = None
    """Store and index lifecycle: delete data older than this (unset = keep)."""
    max_store_bytes: Size | None = None
    """Embedded store: delete the oldest data beyond this size."""

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        return check_url(value, SINK_SCHEMES)


class AuditWebhookConfig(Model):
    """An HTTPS endpoint for the API server's audit webhook backend
    (``--audit-webhook-config-file``): real-time audit events without access to the
    control plane's files, as managed clusters and Falco's k8saudit plugin use it.

    It accepts ``POST`` of ``audit.k8s.io/v1`` ``EventList`` batches and answers ``200``
    only once every event is durable in every sink's queue (the API server retries a
    batch that got no answer or a 5xx: documents have content-derived ids, so a retried
    batch overwrites itself). Each event is normalized exactly like a line of a tailed
    audit log. Mutual TLS is required: the webhook kubeconfig's client certificate must be
    signed by ``client_ca_file`` and carry one of ``allowed_roles`` as an Organization
    (O). Anything else is refused before the body is read and counted in
    ``kloghub_audit_webhook_refused_total``."""

    enabled: bool = False
    listen: HostPort = "127.0.0.1:9443"
    cert_file: Path | None = None
    """The endpoint's serving certificate (the kubeconfig's ``certificate-authority``
    must sign it, for the name in its ``server`` URL)."""
    key_file: Path | None = None
    client_ca_file: Path | None = None
    """CA that signs the API server's client certificate."""
    allowed_roles: list[str] = Field(default_factory=lambda: ["control-plane"])
    """Organizations (O) of the client certificate that may send audit events."""
    max_body_bytes: Size = Size(16 * 1024 * 1024)
    """Largest batch accepted (``413`` above): the API server's batches are at most
    ``--audit-webhook-batch-max-size`` events (400 by default)."""
    max_concurrent: int = Field(default=4, ge=1, le=64)
    """Batches stored at once; more wait their turn (memory stays bounded)."""

    @model_validator(mode="after")
    def _tls_files(self) -> AuditWebhookConfig:
        if self.enabled and None in (self.cert_file, self.key_file, self.client_ca_file):
            raise ValueError(
                "the audit webhook needs cert_file, key_file and client_ca_file (mutual TLS "
                "is how the API server proves it is the sender)"
            )
        return self


POD_CERTIFICATE_SIGNER = "kloghub.io/forward-agent"


class PodCertificatesConfig(Model):
    """A signer of Kubernetes pod certificates (``certificates.k8s.io/v1``
    PodCertificateRequests, GA in Kubernetes 1.37): each agent pod gets a client
    certificate that names its node, which the listener's mutual TLS then proves.

    The kubelet creates a request for each pod with a ``podCertificate`` projected volume
    of ``signer_name`` (NodeRestriction lets a node ask only for its own pods). The
    collector watches the requests of ``namespace`` and issues those whose
    ServiceAccount is in ``service_accounts``: CN ``system:node:<spec.nodeName>``, O = the
    ServiceAccount's roles, extended key usage clientAuth, for the request's public key,
    signed by ``ca_cert_file``/``ca_key_file`` (the CA of ``listener.tls.ca_file``). Any
    other request is denied with a reason. Several collectors may run it at once: the
    first status update wins, the others' conflicts are ignored. The collector's
    ServiceAccount needs list and watch on ``podcertificaterequests``, patch on
    ``podcertificaterequests/status`` and ``sign`` on ``signers`` ``signer_name``; the
    API server needs the NodeRestriction admission plugin (kubeadm and the managed
    services enable it), which is what makes ``spec.nodeName`` the requesting node."""

    enabled: bool = False
    signer_name: str = POD_CERTIFICATE_SIGNER
    """The ``signerName`` of the requests this collector answers (the agents' volume)."""
    namespace: str = ""
    """The namespace whose requests are answered (the agents'; the chart's release
    namespace). Required when enabled."""
    service_accounts: dict[str, list[str]] = Field(default_factory=dict)
    """ServiceAccount name → roles (the certificate's O names): only pods of these
    ServiceAccounts get certificates. ``{kloghub-agent: [node]}``."""
    ca_cert_file: Path | None = None
    """The issuing CA's certificate (also put into the returned chain)."""
    ca_key_file: Path | None = None
    """The issuing CA's private key (a mounted Secret)."""
    max_lifetime: Duration = 86400.0
    """Longest certificate issued (the request's ``maxExpirationSeconds`` may ask for
    less); at least 1 h, as the API server requires. The kubelet renews it from
    ``beginRefreshAt``, at about 80 % of the lifetime."""
    kubeconfig: Path | None = None
    """Credentials for the API server; the pod's ServiceAccount in a cluster when unset."""

    @model_validator(mode="after")
    def _complete(self) -> PodCertificatesConfig:
        if not self.enabled:
            return self
        missing = [
            name
            for name, value in (
                ("namespace", self.namespace),
                ("ca_cert_file", self.ca_cert_file),
                ("ca_key_file", self.ca_key_file),
            )
            if not value
        ]
        if missing:
            raise ValueError(f"pod certificates need {', '.join(missing)}")
        if not self.service_accounts:
            raise ValueError("pod certificates need service_accounts (whose pods get them)")
        if self.max_lifetime < 3600:
            raise ValueError("max_lifetime: at least 1h (the API server refuses shorter)")
        return self


class CollectorConfig(Model):
    """The central collector."""

    listen: HostPort = "127.0.0.1:24224"
    """Forward protocol address (``0.0.0.0:24224`` in the chart)."""
    state_dir: Path = Path("/var/lib/kloghub-collector")
    """Disk queues and the dead-letter store (a PersistentVolumeClaim in the chart)."""
    metrics_addr: HostPort = "127.0.0.1:2021"
    drain_timeout: Duration = 30.0
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    listener: ListenerConfig = Field(default_factory=ListenerConfig)
    normalizer: NormalizerConfig = Field(default_factory=NormalizerConfig)
    sinks: list[SinkConfig] = Field(
        default_factory=lambda: [SinkConfig(url="store:/var/lib/kloghub-collector/store.db")]
    )
    detections: DetectionsConfig = Field(default_factory=DetectionsConfig)
    audit_webhook: AuditWebhookConfig = Field(default_factory=AuditWebhookConfig)
    pod_certificates: PodCertificatesConfig = Field(default_factory=PodCertificatesConfig)
    dead_letter_max_bytes: Size = Size(512 * 1024 * 1024)
    """Upper bound of the dead-letter store."""
    max_in_flight_bytes: Size = Size(16 * 1024 * 1024)
    """Bytes the Forward listener may hold, across all connections, between reading a
    request and having it stored in every sink queue (as received, before decoding; held
    in memory decoded and normalized, several times larger). When reached, the listener
    stops reading and acknowledging (TCP back-pressure to the agents, which keep the data
    in their buffers) until stores complete. With the defaults the collector stays under
    256 MiB resident whatever the load."""

    @field_validator("sinks")
    @classmethod
    def _at_least_one(cls, value: list[SinkConfig]) -> list[SinkConfig]:
        if not value:
            raise ValueError("at least one sink is needed")
        return value


# --------------------------------------------------------------------------- search


class SearchConfig(SecretFilesModel):
    """``kloghub search`` defaults."""

    secret_files = ("password", "api_key")

    store: str = "store:/var/lib/kloghub-collector/store.db"
    """Where to search: ``store:PATH``, ``elasticsearch+https://...``, ``opensearch+https://...``."""
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    """Read ``password`` from this file at load (one trailing newline removed)."""
    api_key: SecretStr | None = None
    api_key_file: Path | None = None
    """Read ``api_key`` from this file at load (one trailing newline removed)."""
    tls: TLSConfig = Field(default_factory=TLSConfig)
    limit: int = Field(default=100, ge=1)
    format: Literal["table", "json", "ndjson", "csv"] = "table"
    since: str = "1h"
    """Default time window when no --since is given."""

    @field_validator("store")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        return check_url(
            value,
            (
                "store",
                "elasticsearch+https",
                "elasticsearch+http",
                "opensearch+https",
                "opensearch+http",
            ),
        )
