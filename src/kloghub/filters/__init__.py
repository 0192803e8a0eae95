"""Agent-side filters: per-file include/exclude (namespace, labels, container), per-event
drop/keep by regex, and secret redaction."""

from kloghub.filters._chain import DropRegex, Filters, KeepRegex, Processor, chain_of
from kloghub.filters._redact import BUILTIN, REDACTED, Redactor
from kloghub.filters._selector import LabelSelector

__all__ = [
    "BUILTIN",
    "REDACTED",
    "DropRegex",
    "Filters",
    "KeepRegex",
    "LabelSelector",
    "Processor",
    "Redactor",
    "chain_of",
]
