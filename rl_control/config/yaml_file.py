"""Read experiment YAML files with bounds: file size, nesting depth and alias count.

``yaml.safe_load`` expands aliases by reference, so a "billion laughs" document loads quickly but makes
every later walk over it exponential, and 3,000 nested brackets overflow Python's recursion limit. A ROS 2
parameter file needs neither, so :func:`load_yaml_file` refuses them early with a :class:`ConfigError`
naming the file and the line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.events import AliasEvent
from yaml.nodes import Node

from rl_control.config.errors import ConfigError

#: Largest config file read (a full experiment file is a few kB).
MAX_FILE_BYTES = 1 << 20
#: Deepest nesting of mappings and lists (the schema itself is 3 levels deep below a section).
MAX_DEPTH = 32
#: Most aliases (``*name``) in one file.
MAX_ALIASES = 64


class _BoundedComposer(Composer):
    """Composer that counts nesting depth and aliases while building the node graph."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.aliases = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(AliasEvent):  # type: ignore[attr-defined]
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark  # type: ignore[attr-defined]
                raise yaml.YAMLError(f"more than {MAX_ALIASES} aliases (line {mark.line + 1})")
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[attr-defined]
                raise yaml.YAMLError(f"nesting deeper than {MAX_DEPTH} levels (line {mark.line + 1})")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


class BoundedSafeLoader(
    yaml.reader.Reader,
    yaml.scanner.Scanner,
    yaml.parser.Parser,
    _BoundedComposer,
    yaml.constructor.SafeConstructor,
    yaml.resolver.Resolver,
):
    """``yaml.SafeLoader`` with :data:`MAX_DEPTH` and :data:`MAX_ALIASES` enforced."""

    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        _BoundedComposer.__init__(self)  # also Composer's own state
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)


def _check_flow_depth(text: str, file: str | None) -> None:
    """Refuse deeply nested ``[``/``{`` before parsing: PyYAML's scanner looks ahead over every open
    bracket of a line, so thousands of them cost seconds before the composer's depth check is reached."""
    depth = 0
    quote = ""
    line = 1
    for char in text:
        if char == "\n":
            line += 1
            quote = ""  # an apostrophe in a comment or a plain scalar must not hide the rest of the file
        elif quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise ConfigError(
                    f"invalid YAML: nesting deeper than {MAX_DEPTH} levels (line {line})", file=file
                )
        elif char in "]}":
            depth = max(0, depth - 1)


def parse_yaml_text(text: str, *, file: str | None = None) -> Any:
    """Parse one YAML document with the bounds; :class:`ConfigError` naming ``file`` on any problem."""
    _check_flow_depth(text, file)
    loader = BoundedSafeLoader(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", file=file) from None
    except RecursionError:  # a bound above the interpreter's limit; kept as a clear error all the same
        raise ConfigError("invalid YAML: nesting too deep", file=file) from None
    finally:
        loader.dispose()


def load_yaml_file(path: str | Path) -> Any:
    """Read and parse the YAML file ``path`` within the size, depth and alias bounds."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("config file not found" if not path.exists() else "not a file", file=str(path))
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ConfigError(f"file is {size} bytes; the limit is {MAX_FILE_BYTES}", file=str(path))
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", file=str(path)) from None
    return parse_yaml_text(text, file=str(path))
