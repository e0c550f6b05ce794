"""Recording topics to a rosbag2 MCAP file and turning its transitions into demonstrations."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.ros


def test_recorded_transitions_become_a_demonstration_file(tmp_path: Path) -> None:
    import rclpy
    from mcap.reader import make_reader

    from rl_control.learning import TransitionBatch, load_demonstrations
    from rl_control.recording import bag_to_demonstrations, record_topics
    from rl_control.ros import messages

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
    publisher = node.create_publisher(messages.Float64MultiArray, messages.TRANSITIONS_TOPIC, 10)
    stop = threading.Event()

    def publish() -> None:  # keep publishing until the recorder has seen every batch at least once
        seq = 0
        while not stop.wait(0.05):
            publisher.publish(messages.encode_transitions(batches[seq % len(batches)], seq))
            seq += 1

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    bag = tmp_path / "session.mcap"
    try:
        counts = record_topics(bag, [messages.TRANSITIONS_TOPIC], duration_s=3.0, discovery_s=10.0)
    finally:
        stop.set()
        thread.join()
        node.destroy_node()
        context.shutdown()
    assert counts[messages.TRANSITIONS_TOPIC] >= 10

    with bag.open("rb") as stream:
        reader = make_reader(stream)
        header, summary = reader.get_header(), reader.get_summary()
    (schema,) = summary.schemas.values()
    assert schema.name == "std_msgs/msg/Float64MultiArray" and schema.encoding == "ros2msg"
    assert b"MSG: std_msgs/MultiArrayDimension" in schema.data
    assert header.profile == "ros2"

    out = tmp_path / "demos.npz"
    count = bag_to_demonstrations(bag, out)
    demos = load_demonstrations(out, obs_dim=3, act_dim=1)
    assert count == len(demos) == 5 * counts[messages.TRANSITIONS_TOPIC]
    first = next(b for b in batches if np.allclose(b.obs, demos.obs[:5]))
    np.testing.assert_allclose(demos.reward[:5], first.reward)
    assert demos.truncated[4] == 1 and demos.truncated[:4].sum() == 0


def test_bag_without_transitions_is_a_clear_error(tmp_path: Path) -> None:
    from rl_control.recording import bag_to_demonstrations

    with pytest.raises(FileNotFoundError, match=r"missing\.mcap"):
        bag_to_demonstrations(tmp_path / "missing.mcap", tmp_path / "out.npz")
