"""Build typed config dataclasses from plain mappings, with precise errors.

Field conventions (``dataclasses.field(metadata=...)``):

* ``help`` -- one line shown by ``rl-control config show`` and in the docs;
* ``min`` / ``max`` -- inclusive numeric bounds;
* ``choices`` -- the allowed values;
* ``path`` -- ``"file"``: the string names a file that must exist (an empty string means "unset");
  ``"dir"``: a directory, created when missing, so never empty and never an existing file;
* ``max_items`` -- the longest list accepted (default :data:`MAX_LIST_ITEMS`);
* ``tunable`` -- the node applies a run-time change (``ros2 param set``); other keys are read-only.

Every integer must fit a ROS 2 integer parameter (int64). :func:`build` reports every bad key of a mapping
at once (a :class:`~rl_control.config.errors.CombinedConfigError` when there are several).

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

from rl_control.config.errors import ConfigError, ErrorCollector, FieldError

T = TypeVar("T")

#: Bounds of a ROS 2 integer parameter.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: Longest list a config key accepts unless its field sets ``max_items``.
MAX_LIST_ITEMS = 1024


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
            if not INT64_MIN <= value <= INT64_MAX:
                raise loc.error(name, f"{value} does not fit a 64-bit integer (ROS 2 int parameter)")
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


def bounds_problem(meta: Mapping[str, Any], value: Any) -> str | None:
    """What breaks a field's ``choices``/``min``/``max`` metadata in ``value`` (or an item of a list value).

    The one bounds check of every config dataclass (the experiment schema and ``AgentConfig``); None when
    the value is within bounds.
    """
    for item in value if isinstance(value, list) else [value]:
        if "choices" in meta and item not in meta["choices"]:
            choices = ", ".join(repr(c) for c in meta["choices"])
            hint = did_you_mean(str(item), [str(c) for c in meta["choices"]])
            return f"{item!r} is not one of {choices}{hint}"
        if isinstance(item, bool) or not isinstance(item, int | float):
            continue
        if "min" in meta and item < meta["min"]:
            return f"{item!r} is below the minimum {meta['min']!r}"
        if "max" in meta and item > meta["max"]:
            return f"{item!r} is above the maximum {meta['max']!r}"
    return None


def _check_metadata(meta: Mapping[str, Any], value: Any, loc: Location, name: str) -> Any:
    problem = bounds_problem(meta, value)
    if problem is not None:
        raise loc.error(name, problem)
    kind = meta.get("path")
    if kind == "dir":
        return _check_directory(value, loc, name)
    if kind and value:
        paths = value if isinstance(value, list) else [value]
        resolved = [_existing_file(raw, loc, name) for raw in paths]
        return resolved if isinstance(value, list) else resolved[0]
    return value


def _existing_file(raw: str, loc: Location, name: str) -> str:
    """``raw`` resolved (relative to the config file when not found as given); it must be a file."""
    path = Path(raw).expanduser()
    if not path.is_absolute() and loc.base_dir is not None and not path.exists():
        path = loc.base_dir / path
    if not path.exists():
        raise loc.error(name, f"file not found: {raw}")
    if not path.is_file():
        raise loc.error(
            name, f"{raw} is a directory, not a file" if path.is_dir() else f"{raw} is not a file"
        )
    return str(path)


def _check_directory(raw: str, loc: Location, name: str) -> str:
    """A directory path that the node may create: not empty, not an existing non-directory."""
    if not raw.strip():
        raise loc.error(name, "must name a directory; an empty path is not allowed")
    path = Path(raw).expanduser()
    if path.exists() and not path.is_dir():
        raise loc.error(name, f"{raw} exists and is not a directory")
    return raw


def convert_value(tp: Any, value: Any, meta: Mapping[str, Any], loc: Location, name: str) -> Any:
    """Check ``value`` against the field type ``tp`` and its metadata; return the typed value."""
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise loc.error(name, f"expected a mapping of {tp.__name__} keys, got {type(value).__name__}")
        return build(tp, value, loc.nested(name))
    if typing.get_origin(tp) is list:
        (item_type,) = typing.get_args(tp)
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise loc.error(name, f"expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
        max_items = meta.get("max_items", MAX_LIST_ITEMS)
        if len(value) > max_items:
            raise loc.error(name, f"{len(value)} items; at most {max_items} are allowed")
        converted = [_convert_scalar(item_type, item, loc, name) for item in value]
    else:
        converted = _convert_scalar(tp, value, loc, name)
    return _check_metadata(meta, converted, loc, name)


def build(cls: type[T], data: Mapping[str, Any], loc: Location, base: T | None = None) -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys, wrong types and bad values raise ConfigError.

    Keys absent from ``data`` take the field defaults, or the values of ``base`` when given (a preset).
    Every bad key is reported (:class:`~rl_control.config.errors.CombinedConfigError` when there are several);
    cross-field checks (``__post_init__``) run once every key is valid.
    """
    types = field_types(cls)
    dataclass_type: type = cls
    fields = {f.name: f for f in dataclasses.fields(dataclass_type) if f.init}
    kwargs: dict[str, Any] = {} if base is None else {name: getattr(base, name) for name in fields}
    problems = ErrorCollector()
    for key, value in data.items():
        if key not in fields:
            problems.add(
                loc.error(
                    str(key),
                    f"unknown key{did_you_mean(str(key), fields)}; known keys: {', '.join(sorted(fields))}",
                )
            )
            continue
        try:
            kwargs[key] = convert_value(types[key], value, fields[key].metadata, loc, key)
        except ConfigError as exc:
            problems.add(exc)
    for name, f in fields.items():
        no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if name not in kwargs and no_default and not dataclasses.is_dataclass(types[name]):
            problems.add(loc.error(name, "required key is missing"))
    problems.raise_if_any()
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
