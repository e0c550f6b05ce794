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
