"""Encodings of the rl_control topics: transitions, policies, learner progress."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")

from std_msgs.msg import Float64MultiArray, Int64MultiArray, MultiArrayDimension

from rl_control.learning import TransitionBatch
from rl_control.ros import messages
from rl_control.transitions import FIELDS

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
        intervention=(np.arange(rows) % 2 == 1).astype(np.float32),
    )


def test_transitions_round_trip_keeps_every_field_and_the_sequence_number() -> None:
    batch = _batch(5)
    msg = messages.transitions_to_message(batch, seq=41)
    assert msg.layout.dim[0].label == "transitions:seq=41"
    assert msg.layout.dim[0].size == 5
    assert msg.layout.dim[1].size == messages.transition_row_width(3, 2) == 12
    assert msg.layout.dim[1].label.endswith(",terminated=1,truncated=1,intervention=1")
    seq, decoded = messages.transitions_from_message(msg, obs_dim=3, act_dim=2)
    assert seq == 41
    for name in FIELDS:
        expected, got = getattr(batch, name), getattr(decoded, name)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, expected, err_msg=name)
    assert decoded.interventions == 2  # rows 1 and 3
    # Row-major layout as documented: row 2 starts with obs[2] and its action follows; the flag ends a row.
    data = np.asarray(msg.data)
    np.testing.assert_allclose(data[24:27], batch.obs[2])
    np.testing.assert_allclose(data[27:29], batch.action[2])
    np.testing.assert_array_equal(data[11::12], [0.0, 1.0, 0.0, 1.0, 0.0])


def test_messages_of_the_layout_without_the_intervention_flag_still_decode() -> None:
    """Bags recorded before the flag existed: every row reads as a non-intervention row."""
    batch = _batch(4)
    msg = messages.transitions_to_message(batch, seq=2)
    old = Float64MultiArray()
    old.layout.dim = [
        MultiArrayDimension(label="transitions:seq=2", size=4, stride=44),
        MultiArrayDimension(
            label="fields:obs=3,action=2,reward=1,next_obs=3,terminated=1,truncated=1", size=11, stride=11
        ),
    ]
    old.data = np.asarray(msg.data).reshape(4, 12)[:, :11].ravel().tolist()
    seq, decoded = messages.transitions_from_message(old, obs_dim=3, act_dim=2)
    assert seq == 2 and decoded.interventions == 0
    for name in ("obs", "action", "reward", "next_obs", "terminated", "truncated"):
        np.testing.assert_array_equal(getattr(decoded, name), getattr(batch, name), err_msg=name)
    old.layout.dim[1].size = 12  # a width that is not the old layout's
    with pytest.raises(ValueError, match="expected row width 11, got dim"):
        messages.transitions_from_message(old, obs_dim=3, act_dim=2)


def test_decode_rejects_wrong_dimensions_naming_topic_and_shapes() -> None:
    msg = messages.transitions_to_message(_batch(4, obs_dim=3, act_dim=2), seq=0)
    with pytest.raises(ValueError, match=r"rl_control/transitions.*obs=4,action=2.*got.*obs=3,action=2"):
        messages.transitions_from_message(msg, obs_dim=4, act_dim=2)


def test_decode_rejects_truncated_data() -> None:
    msg = messages.transitions_to_message(_batch(4), seq=3)
    msg.data = msg.data[:-1]
    with pytest.raises(ValueError, match=r"rl_control/transitions.*4 x 12 = 48 values, got 47"):
        messages.transitions_from_message(msg, obs_dim=3, act_dim=2)


def test_decode_rejects_a_message_without_the_layout() -> None:
    msg = Float64MultiArray()
    msg.data = [0.0] * 11
    with pytest.raises(ValueError, match=r"rl_control/transitions.*expected 2 layout dims"):
        messages.transitions_from_message(msg, obs_dim=3, act_dim=2)
    msg.layout.dim = [MultiArrayDimension(label="rows", size=1, stride=11), MultiArrayDimension(size=11)]
    with pytest.raises(ValueError, match=r"transitions:seq=<n>"):
        messages.transitions_from_message(msg, obs_dim=3, act_dim=2)


def test_encode_rejects_inconsistent_batches() -> None:
    batch = _batch(3)
    batch.action = batch.action[:2]
    with pytest.raises(ValueError, match="equal B"):
        messages.transitions_to_message(batch, seq=0)
    with pytest.raises(ValueError, match="seq"):
        messages.transitions_to_message(_batch(3), seq=-1)


def test_policy_round_trip_and_errors() -> None:
    payload = bytes(range(256)) * 10
    msg = messages.encode_policy(payload, version=7)
    assert msg.layout.dim[0].label == "onnx:version=7"
    assert messages.decode_policy(msg) == (7, payload)
    msg.layout.dim[0].label = "model"
    with pytest.raises(ValueError, match=r"rl_control/policy.*onnx:version"):
        messages.decode_policy(msg)
    short = messages.encode_policy(payload, version=1)
    short.data = short.data[:10]
    with pytest.raises(ValueError, match=r"expected 2560 bytes, got 10"):
        messages.decode_policy(short)
    with pytest.raises(ValueError, match="empty"):
        messages.encode_policy(b"", version=1)


def test_signed_policy_round_trip_stays_compatible() -> None:
    payload = b"\x08\x01onnx"
    signature = "ab" * 32
    signed = messages.encode_policy(payload, version=3, signature=signature)
    assert [d.label for d in signed.layout.dim] == ["onnx:version=3", f"hmac-sha256:{signature}"]
    assert messages.decode_signed_policy(signed) == (3, payload, signature)
    assert messages.decode_policy(signed) == (3, payload)
    assert messages.decode_signed_policy(messages.encode_policy(payload, version=3)) == (3, payload, "")
    signed.layout.dim[1].label = "hmac-sha256:zz"
    with pytest.raises(ValueError, match=r"dim\[1\].label .* is not 'hmac-sha256:<64 hex digits>'"):
        messages.decode_signed_policy(signed)
    with pytest.raises(ValueError, match="64 lowercase hex digits"):
        messages.encode_policy(payload, version=3, signature="not hex")


def test_progress_round_trip_maps_elements_by_label() -> None:
    progress = messages.LearnerProgress(
        env_steps=100, updates=2000, policy_version=4, episodes=3, last_seq=9, intervention_transitions=12
    )
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
    with pytest.raises(ValueError, match=r"rl_control/learner_progress.*4 labels"):
        messages.decode_progress(reordered)


def test_command_topic() -> None:
    # relative: a namespace (-r __ns:=/robot1) moves the commands with the robot
    assert messages.command_topic("forward_command_controller") == "forward_command_controller/commands"
    assert messages.command_topic("/effort_controller") == "effort_controller/commands"
    with pytest.raises(ValueError, match="invalid controller name"):
        messages.command_topic("bad name")


def test_topics_doc_parameter_reference_is_current() -> None:
    from rl_control.config.parameter_docs import render_topics_doc

    doc = Path(__file__).resolve().parent.parent / "docs" / "topics.md"
    text = doc.read_text(encoding="utf-8")
    assert render_topics_doc(text) == text, (
        "docs/topics.md is stale: run `python -m rl_control.config.parameter_docs docs/topics.md`"
    )
