"""The ``kloghub`` command: argument parsing and exit codes. Only this layer exits.

Exit codes: 0 ok; 1 the daemon stopped after a crash (or a search backend failed);
2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kloghub import __version__, core
from kloghub.cli import _admin, _rules

if TYPE_CHECKING:
    from kloghub import config

__all__ = ["build_parser", "main"]

EXIT_USAGE = 2

LEVELS = ("crawl", "walk", "run")
"""The presets (``config.LEVELS``; spelled out here so that ``--help`` imports no config
model: `kloghub search --help` starts without pydantic, aiohttp or prometheus-client)."""

_EPILOG = """\
Levels (--level, env KLOGHUB_LEVEL, Helm value `level`):
  crawl  agent only; container logs kept in a store on the node
  walk   agents ship enriched container and node logs to one collector archive
  run    walk + audit logs, redaction, ECS documents to Elasticsearch/OpenSearch/Splunk

Settings come from, highest first: flags, KLOGHUB_* environment variables (nested with
__, e.g. KLOGHUB_AGENT__BUFFER__MAX_BYTES=512MiB), the --config file, the level preset.
Run `kloghub validate --level run` to see every setting with its effective value.
"""


_SEARCH_EPILOG = """\
query syntax:
  connection refused                free text in the message (every word; case-insensitive)
  "connection refused"              a phrase;  time*  words starting with "time"
  pod:web-*  level:error            exact field values (case-sensitive), * and ? wildcards
  user:"system:anonymous"           exact value, no wildcards;  field:*  the field exists
  verb:(get OR list)                several values of one field
  a AND b   a OR b   NOT a   -a     AND is implied by a space; use ( ) to group
  @timestamp:[now-1h TO now]        time range ([ ] inclusive, { } exclusive, * open);
  @timestamp:>=2026-11-27T06:00:00Z also > < <=; times: now, now-15m, RFC 3339 (UTC if no zone)
field aliases:
  ns, namespace → kubernetes.namespace   pod → kubernetes.pod.name
  container → kubernetes.container.name  node → kubernetes.node.name   host → host.name
  level → log.level   user → user.name   verb → kubernetes.audit.verb  dataset → data_stream.dataset
  resource → kubernetes.audit.objectRef.resource   code → kubernetes.audit.responseStatus.code
  image → container.image.name   msg → message   time → @timestamp
  any other name is an ECS field path as it is, e.g. event.action:delete
window: --since/--until, or a @timestamp range in the query; otherwise the last hour.

examples:
  kloghub search 'user:system:serviceaccount:*' --since 1h --namespace payments
  kloghub search 'verb:(create OR patch) resource:clusterrolebindings' --since 24h
  kloghub search 'level:error NOT "health check"' --pod 'web-*' --follow
"""


def _add_common(p: argparse.ArgumentParser, levels: Sequence[str]) -> None:
    p.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="YAML configuration file (sections agent:, collector:, search:)",
    )
    p.add_argument(
        "--level", choices=levels, help="preset to start from (default: walk, or KLOGHUB_LEVEL)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kloghub",
        description="kloghub ships Kubernetes logs without losing a line, and finds "
        "what a pod or a service account did during an incident.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"kloghub {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    agent = sub.add_parser(
        "agent",
        help="tail container, node and audit logs on this node and ship them",
        description="Run the node agent (a DaemonSet in Kubernetes): tails container logs "
        "(CRI and docker), node logs and the audit log, enriches them with pod metadata, "
        "buffers them on disk and ships them to the collector or a local store.",
        epilog="example: kloghub agent --level crawl --path '/var/log/pods/*/*/*.log' "
        "--state-dir /tmp/kloghub",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(agent, LEVELS)
    agent.add_argument(
        "--path",
        action="append",
        metavar="GLOB",
        help="container log files to tail (repeatable); replaces the defaults",
    )
    agent.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="checkpoints and buffer (default /var/lib/kloghub)",
    )
    agent.add_argument(
        "--output",
        action="append",
        metavar="URL",
        help="forward://host:port, forward+tls://host:port, file:PATH, stdout:, "
        "store:PATH (repeatable)",
    )
    agent.add_argument(
        "--node-name",
        metavar="NAME",
        help="this node's name; scopes the pod watch (the chart sets it)",
    )
    agent.add_argument(
        "--metrics-addr",
        metavar="HOST:PORT",
        help="serve /metrics, /healthz, /readyz here (default 127.0.0.1:2020)",
    )

    collector = sub.add_parser(
        "collector",
        help="receive logs from agents (Forward protocol) and send them on",
        description="Run the central collector: accepts the Fluentd Forward protocol from "
        "kloghub agents, Fluent Bit and Fluentd, normalizes to ECS and writes to "
        "Elasticsearch, OpenSearch, Splunk HEC or its embedded store.",
        epilog="example: kloghub collector --listen 0.0.0.0:24224 "
        "--sink opensearch+https://search:9200",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(collector, ("walk", "run"))
    collector.add_argument(
        "--listen", metavar="HOST:PORT", help="Forward protocol address (default 127.0.0.1:24224)"
    )
    collector.add_argument(
        "--sink",
        action="append",
        metavar="URL",
        help="elasticsearch+https://..., opensearch+https://..., "
        "splunk-hec+https://..., store:PATH, file:PATH, stdout: (repeatable)",
    )
    collector.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="disk queues and dead letters (default /var/lib/kloghub-collector)",
    )
    collector.add_argument(
        "--metrics-addr",
        metavar="HOST:PORT",
        help="serve /metrics, /healthz, /readyz here (default 127.0.0.1:2021)",
    )

    search = sub.add_parser(
        "search",
        help="answer incident questions from the store that holds the logs",
        description='Search logs: free text, field:value (wildcards), "phrases", '
        "AND/OR/NOT and parentheses.",
        epilog=_SEARCH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(search, LEVELS)
    search.add_argument(
        "query",
        metavar="QUERY",
        nargs="?",
        default="",
        help="what to find (empty: everything in the window)",
    )
    search.add_argument(
        "--store",
        metavar="URL",
        help="store:PATH, elasticsearch+https://..., opensearch+https://...",
    )
    search.add_argument(
        "--index",
        metavar="PATTERN",
        default="logs-kubernetes.*,logs-kloghub.alerts-*",
        help="Elasticsearch/OpenSearch data streams to search (default: the logs and the "
        "alerts, logs-kubernetes.*,logs-kloghub.alerts-*)",
    )
    search.add_argument("--since", metavar="WHEN", help="15m, 2h, 7d or an RFC 3339 time")
    search.add_argument("--until", metavar="WHEN", help="same forms as --since (excluded)")
    search.add_argument("--namespace", metavar="NS", help="only this namespace (wildcards)")
    search.add_argument("--pod", metavar="POD", help="only this pod (wildcards)")
    search.add_argument("--container", metavar="C", help="only this container (wildcards)")
    search.add_argument("--limit", type=int, metavar="N", help="at most N matches (default 100)")
    search.add_argument(
        "--sort",
        choices=("asc", "desc"),
        help="asc: the oldest N, oldest first; desc: the newest N, newest first "
        "(default: the newest N, oldest first)",
    )
    search.add_argument("--format", choices=("table", "json", "ndjson", "csv"))
    search.add_argument("--follow", action="store_true", help="keep printing new matches")

    validate = sub.add_parser(
        "validate",
        help="print the effective configuration, or every error in it",
        description="Load the configuration as a daemon would (preset, file, environment) "
        "and print the effective settings with secrets masked, or every problem found. "
        "Exits non-zero on any problem. Settings that are valid but unsafe (a Forward "
        "listener without authentication, unauthenticated peers accepted at level run, "
        "a handshake without TLS, limits that let one peer hold much memory) are printed "
        "as warnings on stderr.",
        epilog="example: kloghub validate --config kloghub.yaml --level run",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(validate, LEVELS)
    validate.add_argument(
        "--section", choices=("agent", "collector", "search"), help="print only this section"
    )

    _admin.add_parsers(sub, _add_common)
    _rules.add_parsers(sub, _add_common)

    demo = sub.add_parser(
        "demo",
        help="run the whole pipeline on generated logs, then search them",
        description="Generate a realistic node (pods, rotation, an audit log with an attack "
        "story), run agent and collector into an embedded store, and show incident searches.",
        epilog="example: kloghub demo --sink opensearch+http://127.0.0.1:9200",
    )
    demo.add_argument(
        "--sink",
        metavar="URL",
        help="write to this Elasticsearch/OpenSearch (level run) instead of a "
        "temporary embedded store (level walk)",
    )
    demo.add_argument(
        "--workdir",
        metavar="DIR",
        help="where to generate the node and the store (default: a new temp dir)",
    )
    return parser


def _agent_flags(args: argparse.Namespace) -> dict[str, Any]:
    agent: dict[str, Any] = {}
    if args.path:
        agent["sources"] = {"containers": {"paths": args.path}}
    if args.output:
        agent["outputs"] = [{"url": url} for url in args.output]
    for key in ("state_dir", "node_name", "metrics_addr"):
        if getattr(args, key) is not None:
            agent[key] = getattr(args, key)
    return agent


def _collector_flags(args: argparse.Namespace) -> dict[str, Any]:
    coll: dict[str, Any] = {}
    if args.sink:
        coll["sinks"] = [{"url": url} for url in args.sink]
    for key in ("listen", "state_dir", "metrics_addr"):
        if getattr(args, key) is not None:
            coll[key] = getattr(args, key)
    return coll


def _search_flags(args: argparse.Namespace) -> dict[str, Any]:
    return {
        key: getattr(args, key)
        for key in ("store", "limit", "format", "since")
        if getattr(args, key) is not None
    }


_SECTION_FLAGS = {
    "agent": _agent_flags,
    "collector": _collector_flags,
    "search": _search_flags,
}


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    """The nested settings that the command line sets (only what was given)."""
    flags: dict[str, Any] = {}
    if getattr(args, "level", None):
        flags["level"] = args.level
    if args.command == "dlq" and args.state_dir:
        flags["collector"] = {"state_dir": args.state_dir}
    section = _SECTION_FLAGS.get(args.command)
    if section is not None and (values := section(args)):
        flags[args.command] = values
    return flags


def _load(args: argparse.Namespace) -> config.Settings:
    from kloghub import config

    return config.load(getattr(args, "config", None), _flags(args))


def _report(error: core.ConfigError) -> int:
    count = len(error.problems)
    print(f"kloghub: configuration has {count} problem{'s' * (count != 1)}:", file=sys.stderr)
    for problem in error.problems:
        print(f"  - {problem}", file=sys.stderr)
    return EXIT_USAGE


def _validate(args: argparse.Namespace, settings: config.Settings) -> int:
    if args.section == "collector" and settings.level == "crawl":
        print("kloghub: there is no collector at level crawl", file=sys.stderr)
        return EXIT_USAGE
    from kloghub import config

    try:
        loaded = _detections_loaded(settings, args.section)
    except core.ConfigError as error:
        return _report(error)
    for warning in config.security_warnings(settings, args.section):
        print(f"kloghub: warning: {warning}", file=sys.stderr)
    print(config.dump(settings, args.section), end="")
    for line in loaded:
        print(line)
    return 0


def _detections_loaded(settings: config.Settings, section: str | None) -> list[str]:
    """The rules each enabled ``detections`` section loads, as YAML comment lines (the
    rules are loaded and checked as the daemon would: a bad rule is a ConfigError)."""
    sections = [("agent", settings.agent.detections)]
    if settings.level != "crawl":
        sections.append(("collector", settings.collector.detections))
    lines = []
    for name, cfg in sections:
        if section not in (None, name) or not cfg.enabled:
            continue
        from kloghub import detect

        where = f"{name}.detections"
        try:
            summary = detect.Detector.from_config(cfg, where=where).summary()
        except detect.LoadError as exc:
            raise core.ConfigError([f"{where}: {e}" for e in exc.errors]) from exc
        lines.append(
            f"# {where}: {summary['rules']} rules loaded ({summary['detections']} detections, "
            f"{summary['correlations']} correlations), {summary['enabled']} enabled, "
            f"mode {summary['mode']}"
        )
        lines.extend(
            f"#   {key.replace('_', '-')}: {', '.join(summary[key])}"
            for key in ("dry_run", "disabled")
            if summary[key]
        )
    return lines


def _collector(_args: argparse.Namespace, settings: config.Settings) -> int:
    if settings.level == "crawl":
        print(
            "kloghub: the collector does not run at level crawl (agents keep logs on "
            "their node); use walk or run",
            file=sys.stderr,
        )
        return EXIT_USAGE
    import asyncio

    from kloghub import collector, runtime

    runtime.setup_logging(settings.collector.log_level)
    try:
        daemon = collector.build(settings.collector)
    except core.ConfigError as error:
        return _report(error)
    return asyncio.run(daemon.run())


def _agent(_args: argparse.Namespace, settings: config.Settings) -> int:
    import asyncio

    from kloghub import agent, runtime

    runtime.setup_logging(settings.agent.log_level)
    try:
        daemon = agent.build(settings.agent)
    except core.ConfigError as error:
        return _report(error)
    return asyncio.run(daemon.run())


def _search(args: argparse.Namespace, settings: config.Settings) -> int:
    import asyncio
    import os
    import shutil

    from kloghub import search, store

    cfg = settings.search
    request = search.Request(
        query=args.query,
        since=args.since,
        until=args.until,
        namespace=args.namespace,
        pod=args.pod,
        container=args.container,
        limit=cfg.limit,
        sort=args.sort,
        follow=args.follow,
        default_since=cfg.since,
    )
    try:
        search.plan(request)
    except search.QueryError as error:
        print(f"kloghub: {error.render()}", file=sys.stderr)
        return EXIT_USAGE
    tty = sys.stdout.isatty()
    formatter = search.make_formatter(
        cfg.format,
        sys.stdout,
        width=shutil.get_terminal_size().columns if tty else None,
        colour=tty and "NO_COLOR" not in os.environ,
    )

    async def run() -> int:
        backend = search.open_backend(cfg.store, cfg, index=args.index)
        try:
            found = await search.run(request, backend, formatter, err=sys.stderr)
        finally:
            await backend.close()
        if not found and not request.follow:
            print(f"kloghub: no matches in {backend.description}", file=sys.stderr)
        return 0

    try:
        return asyncio.run(run())
    except (store.StoreError, search.BackendError) as error:
        print(f"kloghub: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `kloghub search ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _demo(args: argparse.Namespace, _settings: config.Settings) -> int:
    from kloghub import demo, runtime

    runtime.setup_logging("warning")
    return demo.run_demo(args.sink, Path(args.workdir) if args.workdir else None)


_COMMANDS = {
    "agent": _agent,
    "collector": _collector,
    "search": _search,
    "validate": _validate,
    "demo": _demo,
    "dlq": _admin.dlq,
    "setup": _admin.setup,
    "rules": _rules.rules,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = _load(args)
    except core.ConfigError as error:
        return _report(error)
    return _COMMANDS[args.command](args, settings)
