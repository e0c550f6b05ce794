"""Errors raised while loading and validating experiment configs."""

from __future__ import annotations


class FieldError(ValueError):
    """A config dataclass rejected the value of one of its fields.

    Raised from ``__post_init__`` of config dataclasses; the loader adds the file and section.
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


class ConfigError(ValueError):
    """A config file is malformed or invalid; the message names the file, the section and the key."""

    def __init__(
        self, message: str, *, file: str | None = None, section: str | None = None, key: str | None = None
    ) -> None:
        where = ": ".join(part for part in (file, section and f"[{section}]", key) if part)
        super().__init__(f"{where}: {message}" if where else message)
        self.file = file
        self.section = section
        self.key = key
        self.detail = message

    @property
    def errors(self) -> list[ConfigError]:
        """Every problem this error stands for (itself, unless it gathers several)."""
        return [self]


class CombinedConfigError(ConfigError):
    """Several problems found in one config; ``errors`` lists each, in file order."""

    def __init__(self, errors: list[ConfigError]) -> None:
        flat = [single for error in errors for single in error.errors]
        if not flat:
            raise ValueError("CombinedConfigError needs at least one error")
        first = flat[0]
        lines = "\n".join(f"  {error}" for error in flat)
        ValueError.__init__(self, f"{len(flat)} errors:\n{lines}")
        self.file, self.section, self.key, self.detail = first.file, first.section, first.key, first.detail
        self._errors = flat

    @property
    def errors(self) -> list[ConfigError]:
        return list(self._errors)


class ErrorCollector:
    """Gathers :class:`ConfigError`\\ s so that a check reports every problem, not only the first."""

    def __init__(self) -> None:
        self.errors: list[ConfigError] = []

    def add(self, error: ConfigError) -> None:
        self.errors.append(error)

    def raise_if_any(self) -> None:
        """Raise the one error found, or a :class:`CombinedConfigError` holding them all."""
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise CombinedConfigError(self.errors)
