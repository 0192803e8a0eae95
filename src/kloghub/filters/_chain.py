"""The agent-side filters of ``FiltersConfig``, compiled once, in the configured order.

Per file (decided once per file by the source, again when the pod's metadata changes):

1. ``include_namespaces`` / ``exclude_namespaces`` (globs),
2. ``label_selector`` (Kubernetes syntax, see ``_selector.py``),
3. ``exclude_containers`` (globs).

Per event, a chain of plain callables ``(event) -> event | None``:

4. ``drop_regex``: a message matching any of them is dropped,
5. ``keep_regex``: when set, a message matching none of them is dropped,
6. ``redact`` (see ``_redact.py``).

What is not known passes: a file whose namespace or container its path does not tell,
or whose pod's labels are not (yet) known — the API server unreachable, or level
``crawl`` — is not excluded by a rule that needs them; logs are not lost because the
API is down. The file is decided again when the metadata arrives.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence

from kloghub import config, core
from kloghub.filters import _redact, _selector

__all__ = ["DropRegex", "Filters", "KeepRegex", "Processor", "chain_of"]

Processor = Callable[[core.Event], "core.Event | None"]
"""One step of the per-event chain; ``None`` drops the event."""


def _globs(patterns: Sequence[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


def _any_of(patterns: Sequence[str], key: str, errors: list[str]) -> list[re.Pattern[str]]:
    compiled = []
    for n, pattern in enumerate(patterns):
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            errors.append(f"agent.filters.{key}[{n}]: not a valid regular expression: {exc}")
    return compiled


class DropRegex:
    """Drops events whose message matches one of the patterns."""

    __slots__ = ("_searches",)

    def __init__(self, patterns: Sequence[re.Pattern[str]]) -> None:
        self._searches = tuple(p.search for p in patterns)

    def __call__(self, event: core.Event) -> core.Event | None:
        text = event.record.get("log")
        if isinstance(text, str):
            for search in self._searches:
                if search(text) is not None:
                    return None
        return event


class KeepRegex:
    """Keeps only events whose message matches one of the patterns."""

    __slots__ = ("_searches",)

    def __init__(self, patterns: Sequence[re.Pattern[str]]) -> None:
        self._searches = tuple(p.search for p in patterns)

    def __call__(self, event: core.Event) -> core.Event | None:
        text = event.record.get("log")
        if not isinstance(text, str):
            return event
        for search in self._searches:
            if search(text) is not None:
                return event
        return None


def chain_of(processors: Sequence[Processor]) -> Processor | None:
    """One callable running ``processors`` in order (``None`` when there are none)."""
    if not processors:
        return None
    if len(processors) == 1:
        return processors[0]
    steps = tuple(processors)

    def chain(event: core.Event) -> core.Event | None:
        for step in steps:
            result = step(event)
            if result is None:
                return None
            event = result
        return event

    return chain


class Filters:
    """``FiltersConfig`` compiled; raises :class:`core.ConfigError` naming bad keys."""

    def __init__(self, cfg: config.FiltersConfig) -> None:
        errors: list[str] = []
        self._include_ns = _globs(cfg.include_namespaces)
        self._exclude_ns = _globs(cfg.exclude_namespaces)
        self._exclude_containers = _globs(cfg.exclude_containers)
        self.selector: _selector.LabelSelector | None = None
        if cfg.label_selector:
            try:
                self.selector = _selector.LabelSelector(cfg.label_selector)
            except ValueError as exc:
                errors.append(f"agent.filters.label_selector: {exc}")
        drops = _any_of(cfg.drop_regex, "drop_regex", errors)
        keeps = _any_of(cfg.keep_regex, "keep_regex", errors)
        _any_of(cfg.redact.patterns, "redact.patterns", errors)
        if errors:
            raise core.ConfigError(errors)
        processors: list[Processor] = []
        if drops:
            processors.append(DropRegex(drops))
        if keeps:
            processors.append(KeepRegex(keeps))
        if cfg.redact.enabled:
            processors.append(_redact.Redactor(cfg.redact.builtin, cfg.redact.patterns))
        self.processors = processors
        self.chain: Processor | None = chain_of(processors)
        """The per-event chain, ``None`` when there is nothing to do per event."""

    @property
    def has_file_rules(self) -> bool:
        return any(
            x is not None
            for x in (self._include_ns, self._exclude_ns, self._exclude_containers, self.selector)
        )

    def file_verdict(
        self,
        namespace: str | None,
        labels: Mapping[str, str] | None,
        container: str | None,
    ) -> str | None:
        """Why a container log file is not shipped (``namespace``, ``labels``,
        ``container``), or ``None``. Unknown values pass (module docstring)."""
        if namespace is not None:
            if self._include_ns is not None and self._include_ns.match(namespace) is None:
                return "namespace"
            if self._exclude_ns is not None and self._exclude_ns.match(namespace) is not None:
                return "namespace"
        if self.selector is not None and labels is not None and not self.selector.matches(labels):
            return "labels"
        if (
            container is not None
            and self._exclude_containers is not None
            and self._exclude_containers.match(container) is not None
        ):
            return "container"
        return None
