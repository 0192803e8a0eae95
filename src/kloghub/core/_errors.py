"""The error hierarchy: each class says what the caller must do."""

from __future__ import annotations

__all__ = ["ConfigError", "KloghubError", "PermanentError", "RetryableError"]


class KloghubError(Exception):
    """Base of every error kloghub raises on purpose."""


class ConfigError(KloghubError):
    """The configuration is invalid; the process cannot start. Fix the config."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class RetryableError(KloghubError):
    """The next hop could not take the data now; try again later (after ``retry_after``)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(KloghubError):
    """Retrying cannot help (bad credentials, mapping conflict); stop retrying this data."""
