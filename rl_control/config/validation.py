"""Build typed config dataclasses from plain mappings, with precise errors.

Field conventions (``dataclasses.field(metadata=...)``):

* ``help`` -- one line shown by ``rl-control config show`` and in the docs;
* ``min`` / ``max`` -- inclusive numeric bounds;
* ``choices`` -- the allowed values;
* ``path`` -- the string names a file that must exist (an empty string means "unset").

Supported field types: ``bool``, ``int``, ``float``, ``str``, ``list[bool|int|float|str]`` and nested
dataclasses. Cross-field checks live in the dataclass's ``__post_init__`` and raise
:class:`~rl_control.config.errors.FieldError`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from rl_control.config.errors import ConfigError, FieldError

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Location:
    """Where a value comes from: file, ROS node section and dotted key prefix."""

    file: str | None = None
    section: str | None = None
    prefix: str = ""
    base_dir: Path | None = None

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def nested(self, name: str) -> Location:
        return dataclasses.replace(self, prefix=f"{self.prefix}{name}.")

    def error(self, name: str | None, message: str) -> ConfigError:
        return ConfigError(
            message,
            file=self.file,
            section=self.section,
            key=self.key(name) if name is not None else (self.prefix.rstrip(".") or None),
        )


def field_types(cls: type) -> dict[str, Any]:
    """Resolved type hints of a dataclass's fields."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def did_you_mean(name: str, options: typing.Iterable[str]) -> str:
    """A ``" (did you mean 'x'?)"`` suffix for a misspelt key, or ``""``."""
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is list:
        (item,) = typing.get_args(tp)
        return f"list of {_type_name(item)}"
    return getattr(tp, "__name__", str(tp))


def _convert_scalar(tp: type, value: Any, loc: Location, name: str) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
            if not math.isfinite(number):
                raise loc.error(name, f"must be a finite number, got {value!r}")
            return number
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - a schema bug, not a user error
        raise TypeError(f"unsupported config field type {tp!r} for {loc.key(name)}")
    raise loc.error(name, f"expected {_type_name(tp)}, got {type(value).__name__} {value!r}")


def _check_metadata(meta: Mapping[str, Any], value: Any, loc: Location, name: str) -> Any:
    items = value if isinstance(value, list) else [value]
    for item in items:
        if "choices" in meta and item not in meta["choices"]:
            choices = ", ".join(repr(c) for c in meta["choices"])
            hint = did_you_mean(str(item), [str(c) for c in meta["choices"]])
            raise loc.error(name, f"{item!r} is not one of {choices}{hint}")
        if "min" in meta and item < meta["min"]:
            raise loc.error(name, f"{item!r} is below the minimum {meta['min']!r}")
        if "max" in meta and item > meta["max"]:
            raise loc.error(name, f"{item!r} is above the maximum {meta['max']!r}")
    if meta.get("path") and value:
        paths = value if isinstance(value, list) else [value]
        resolved = []
        for raw in paths:
            path = Path(raw).expanduser()
            if not path.is_absolute() and loc.base_dir is not None and not path.exists():
                path = loc.base_dir / path
            if not path.exists():
                raise loc.error(name, f"file not found: {raw}")
            resolved.append(str(path))
        return resolved if isinstance(value, list) else resolved[0]
    return value


def convert_value(tp: Any, value: Any, meta: Mapping[str, Any], loc: Location, name: str) -> Any:
    """Check ``value`` against the field type ``tp`` and its metadata; return the typed value."""
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise loc.error(name, f"expected a mapping of {tp.__name__} keys, got {type(value).__name__}")
        return build(tp, value, loc.nested(name))
    if typing.get_origin(tp) is list:
        (item_type,) = typing.get_args(tp)
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise loc.error(name, f"expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
        converted = [_convert_scalar(item_type, item, loc, name) for item in value]
    else:
        converted = _convert_scalar(tp, value, loc, name)
    return _check_metadata(meta, converted, loc, name)


def build(cls: type[T], data: Mapping[str, Any], loc: Location, base: T | None = None) -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys, wrong types and bad values raise ConfigError.

    Keys absent from ``data`` take the field defaults, or the values of ``base`` when given (a preset).
    """
    types = field_types(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {} if base is None else {name: getattr(base, name) for name in fields}
    for key, value in data.items():
        if key not in fields:
            raise loc.error(
                str(key),
                f"unknown key{did_you_mean(str(key), fields)}; known keys: {', '.join(sorted(fields))}",
            )
        kwargs[key] = convert_value(types[key], value, fields[key].metadata, loc, key)
    for name, f in fields.items():
        no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if name not in kwargs and no_default and not dataclasses.is_dataclass(types[name]):
            raise loc.error(name, "required key is missing")
    try:
        return cls(**kwargs)
    except FieldError as exc:
        raise loc.error(exc.key, exc.message) from None
    except (TypeError, ValueError) as exc:
        raise loc.error(None, str(exc)) from None


def to_dict(obj: Any) -> dict[str, Any]:
    """A plain, YAML-ready mapping of a config dataclass."""
    return dataclasses.asdict(obj)


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1}`` -> ``{"a": {"b": 1}}``."""
    nested: dict[str, Any] = {}
    for dotted, value in flat.items():
        node = nested
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested
