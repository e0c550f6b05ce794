"""Recording topics into a rosbag2 bag (checked by the independent ``rosbags`` reader), QoS matching
(latched topics recorded), and turning a bag's transitions into demonstrations."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from rl_control.topics import POLICY_TOPIC, TRANSITIONS_TOPIC, in_namespace

pytestmark = pytest.mark.ros

# the names in the bag: resolved in the recorder's (root) namespace
TRANSITIONS = in_namespace(TRANSITIONS_TOPIC)
POLICY = in_namespace(POLICY_TOPIC)


def test_recorded_transitions_become_a_demonstration_file(tmp_path: Path) -> None:
    import rclpy
    from mcap.reader import make_reader

    from rl_control.learning import TransitionBatch, load_demonstrations
    from rl_control.recording import bag_to_demonstrations
    from rl_control.ros import messages
    from rl_control.ros.recorder import record_topics

    rng = np.random.default_rng(0)
    batches = [
        TransitionBatch(
            obs=rng.normal(size=(5, 3)).astype(np.float32),
            action=rng.uniform(-1, 1, size=(5, 1)).astype(np.float32),
            reward=rng.normal(size=5).astype(np.float32),
            next_obs=rng.normal(size=(5, 3)).astype(np.float32),
            terminated=np.zeros(5, np.float32),
            truncated=np.array([0, 0, 0, 0, 1], np.float32),
        )
        for _ in range(40)
    ]
    context = rclpy.Context()
    context.init()
    node = rclpy.create_node("fake_actor", context=context)
    publisher = node.create_publisher(
        messages.Float64MultiArray, messages.TRANSITIONS_TOPIC, messages.TRANSITIONS_QOS
    )
    # The latched policy topic: published once, before the recorder starts.
    policy_publisher = node.create_publisher(
        messages.UInt8MultiArray, messages.POLICY_TOPIC, messages.POLICY_QOS
    )
    policy_publisher.publish(messages.UInt8MultiArray(data=b"policy bytes"))
    stop = threading.Event()

    def publish() -> None:  # keep publishing until the recorder has seen every batch at least once
        seq = 0
        while not stop.wait(0.05):
            publisher.publish(messages.transitions_to_message(batches[seq % len(batches)], seq))
            seq += 1

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    bag = tmp_path / "session"
    try:
        counts = record_topics(
            bag, [messages.TRANSITIONS_TOPIC, messages.POLICY_TOPIC], duration_s=3.0, discovery_s=10.0
        )
    finally:
        stop.set()
        thread.join()
        node.destroy_node()
        context.shutdown()
    assert counts[TRANSITIONS] >= 10

    assert counts[POLICY] == 1, "the latched policy must be recorded (transient-local)"
    assert sorted(p.name for p in bag.iterdir()) == ["metadata.yaml", "session_0.mcap"]

    with (bag / "session_0.mcap").open("rb") as stream:
        reader = make_reader(stream)
        header, summary = reader.get_header(), reader.get_summary()
    assert header.profile == "ros2"
    schemas = {schema.name: schema for schema in summary.schemas.values()}
    schema = schemas["std_msgs/msg/Float64MultiArray"]
    assert schema.encoding == "ros2msg" and b"MSG: std_msgs/MultiArrayDimension" in schema.data
    for channel in summary.channels.values():
        assert "offered_qos_profiles" in channel.metadata

    # An independent reader (rosbags) opens the bag directory through its metadata.yaml.
    from rosbags.interfaces import QosDurability, QosReliability
    from rosbags.rosbag2 import Reader

    with Reader(bag) as reader:
        by_topic = {c.topic: c for c in reader.connections}
        assert reader.message_count == sum(counts.values())
        assert {t: by_topic[t].msgcount for t in counts} == counts
        policy_qos = by_topic[POLICY].ext.offered_qos_profiles
        assert [q.durability for q in policy_qos] == [QosDurability.TRANSIENT_LOCAL]
        assert policy_qos[0].reliability == QosReliability.RELIABLE  # (DDS discovery carries no depth)
        transitions_qos = by_topic[TRANSITIONS].ext.offered_qos_profiles
        assert transitions_qos[0].durability == QosDurability.TRANSIENT_LOCAL
        assert by_topic[TRANSITIONS].msgtype == "std_msgs/msg/Float64MultiArray"
        first = next(reader.messages(connections=[by_topic[POLICY]]))
        assert first[0].topic == POLICY and len(first[2]) > len(b"policy bytes")

    out = tmp_path / "demos.npz"
    count = bag_to_demonstrations(bag, out)
    demos = load_demonstrations(out, obs_dim=3, act_dim=1)
    assert count == len(demos) == 5 * counts[TRANSITIONS]
    first = next(b for b in batches if np.allclose(b.obs, demos.obs[:5]))
    np.testing.assert_allclose(demos.reward[:5], first.reward)
    assert demos.truncated[4] == 1 and demos.truncated[:4].sum() == 0


def test_bag_without_transitions_is_a_clear_error(tmp_path: Path) -> None:
    from rl_control.recording import bag_to_demonstrations

    with pytest.raises(FileNotFoundError, match=r"missing\.mcap"):
        bag_to_demonstrations(tmp_path / "missing.mcap", tmp_path / "out.npz")
