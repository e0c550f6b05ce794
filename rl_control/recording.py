"""Bags without rclpy: message schemas for the recorder, and bags to demonstration files.

The recorder itself (live topics into a rosbag2 bag) is :mod:`rl_control.ros.recorder`; it writes schemas
in ``ros2msg`` text made here from the ``.msg`` files shipped with the message packages.
``bag_to_demonstrations`` turns the recorded ``/rl_control/transitions`` (of a teleoperated or scripted
session, say) into the learner's demonstration ``.npz`` format, reading the MCAP with ``mcap-ros2``.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import yaml

from rl_control.topics import TRANSITIONS_TOPIC, in_namespace

_SEPARATOR = "=" * 80
_PRIMITIVES = {
    "bool",
    "byte",
    "char",
    "float32",
    "float64",
    "int8",
    "uint8",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
    "string",
    "wstring",
}


def _msg_file(package: str, name: str) -> Path:
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p] + [sys.prefix]
    for prefix in prefixes:
        path = Path(prefix) / "share" / package / "msg" / f"{name}.msg"
        if path.is_file():
            return path
    raise FileNotFoundError(f"no message definition {package}/msg/{name}.msg under {prefixes}")


def message_definition(type_name: str) -> str:
    """The ``ros2msg`` schema text of ``pkg/msg/Type``: its ``.msg`` followed by every nested type's."""
    package, _, name = type_name.split("/")
    seen: list[str] = []
    parts: list[str] = []

    def visit(pkg: str, msg: str, top: bool) -> None:
        text = _msg_file(pkg, msg).read_text(encoding="utf-8")
        parts.append(text if top else f"{_SEPARATOR}\nMSG: {pkg}/{msg}\n{text}")
        for raw_line in text.splitlines():
            words = raw_line.split("#", 1)[0].split()
            if len(words) < 2 or "=" in raw_line.split("#", 1)[0]:  # blank, comment or constant
                continue
            field_type = re.sub(r"\[.*\]$", "", words[0])
            field_type = re.sub(r"<=\d+$", "", field_type)
            if field_type in _PRIMITIVES:
                continue
            dep_pkg, dep_msg = field_type.split("/") if "/" in field_type else (pkg, field_type)
            if f"{dep_pkg}/{dep_msg}" not in seen:
                seen.append(f"{dep_pkg}/{dep_msg}")
                visit(dep_pkg, dep_msg, top=False)

    visit(package, name, top=True)
    return "\n".join(parts)


def bag_file(bag: Path) -> Path:
    """The MCAP file of ``bag``: a rosbag2 bag directory (its ``metadata.yaml`` names it) or an ``.mcap``."""
    bag = Path(bag)
    if bag.is_dir():
        metadata = bag / "metadata.yaml"
        if not metadata.is_file():
            raise FileNotFoundError(f"{bag}: not a rosbag2 bag (no metadata.yaml)")
        info = yaml.safe_load(metadata.read_text(encoding="utf-8")) or {}
        files = (info.get("rosbag2_bagfile_information") or {}).get("relative_file_paths") or []
        mcaps = [bag / name for name in files if str(name).endswith(".mcap")]
        if len(mcaps) != 1:
            raise ValueError(f"{metadata}: expected one .mcap file, found {files}")
        return mcaps[0]
    if not bag.is_file():
        raise FileNotFoundError(f"{bag}: no such bag file")
    return bag


def bag_to_demonstrations(bag: Path, out: Path, *, topic: str = in_namespace(TRANSITIONS_TOPIC)) -> int:
    """Write the transitions on ``topic`` in ``bag`` (directory or MCAP) as a demonstration ``.npz``."""
    from mcap_ros2.reader import read_ros2_messages

    from rl_control.ros.messages import transitions_from_message
    from rl_control.transitions import TransitionBatch

    path = bag_file(Path(bag))
    batches: list[TransitionBatch] = []
    for record in read_ros2_messages(str(path), topics=[topic]):
        decoded = record.ros_msg
        dims = decoded.layout.dim
        fields = re.fullmatch(r"fields:obs=(\d+),action=(\d+),.*", dims[1].label if len(dims) > 1 else "")
        if fields is None:
            raise ValueError(f"{bag}: {topic}: message without the transitions layout")
        # transitions_from_message reads only .layout.dim and .data (as float64 values)
        msg = SimpleNamespace(layout=decoded.layout, data=np.asarray(decoded.data, dtype=np.float64))
        _, batch = transitions_from_message(msg, int(fields.group(1)), int(fields.group(2)))
        batches.append(batch)
    if not batches:
        raise ValueError(f"{bag}: no messages on {topic}")
    merged = TransitionBatch.concatenate(batches)
    merged.to_npz(out)
    return len(merged)
