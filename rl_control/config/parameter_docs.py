"""Generate the parameter reference of ``docs/topics.md`` from the config dataclasses' metadata.

``python -m rl_control.config.parameter_docs`` prints it; ``update_topics_doc(path)`` rewrites the generated
block of the document in place (between the two marker lines), and a test checks it is current.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

BEGIN_MARKER = "<!-- BEGIN GENERATED PARAMETERS (python -m rl_control.config.parameter_docs) -->"
END_MARKER = "<!-- END GENERATED PARAMETERS -->"


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp)
        return f"list[{item.__name__}]"
    return getattr(tp, "__name__", str(tp))


def _format_default(value: Any) -> str:
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list):
        return "`[" + ", ".join(str(v) for v in value) + "]`" if value else "(empty)"
    return f"`{value!r}`"


def _constraints(meta: typing.Mapping[str, Any]) -> str:
    parts = []
    if "choices" in meta:
        parts.append("one of " + ", ".join(f"`{c}`" for c in meta["choices"]))
    if "min" in meta:
        parts.append(f"≥ {meta['min']}")
    if "max" in meta:
        parts.append(f"≤ {meta['max']}")
    if meta.get("path") == "dir":
        parts.append("directory, created if missing; not empty")
    elif meta.get("path"):
        parts.append("existing file")
    if "max_items" in meta:
        parts.append(f"at most {meta['max_items']} items")
    if meta.get("tunable"):
        parts.append("**tunable** at run time")
    return "; ".join(parts)


def _rows(instance: Any, prefix: str = "") -> list[str]:
    hints = typing.get_type_hints(type(instance))
    rows = []
    for field in dataclasses.fields(instance):
        value = getattr(instance, field.name)
        meta = field.metadata
        if dataclasses.is_dataclass(value):
            rows.extend(_rows(value, f"{prefix}{field.name}."))
            continue
        help_text = str(meta.get("help", "")).replace("|", "\\|")
        constraints = _constraints(meta)
        rows.append(
            f"| `{prefix}{field.name}` | {_type_name(hints[field.name])} | {_format_default(value)} "
            f"| {help_text}{' (' + constraints + ')' if constraints else ''} |"
        )
    return rows


def parameter_reference() -> str:
    """Markdown tables of every parameter of every section, with defaults, meaning and constraints."""
    from rl_control.config.schema import ExperimentConfig

    config = ExperimentConfig()
    sections = [
        ("`/**` (shared by every node)", config.shared, ""),
        ("`sim_node`", config.sim_node, ""),
        ("`actor_node`", config.actor_node, ""),
        (
            "`learner_node`",
            config.learner_node,
            "The `agent.*` defaults shown are those of the default preset "
            f"(`{config.learner_node.preset}`); another `preset` changes them, and any `agent.*` key "
            "given overrides the preset's value.",
        ),
        (
            "`driver_node`",
            config.driver_node,
            "Per-servo keys are parallel lists in `servo_ids` order. `emulator.*` configures "
            "`rl-control emulate dynamixel` and is ignored by the driver.",
        ),
        (
            "`joy_node`",
            config.joy_node,
            "Joystick teleoperation: the robot graphs (`deploy`, `robot_finetune`) start joy_node when "
            "`axes` is set; it publishes `/rl_control/enable` and `/rl_control/intervention`.",
        ),
        (
            "`launcher`",
            config.launcher,
            "Read by `rl-control launch` only (no node has these parameters): the DDS settings of every "
            'process it starts. See docs/howto_sim_training.md, "The learner on another machine".',
        ),
    ]
    out = []
    for title, instance, note in sections:
        out.append(f"### {title}\n")
        if note:
            out.append(note + "\n")
        out.append("| parameter | type | default | meaning |")
        out.append("|---|---|---|---|")
        out.extend(_rows(instance))
        out.append("")
    return "\n".join(out)


def render_topics_doc(text: str) -> str:
    """``text`` with the generated block between the markers replaced by the current reference."""
    if BEGIN_MARKER not in text or END_MARKER not in text:
        raise ValueError("the document lacks the generated-parameters markers")
    head, rest = text.split(BEGIN_MARKER, 1)
    _, tail = rest.split(END_MARKER, 1)
    return f"{head}{BEGIN_MARKER}\n\n{parameter_reference()}\n{END_MARKER}{tail}"


def update_topics_doc(path: Path) -> bool:
    """Rewrite the generated block of ``path``; returns True when it changed."""
    old = path.read_text(encoding="utf-8")
    new = render_topics_doc(old)
    if new != old:
        path.write_text(new, encoding="utf-8")
    return new != old


if __name__ == "__main__":
    import sys

    if len(sys.argv) > 1:
        print("updated" if update_topics_doc(Path(sys.argv[1])) else "up to date")
    else:
        print(parameter_reference())
