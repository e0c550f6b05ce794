"""Encodings of the rl_control topics: transitions, policies, learner progress."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")

from std_msgs.msg import Float64MultiArray, Int64MultiArray, MultiArrayDimension

from rl_control.learning import TransitionBatch
from rl_control.ros import messages

pytestmark = pytest.mark.ros


def _batch(rows: int, obs_dim: int = 3, act_dim: int = 2, seed: int = 0) -> TransitionBatch:
    rng = np.random.default_rng(seed)
    return TransitionBatch(
        obs=rng.normal(size=(rows, obs_dim)).astype(np.float32),
        action=rng.uniform(-1, 1, size=(rows, act_dim)).astype(np.float32),
        reward=rng.normal(size=rows).astype(np.float32),
        next_obs=rng.normal(size=(rows, obs_dim)).astype(np.float32),
        terminated=(np.arange(rows) == rows - 1).astype(np.float32),
        truncated=(np.arange(rows) == 0).astype(np.float32),
    )


def test_transitions_round_trip_keeps_every_field_and_the_sequence_number() -> None:
    batch = _batch(5)
    msg = messages.encode_transitions(batch, seq=41)
    assert msg.layout.dim[0].label == "transitions:seq=41"
    assert msg.layout.dim[0].size == 5
    assert msg.layout.dim[1].size == messages.transition_row_width(3, 2) == 11
    seq, decoded = messages.decode_transitions(msg, obs_dim=3, act_dim=2)
    assert seq == 41
    for name in ("obs", "action", "reward", "next_obs", "terminated", "truncated"):
        expected, got = getattr(batch, name), getattr(decoded, name)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, expected, err_msg=name)
    # Row-major layout as documented: row 2 starts with obs[2] and its action follows.
    data = np.asarray(msg.data)
    np.testing.assert_allclose(data[22:25], batch.obs[2])
    np.testing.assert_allclose(data[25:27], batch.action[2])


def test_decode_rejects_wrong_dimensions_naming_topic_and_shapes() -> None:
    msg = messages.encode_transitions(_batch(4, obs_dim=3, act_dim=2), seq=0)
    with pytest.raises(ValueError, match=r"/rl_control/transitions.*obs=4,action=2.*got.*obs=3,action=2"):
        messages.decode_transitions(msg, obs_dim=4, act_dim=2)


def test_decode_rejects_truncated_data() -> None:
    msg = messages.encode_transitions(_batch(4), seq=3)
    msg.data = msg.data[:-1]
    with pytest.raises(ValueError, match=r"/rl_control/transitions.*4 x 11 = 44 values, got 43"):
        messages.decode_transitions(msg, obs_dim=3, act_dim=2)


def test_decode_rejects_a_message_without_the_layout() -> None:
    msg = Float64MultiArray()
    msg.data = [0.0] * 11
    with pytest.raises(ValueError, match=r"/rl_control/transitions.*expected 2 layout dims"):
        messages.decode_transitions(msg, obs_dim=3, act_dim=2)
    msg.layout.dim = [MultiArrayDimension(label="rows", size=1, stride=11), MultiArrayDimension(size=11)]
    with pytest.raises(ValueError, match=r"transitions:seq=<n>"):
        messages.decode_transitions(msg, obs_dim=3, act_dim=2)


def test_encode_rejects_inconsistent_batches() -> None:
    batch = _batch(3)
    batch.action = batch.action[:2]
    with pytest.raises(ValueError, match="equal B"):
        messages.encode_transitions(batch, seq=0)
    with pytest.raises(ValueError, match="seq"):
        messages.encode_transitions(_batch(3), seq=-1)


def test_policy_round_trip_and_errors() -> None:
    payload = bytes(range(256)) * 10
    msg = messages.encode_policy(payload, version=7)
    assert msg.layout.dim[0].label == "onnx:version=7"
    assert messages.decode_policy(msg) == (7, payload)
    msg.layout.dim[0].label = "model"
    with pytest.raises(ValueError, match=r"/rl_control/policy.*onnx:version"):
        messages.decode_policy(msg)
    short = messages.encode_policy(payload, version=1)
    short.data = short.data[:10]
    with pytest.raises(ValueError, match=r"expected 2560 bytes, got 10"):
        messages.decode_policy(short)
    with pytest.raises(ValueError, match="empty"):
        messages.encode_policy(b"", version=1)


def test_progress_round_trip_maps_elements_by_label() -> None:
    progress = messages.LearnerProgress(env_steps=100, updates=2000, policy_version=4, episodes=3, last_seq=9)
    assert messages.decode_progress(messages.encode_progress(progress)) == progress
    reordered = Int64MultiArray()
    reordered.layout.dim = [
        MultiArrayDimension(label="updates,future_field,env_steps,policy_version", size=4)
    ]
    reordered.data = [5, 99, 6, 7]
    assert messages.decode_progress(reordered) == messages.LearnerProgress(
        env_steps=6, updates=5, policy_version=7
    )
    reordered.data = [5, 99]
    with pytest.raises(ValueError, match=r"/rl_control/learner_progress.*4 labels"):
        messages.decode_progress(reordered)


def test_command_topic() -> None:
    assert messages.command_topic("forward_command_controller") == "/forward_command_controller/commands"
    assert messages.command_topic("/effort_controller") == "/effort_controller/commands"
    with pytest.raises(ValueError, match="invalid controller name"):
        messages.command_topic("bad name")


def test_topics_doc_parameter_reference_is_current() -> None:
    from rl_control.ros.parameter_docs import render_topics_doc

    doc = Path(__file__).resolve().parent.parent / "docs" / "topics.md"
    text = doc.read_text(encoding="utf-8")
    assert render_topics_doc(text) == text, (
        "docs/topics.md is stale: run `python -m rl_control.ros.parameter_docs docs/topics.md`"
    )
