"""``kloghub rules list|validate|test|export``: the detection rules, from the terminal.

- ``list``: the default pack and ``collector.detections.rules_dirs`` (plus ``--rules``),
  with id, title, level, mode, enabled, log source and source file as configured.
- ``validate PATH...``: load files or folders as the collector would (pySigma, then
  kloghub's compiler); every refusal with file, line and reason; exit 1 on any.
- ``test [RULE...]``: backtest the rules (all, or those named by id or title) over the
  events a store, Elasticsearch or OpenSearch holds, oldest first, correlations included,
  and print what would have fired, grouped by identity and namespace, with counts.
- ``export [RULE...] --to elasticsearch|opensearch``: SIEM-native queries through pySigma's
  published backends and kloghub's field pipeline.

Exit codes: 0 ok; 1 rules refused (validate) or the backend failed (test); 2 bad usage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kloghub import config, detect

__all__ = ["add_parsers", "rules"]

_EPILOG = """\
examples:
  kloghub rules list --config kloghub.yaml
  kloghub rules validate ./my-rules/
  kloghub rules test --since 7d --store store:/var/lib/kloghub-collector/store.db
  kloghub rules test 'Exec or attach into a pod' --since 24h --opensearch https://search:9200
  kloghub rules export --to elasticsearch --format dsl > queries.ndjson
"""


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: object) -> None:
    add_common = common  # _add_common(parser, levels)
    parser = sub.add_parser(
        "rules",
        help="list, validate, backtest and export the detection rules (Sigma)",
        description="The Sigma rules the collector runs: kloghub's default pack and "
        "collector.detections.rules_dirs.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        p = actions.add_parser(name, help=help_text, description=help_text)
        add_common(p, ("crawl", "walk", "run"))  # type: ignore[operator]
        return p

    listing = action("list", "the loaded rules with their configured mode and state")
    listing.add_argument("--rules", action="append", type=Path, metavar="PATH",
                         help="more rule files or folders (repeatable)")  # fmt: skip
    listing.add_argument("--format", choices=("table", "json"), default="table")

    validate = action("validate", "load rule files or folders; report every refusal")
    validate.add_argument("paths", nargs="+", type=Path, metavar="PATH")

    test = action("test", "backtest rules over stored events: what would have fired")
    test.add_argument("rule", nargs="*", metavar="RULE", help="rule ids or titles (default: all)")
    test.add_argument("--rules", action="append", type=Path, metavar="PATH",
                      help="more rule files or folders (repeatable)")  # fmt: skip
    test.add_argument("--since", default="7d", metavar="WHEN",
                      help="15m, 2h, 7d or an RFC 3339 time (default 7d)")  # fmt: skip
    test.add_argument("--until", metavar="WHEN", help="same forms as --since (excluded)")
    where = test.add_mutually_exclusive_group()
    where.add_argument("--store", metavar="URL", help="store:PATH (default: search.store)")
    cluster = "https://host:9200 (credentials and TLS: the search: section)"
    where.add_argument("--elasticsearch", metavar="URL", help=cluster)
    where.add_argument("--opensearch", metavar="URL", help=cluster)
    test.add_argument("--index", metavar="PATTERN", default="logs-kubernetes.*",
                      help="data streams to read (default logs-kubernetes.*)")  # fmt: skip
    test.add_argument("--format", choices=("table", "json"), default="table")

    export = action("export", "SIEM-native queries of the rules (pySigma backends)")
    export.add_argument("rule", nargs="*", metavar="RULE", help="rule ids or titles (default: all)")
    export.add_argument("--to", required=True, choices=("elasticsearch", "opensearch"))
    export.add_argument("--rules", action="append", type=Path, metavar="PATH",
                        help="more rule files or folders (repeatable)")  # fmt: skip
    export.add_argument(
        "--format",
        default="lucene",
        help="lucene (default), dsl (query DSL, one JSON line per rule); elasticsearch: "
        "kibana_ndjson; opensearch: monitor_rule, "
        "dashboards_ndjson",
    )


def rules(args: argparse.Namespace, settings: config.Settings) -> int:
    from kloghub import core, detect

    try:
        if args.action == "validate":
            return _validate(args.paths)
        # The rules that run at this level: the agent's at crawl, the collector's above.
        cfg = (
            settings.agent.detections
            if settings.level == "crawl"
            else settings.collector.detections
        )
        if getattr(args, "rules", None):
            cfg = cfg.model_copy(update={"rules_dirs": [*cfg.rules_dirs, *args.rules]})
        if args.action == "export":
            return _export(args, cfg)
        detector = detect.Detector.from_config(cfg)
        if args.action == "list":
            return _list(args, detector)
        return _test(args, settings, detector)
    except detect.LoadError as error:
        _errors(error)
        return 2
    except core.ConfigError as error:
        for problem in error.problems:
            print(f"kloghub: {problem}", file=sys.stderr)
        return 2


def _errors(error: detect.LoadError) -> None:
    count = len(error.errors)
    print(f"kloghub: {count} rule{'s' * (count != 1)} refused:", file=sys.stderr)
    for item in error.errors:
        print(f"  {item}", file=sys.stderr)


def _validate(paths: list[Path]) -> int:
    from kloghub import detect

    missing = [p for p in paths if not p.exists()]
    for path in missing:
        print(f"kloghub: {path}: no such file or folder", file=sys.stderr)
    if missing:
        return 2
    try:
        ruleset = detect.load(paths)
    except detect.LoadError as error:
        _errors(error)
        return 1
    print(
        f"{len(ruleset.all())} rules OK ({len(ruleset.detections)} detections, "
        f"{len(ruleset.correlations)} correlations)"
    )
    return 0


def _source(path: Path) -> str:
    from kloghub import detect

    pack = detect.default_pack()
    try:
        return f"pack:{path.relative_to(pack)}"
    except ValueError:
        return str(path)


def _logsource(rule: detect.Detection | detect.Correlation) -> str:
    from kloghub import detect

    if isinstance(rule, detect.Correlation):
        return f"correlation {rule.type}"
    return "/".join(rule.logsource.get(k, "*") for k in ("product", "service")) + (
        f" ({rule.logsource['category']})" if "category" in rule.logsource else ""
    )


def _list(args: argparse.Namespace, detector: detect.Detector) -> int:
    rows: list[dict[str, Any]] = []
    for rule in detector.ruleset.all():
        enabled, mode, severity, exceptions = detector.setting(rule.id)
        rows.append(
            {
                "id": rule.id,
                "title": rule.title,
                "level": severity,
                "mode": mode,
                "enabled": enabled,
                "exceptions": exceptions,
                "logsource": _logsource(rule),
                "source": f"{_source(rule.path)}:{rule.line}",
            }
        )
    if args.format == "json":
        import orjson

        print(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return 0
    width = max((len(r["title"]) for r in rows), default=5)
    print(f"{'ID':<36}  {'TITLE':<{width}}  {'LEVEL':<13} {'MODE':<7} {'ON':<3} LOGSOURCE / FILE")
    for r in rows:
        print(
            f"{r['id']:<36}  {r['title']:<{width}}  {r['level']:<13} {r['mode']:<7} "
            f"{'yes' if r['enabled'] else 'no':<3} {r['logsource']}  {r['source']}"
        )
    print(f"{len(rows)} rules")
    return 0


def _backend_url(args: argparse.Namespace, settings: config.Settings) -> str:
    for product in ("elasticsearch", "opensearch"):
        url = getattr(args, product)
        if url:
            return url if "+" in url.split(":", 1)[0] else f"{product}+{url}"
    return str(args.store or settings.search.store)


def _test(args: argparse.Namespace, settings: config.Settings, detector: detect.Detector) -> int:
    import asyncio
    import time

    from kloghub import detect, search, store

    chosen = []
    for key in args.rule:
        rule = detector.ruleset.find(key)
        if rule is None:
            print(f"kloghub: {key}: names no loaded rule", file=sys.stderr)
            return 2
        chosen.append(rule)
    rules = chosen or detector.ruleset.all()
    audit_only = all(r.audit for r in rules)
    query = "dataset:kubernetes.audit_logs" if audit_only else ""
    request = search.Request(
        query=query, since=args.since, until=args.until, sort="asc", default_since="7d"
    )
    try:
        where = search.plan(request).where
    except search.QueryError as error:
        print(f"kloghub: {error.render()}", file=sys.stderr)
        return 2
    url = _backend_url(args, settings)
    backtest = detect.Backtest(detector, [r.id for r in chosen])

    async def run() -> str:
        backend = search.open_backend(url, settings.search, index=args.index)
        try:
            async for hit in search.stream(backend, where, now_ns=time.time_ns()):
                backtest.feed(hit.id, hit.doc, hit.time_ns)
        finally:
            await backend.close()
        return backend.description

    try:
        description = asyncio.run(run())
    except (store.StoreError, search.BackendError) as error:
        print(f"kloghub: {error}", file=sys.stderr)
        return 1
    from kloghub.detect import _backtest

    if args.format == "json":
        import orjson

        print(orjson.dumps(_backtest.as_json(backtest), option=orjson.OPT_INDENT_2).decode())
    else:
        print(_backtest.render(backtest, description), end="")
    return 0


def _export(args: argparse.Namespace, cfg: config.DetectionsConfig) -> int:
    import orjson

    from kloghub import detect

    paths = [detect.default_pack()] if cfg.default_pack else []
    try:
        exported = detect.export([*paths, *cfg.rules_dirs], args.to, args.format, args.rule)
    except ValueError as error:
        if isinstance(error, detect.LoadError):
            raise
        print(f"kloghub: {error}", file=sys.stderr)
        return 2
    if args.format in ("lucene", "dsl"):
        for rule, query in exported.queries:
            if args.format == "lucene":
                print(f"# {rule.id} {rule.title} ({rule.level})\n{query}")
            else:
                line = {"id": rule.id, "title": rule.title, "level": rule.level, "query": query}
                print(orjson.dumps(line).decode())
    else:
        output = exported.output
        items = output if isinstance(output, list) else [output]
        for item in items:
            print(item if isinstance(item, str) else orjson.dumps(item).decode())
    for skipped, reason in exported.skipped:
        print(f"kloghub: not exported: {skipped.title} [{skipped.id}]: {reason}", file=sys.stderr)
    return 0
