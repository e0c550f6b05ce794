"""rosbag2-compatible MCAP recording without a ROS 2 distro, and bags to demonstration files.

``record_topics`` subscribes to live topics (serialized, no decoding) and writes a rosbag2 MCAP file:
profile ``ros2``, schemas in ``ros2msg`` text (the ``.msg`` files shipped with the message packages) and
CDR message data, so ``ros2 bag info/play`` and Foxglove read it. ``bag_to_demonstrations`` turns the
recorded ``/rl_control/transitions`` (of a teleoperated or scripted session, say) into the learner's
demonstration ``.npz`` format.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

from rl_control.ros.messages import TRANSITIONS_TOPIC

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


def _message_class(type_name: str) -> type:
    package, kind, name = type_name.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


def record_topics(
    out: Path, topics: list[str], duration_s: float, *, discovery_s: float = 2.0
) -> dict[str, int]:
    """Record ``topics`` for ``duration_s`` seconds into the MCAP file ``out``; returns messages per topic."""
    import rclpy
    from mcap.writer import Writer
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_system_default

    context = rclpy.Context()
    context.init()
    node = rclpy.create_node("rl_control_recorder", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    counts: dict[str, int] = {}
    try:
        deadline = time.monotonic() + discovery_s
        types: dict[str, str] = {}
        while time.monotonic() < deadline and len(types) < len(topics):
            types = {name: kinds[0] for name, kinds in node.get_topic_names_and_types() if name in topics}
            time.sleep(0.1)
        missing = sorted(set(topics) - set(types))
        if missing:
            raise RuntimeError(f"no publisher found for topic(s) {missing} within {discovery_s:.0f} s")
        with out.open("wb") as stream:
            writer = Writer(stream)
            writer.start(profile="ros2", library="rl_control")
            channels: dict[str, int] = {}
            for topic, type_name in types.items():
                schema = writer.register_schema(
                    name=type_name, encoding="ros2msg", data=message_definition(type_name).encode()
                )
                channels[topic] = writer.register_channel(
                    topic=topic, message_encoding="cdr", schema_id=schema
                )
                counts[topic] = 0

            def make_callback(topic: str):
                def callback(data: bytes) -> None:
                    stamp = time.time_ns()
                    writer.add_message(
                        channel_id=channels[topic],
                        log_time=stamp,
                        publish_time=stamp,
                        data=data,
                        sequence=counts[topic],
                    )
                    counts[topic] += 1

                return callback

            for topic, type_name in types.items():
                node.create_subscription(
                    _message_class(type_name),
                    topic,
                    make_callback(topic),
                    qos_profile_system_default,
                    raw=True,
                )
            end = time.monotonic() + duration_s
            while time.monotonic() < end:
                executor.spin_once(timeout_sec=0.05)
            writer.finish()
    finally:
        executor.shutdown()
        node.destroy_node()
        context.shutdown()
    return counts


def bag_to_demonstrations(bag: Path, out: Path, *, topic: str = TRANSITIONS_TOPIC) -> int:
    """Write the transitions recorded on ``topic`` in the MCAP ``bag`` as a demonstration ``.npz``."""
    from mcap_ros2.reader import read_ros2_messages
    from std_msgs.msg import Float64MultiArray, MultiArrayDimension

    from rl_control.learning import TransitionBatch, save_demonstrations
    from rl_control.ros.messages import decode_transitions

    if not bag.is_file():
        raise FileNotFoundError(f"{bag}: no such bag file")
    batches: list[TransitionBatch] = []
    for record in read_ros2_messages(str(bag), topics=[topic]):
        decoded = record.ros_msg
        msg = Float64MultiArray()
        msg.layout.dim = [
            MultiArrayDimension(label=d.label, size=d.size, stride=d.stride) for d in decoded.layout.dim
        ]
        msg.data = [float(x) for x in decoded.data]
        fields = re.fullmatch(
            r"fields:obs=(\d+),action=(\d+),.*", msg.layout.dim[1].label if len(msg.layout.dim) > 1 else ""
        )
        if fields is None:
            raise ValueError(f"{bag}: {topic}: message without the transitions layout")
        _, batch = decode_transitions(msg, int(fields.group(1)), int(fields.group(2)))
        batches.append(batch)
    if not batches:
        raise ValueError(f"{bag}: no messages on {topic}")
    merged = TransitionBatch(
        **{
            name: np.concatenate([getattr(b, name) for b in batches])
            for name in ("obs", "action", "reward", "next_obs", "terminated", "truncated")
        }
    )
    save_demonstrations(out, merged)
    return len(merged)
