"""Record live topics into a rosbag2 bag (MCAP storage) as ``ros2 bag record`` writes it, without a distro.

The bag is a directory holding ``metadata.yaml`` (rosbag2 format version 9) and ``<name>_0.mcap``: profile
``ros2``, ``ros2msg`` schemas, CDR data, and each channel's ``offered_qos_profiles`` (the QoS of the
publishers found at start). Like rosbag2, the recorder subscribes with a QoS that matches every publisher:
reliable only when all publishers are reliable, transient-local only when all are (so the latched policy
topic and the transitions a late recorder missed are recorded). ``ros2 bag info/play`` reads the result.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import Any

import rclpy
import yaml
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    LivelinessPolicy,
    QoSProfile,
    ReliabilityPolicy,
)

from rl_control.recording import message_definition
from rl_control.topics import in_namespace

#: rosbag2 metadata format written (Jazzy and later read it).
METADATA_VERSION = 9
#: Queue depth of the recorder's subscriptions (rosbag2 uses 10 unless the publishers' is deeper).
MIN_DEPTH = 10


def _duration(value: Any) -> dict[str, int]:
    nanoseconds = int(getattr(value, "nanoseconds", 0))
    if nanoseconds <= 0 or nanoseconds >= 2**63 - 1:  # "infinite" as rosbag2 writes it
        return {"sec": 2147483647, "nsec": 4294967295}
    seconds, rest = divmod(nanoseconds, 1_000_000_000)
    return {"sec": seconds, "nsec": rest}


def qos_dict(qos: QoSProfile) -> dict[str, Any]:
    """One offered QoS profile in rosbag2's version-9 form (enum names in lower case)."""
    return {
        "history": qos.history.name.lower(),
        "depth": int(qos.depth),
        "reliability": qos.reliability.name.lower(),
        "durability": qos.durability.name.lower(),
        "deadline": _duration(qos.deadline),
        "lifespan": _duration(qos.lifespan),
        "liveliness": qos.liveliness.name.lower(),
        "liveliness_lease_duration": _duration(qos.liveliness_lease_duration),
        "avoid_ros_namespace_conventions": bool(qos.avoid_ros_namespace_conventions),
    }


def matching_qos(offered: list[QoSProfile]) -> QoSProfile:
    """The subscription QoS that connects to every publisher and keeps what they guarantee."""
    reliable = bool(offered) and all(q.reliability == ReliabilityPolicy.RELIABLE for q in offered)
    latched = bool(offered) and all(q.durability == DurabilityPolicy.TRANSIENT_LOCAL for q in offered)
    depth = max([MIN_DEPTH, *(int(q.depth) for q in offered)])
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
        liveliness=LivelinessPolicy.AUTOMATIC,
    )


def _message_class(type_name: str) -> type:
    package, kind, name = type_name.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


class _Topic:
    """One recorded topic: its type, the publishers' QoS and its MCAP channel."""

    def __init__(self, name: str, type_name: str, offered: list[QoSProfile]) -> None:
        self.name = name
        self.type_name = type_name
        self.offered = offered
        self.channel = -1
        self.count = 0


def _discover(node: Any, topics: list[str], discovery_s: float) -> dict[str, _Topic]:
    deadline = time.monotonic() + discovery_s
    found: dict[str, _Topic] = {}
    while time.monotonic() < deadline and len(found) < len(topics):
        types = {name: kinds[0] for name, kinds in node.get_topic_names_and_types() if name in topics}
        for name, type_name in types.items():
            offered = [info.qos_profile for info in node.get_publishers_info_by_topic(name)]
            if offered:
                found[name] = _Topic(name, type_name, offered)
        time.sleep(0.1)
    missing = sorted(set(topics) - set(found))
    if missing:
        raise RuntimeError(f"no publisher found for topic(s) {missing} within {discovery_s:.0f} s")
    return found


def record_topics(
    out: Path, topics: list[str], duration_s: float, *, discovery_s: float = 2.0
) -> dict[str, int]:
    """Record ``topics`` for ``duration_s`` seconds into the rosbag2 bag directory ``out``.

    Relative names are resolved in the root namespace (``rl_control/transitions`` ->
    ``/rl_control/transitions``, the name in the bag). Returns the number of messages per (absolute) topic.
    ``out`` must not exist yet (as with ``ros2 bag record -o``).
    """
    from mcap.writer import Writer

    topics = [in_namespace(topic) for topic in topics]

    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out}: already exists; a bag is written into a new directory")
    context = rclpy.Context()
    context.init()
    node = rclpy.create_node("rl_control_recorder", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        found = _discover(node, topics, discovery_s)
        out.mkdir(parents=True)
        mcap_path = out / f"{out.name}_0.mcap"
        first_ns: int | None = None
        last_ns = 0
        with mcap_path.open("wb") as stream:
            writer = Writer(stream)
            writer.start(profile="ros2", library="rl_control")
            for topic in found.values():
                schema = writer.register_schema(
                    name=topic.type_name,
                    encoding="ros2msg",
                    data=message_definition(topic.type_name).encode(),
                )
                offered = yaml.safe_dump([qos_dict(q) for q in topic.offered], sort_keys=False)
                topic.channel = writer.register_channel(
                    topic=topic.name,
                    message_encoding="cdr",
                    schema_id=schema,
                    metadata={"offered_qos_profiles": offered},
                )

            def make_callback(topic: _Topic):
                def callback(data: bytes) -> None:
                    nonlocal first_ns, last_ns
                    stamp = time.time_ns()
                    first_ns = stamp if first_ns is None else first_ns
                    last_ns = stamp
                    writer.add_message(
                        channel_id=topic.channel,
                        log_time=stamp,
                        publish_time=stamp,
                        data=data,
                        sequence=topic.count,
                    )
                    topic.count += 1

                return callback

            for topic in found.values():
                node.create_subscription(
                    _message_class(topic.type_name),
                    topic.name,
                    make_callback(topic),
                    matching_qos(topic.offered),
                    raw=True,
                )
            end = time.monotonic() + duration_s
            while time.monotonic() < end:
                executor.spin_once(timeout_sec=0.05)
            writer.finish()
        _write_metadata(out, mcap_path, list(found.values()), first_ns or time.time_ns(), last_ns)
    finally:
        executor.shutdown()
        node.destroy_node()
        context.shutdown()
    return {name: topic.count for name, topic in found.items()}


def _write_metadata(out: Path, mcap_path: Path, topics: list[_Topic], first_ns: int, last_ns: int) -> None:
    """rosbag2's ``metadata.yaml`` for a one-file MCAP bag."""
    count = sum(topic.count for topic in topics)
    duration = max(0, last_ns - first_ns)
    info = {
        "version": METADATA_VERSION,
        "storage_identifier": "mcap",
        "duration": {"nanoseconds": duration},
        "starting_time": {"nanoseconds_since_epoch": first_ns},
        "message_count": count,
        "topics_with_message_count": [
            {
                "topic_metadata": {
                    "name": topic.name,
                    "type": topic.type_name,
                    "serialization_format": "cdr",
                    "offered_qos_profiles": [qos_dict(q) for q in topic.offered],
                    "type_description_hash": "",
                },
                "message_count": topic.count,
            }
            for topic in topics
        ],
        "compression_format": "",
        "compression_mode": "",
        "relative_file_paths": [mcap_path.name],
        "files": [
            {
                "path": mcap_path.name,
                "starting_time": {"nanoseconds_since_epoch": first_ns},
                "duration": {"nanoseconds": duration},
                "message_count": count,
            }
        ],
        "custom_data": {},
        "ros_distro": "kilted",
    }
    text = yaml.safe_dump({"rosbag2_bagfile_information": info}, sort_keys=False)
    (out / "metadata.yaml").write_text(text, encoding="utf-8")
