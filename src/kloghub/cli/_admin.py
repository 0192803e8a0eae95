"""``kloghub dlq list|replay`` and ``kloghub setup``: operating the collector's sinks."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from kloghub import core

if TYPE_CHECKING:
    from kloghub import config

__all__ = ["add_parsers", "dlq", "setup"]


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: object) -> None:
    add_common = common  # _add_common(parser, levels)
    dlq_parser = sub.add_parser(
        "dlq",
        help="list or replay events a SIEM refused (the dead-letter queue)",
        description="Events refused permanently by a sink (mapping conflicts, bad events) are "
        "kept with the reason in <collector state_dir>/dlq. List them, fix the cause (e.g. "
        "the mapping), then replay them through the configured sinks.",
        epilog="examples:\n  kloghub dlq list --config kloghub.yaml\n"
        "  kloghub dlq replay --config kloghub.yaml --error mapper_parsing_exception",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    dlq_parser.add_argument("action", choices=("list", "replay"))
    add_common(dlq_parser, ("walk", "run"))  # type: ignore[operator]
    dlq_parser.add_argument("--state-dir", metavar="DIR", help="the collector's state dir")
    dlq_parser.add_argument("--sink", metavar="URL", help="only entries of this sink")
    dlq_parser.add_argument("--error", metavar="KIND", help="only entries of this error kind")
    dlq_parser.add_argument("--format", choices=("table", "json"), default="table")
    dlq_parser.add_argument(
        "--newest",
        type=int,
        default=10,
        metavar="N",
        help="list: show the N newest entries (default 10)",
    )

    setup_parser = sub.add_parser(
        "setup",
        help="install index templates and lifecycle policies into Elasticsearch/OpenSearch",
        description="Install (idempotently) the composable index templates of the "
        "logs-kubernetes.* and logs-kloghub.alerts-* data streams and the ILM/ISM retention "
        "policy into every Elasticsearch and OpenSearch sink of the collector "
        "configuration. Collectors also do this when they start.",
        epilog="example: kloghub setup --config kloghub.yaml --retention-days 90",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(setup_parser, ("walk", "run"))  # type: ignore[operator]
    setup_parser.add_argument(
        "--sink",
        action="append",
        metavar="URL",
        help="Elasticsearch/OpenSearch URL (default: the config's sinks)",
    )
    setup_parser.add_argument(
        "--retention-days",
        type=int,
        metavar="N",
        help="delete data older than N days (default: sink retention or 30)",
    )


def dlq(args: argparse.Namespace, settings: config.Settings) -> int:
    import orjson

    from kloghub import sinks

    directory = settings.collector.state_dir / "dlq"
    if args.action == "list":
        summary = sinks.summarize(directory, newest=args.newest)
        if args.format == "json":
            print(
                orjson.dumps(
                    {
                        "entries": summary.entries,
                        "bytes": summary.bytes,
                        "unreadable": summary.unreadable,
                        "by_error": summary.by_error,
                        "by_sink": summary.by_sink,
                        "newest": [
                            {
                                "time": e.time,
                                "sink": e.sink,
                                "error": e.error,
                                "reason": e.reason,
                                "tag": e.tag,
                                "id": e.id,
                            }
                            for e in summary.newest
                        ],
                    },
                    option=orjson.OPT_INDENT_2,
                ).decode()
            )
            return 0
        print(
            f"{summary.entries} dead-lettered events in {directory} "
            f"({summary.bytes} bytes, {summary.unreadable} unreadable lines)"
        )
        for kind, count in sorted(summary.by_error.items(), key=lambda kv: -kv[1]):
            print(f"  {count:8d}  {kind}")
        for entry in summary.newest:
            print(f"{entry.time}  {entry.sink}  {entry.error}: {entry.reason[:120]}")
        return 0
    report = asyncio.run(
        sinks.replay(directory, settings.collector.sinks, sink=args.sink, error=args.error)
    )
    print(
        f"replayed: {report.delivered} delivered, {report.refused} refused again, "
        f"{report.unsettled} unanswered, {report.skipped} not chosen"
    )
    return 0 if report.refused == 0 and report.unsettled == 0 else 1


async def _install(cfg: config.SinkConfig, days: int | None) -> list[str]:
    from kloghub import sinks

    sink = sinks.build(cfg, _NoDeadLetters())
    if not isinstance(sink, sinks.ElasticsearchSink | sinks.OpenSearchSink):
        raise core.ConfigError([f"{cfg.url}: setup is for Elasticsearch and OpenSearch sinks"])
    sink.install_templates_at_start = False
    await sink.start()
    try:
        return await sink.install_templates(days)
    finally:
        await sink.stop(5)


class _NoDeadLetters:
    async def put(self, sink: str, rejections: object) -> None:
        raise RuntimeError("setup sends no events")


def setup(args: argparse.Namespace, settings: config.Settings) -> int:
    from kloghub import config

    targets = (
        [config.SinkConfig(url=u) for u in args.sink]
        if args.sink
        else [
            s
            for s in settings.collector.sinks
            if s.url.split(":", 1)[0].split("+", 1)[0] in ("elasticsearch", "opensearch")
        ]
    )
    if not targets:
        print(
            "kloghub: no Elasticsearch or OpenSearch sink configured (use --sink URL)",
            file=sys.stderr,
        )
        return 2
    status = 0
    for target in targets:
        try:
            installed = asyncio.run(_install(target, args.retention_days))
        except core.ConfigError as error:
            print(f"kloghub: {'; '.join(error.problems)}", file=sys.stderr)
            return 2
        except Exception as exc:  # noqa: BLE001 - reported per sink; the others still run
            print(f"{target.url}: failed: {exc}", file=sys.stderr)
            status = 1
            continue
        print(f"{target.url}: installed {len(installed)}: {', '.join(installed)}")
    return status
