"""actor_node in a child process against a fake robot (test probe) and against the real sim_node."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64MultiArray, UInt8MultiArray

from rl_control.envs import make_task
from rl_control.learning.networks import Actor, RunningNormalizer
from rl_control.learning.onnx_policy import FORMAT, build_actor_graph
from rl_control.ros import messages
from rl_control.ros.node_process import NodeProcess
from rl_control.ros.probe import RosProbe

pytestmark = pytest.mark.ros

CONTROLLER = "test_controller"
STARTUP_S = 90.0  # node start-up is slow on a loaded 2-core machine


def policy_bytes(
    obs_dim: int, act_dim: int, action: float, *, version: int = 1, joints: list[str] | None = None
) -> bytes:
    """A real exported rl_control policy whose action is ``action`` for every observation."""
    actor = Actor(obs_dim, act_dim, [8], stochastic=True)
    with torch.no_grad():
        actor.mean_head.weight.zero_()
        actor.mean_head.bias.fill_(math.atanh(action))
        assert actor.log_std_head is not None
        actor.log_std_head.weight.zero_()
        actor.log_std_head.bias.fill_(-20.0)  # clamped to the minimum std: exploration noise negligible
    metadata = {
        "format": FORMAT,
        "obs_dim": str(obs_dim),
        "act_dim": str(act_dim),
        "policy_version": str(version),
        "stochastic": "true",
        "joint_names": json.dumps(joints or []),
    }
    model = build_actor_graph(
        actor, RunningNormalizer(obs_dim, False), stochastic=True, exploration_noise=0.1, metadata=metadata
    )
    return model.SerializeToString()


def write_config(tmp_path: Path, *, shared: dict, actor: dict | None = None, sim: dict | None = None) -> Path:
    document = {
        "/**": {"ros__parameters": {"controller": CONTROLLER, "run_dir": str(tmp_path / "run"), **shared}},
        "sim_node": {"ros__parameters": {"sim_mode": "realtime", **(sim or {})}},
        "actor_node": {"ros__parameters": {"reset_service": "", "state_timeout_s": 0.3, **(actor or {})}},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


class FakeRobot:
    """The test side: publishes joint states at a fixed rate and records the actor's outputs."""

    def __init__(self, probe: RosProbe, names: list[str], rate_hz: float = 100.0) -> None:
        self.probe = probe
        self.names = names
        self.position = np.zeros(len(names))
        self.velocity = np.zeros(len(names))
        self.publishing = True
        self.sent = 0
        self.state_pub = probe.publisher(JointState, messages.JOINT_STATES_TOPIC, messages.STATE_QOS)
        self.policy_pub = probe.publisher(UInt8MultiArray, messages.POLICY_TOPIC, messages.POLICY_QOS)
        self.commands = probe.collect(
            Float64MultiArray, messages.command_topic(CONTROLLER), messages.COMMAND_QOS
        )
        self.transitions = probe.collect(
            Float64MultiArray, messages.TRANSITIONS_TOPIC, messages.TRANSITIONS_QOS
        )
        self.diagnostics = probe.collect(
            DiagnosticArray, messages.DIAGNOSTICS_TOPIC, messages.DIAGNOSTICS_QOS
        )
        probe.node.create_timer(1.0 / rate_hz, self._publish)

    def _publish(self) -> None:
        if not self.publishing:
            return
        msg = JointState()
        msg.header.stamp = self.probe.node.get_clock().now().to_msg()
        msg.name = self.names
        msg.position = [float(v) for v in self.position]
        msg.velocity = [float(v) for v in self.velocity]
        msg.effort = [0.0] * len(self.names)
        self.state_pub.publish(msg)
        self.sent += 1

    def command_values(self, since: float = 0.0) -> np.ndarray:
        return np.array([list(msg.data) for t, msg in self.commands if t >= since])

    def wait_commands(self, predicate: Callable[[np.ndarray], bool], timeout_s: float, since: float) -> bool:
        return self.probe.spin_until(
            lambda: len(self.command_values(since)) > 0 and predicate(self.command_values(since)[-1]),
            timeout_s,
        )

    def diagnostic(self, key: str) -> str | None:
        for _, msg in reversed(self.diagnostics):
            for status in msg.status:
                if status.name.startswith("actor_node"):
                    for item in status.values:
                        if item.key == key:
                            return item.value
        return None

    def publish_policy(self, data: bytes, version: int) -> None:
        self.policy_pub.publish(messages.encode_policy(data, version))


def start_actor(config: Path, tmp_path: Path) -> NodeProcess:
    return NodeProcess("actor_node", config, log_path=tmp_path / "actor.log").start()


def test_joint_remapping_and_policy_file(probe: RosProbe, tmp_path: Path) -> None:
    """Shuffled JointState order with extra joints: the command follows the configured joint order."""
    task = make_task("arm_reach")
    policy_file = tmp_path / "policy.onnx"
    policy_file.write_bytes(
        policy_bytes(task.observation_dim, task.action_dim, 0.5, joints=list(task.joint_names))
    )
    command_order = list(reversed(task.joint_names))
    config = write_config(
        tmp_path,
        shared={"task": "arm_reach", "mode": "deploy", "control_rate_hz": 50.0, "joint_names": command_order},
        actor={"policy_file": str(policy_file)},
    )
    wire = [
        "gripper",
        task.joint_names[2],
        task.joint_names[0],
        "camera_pan",
        task.joint_names[3],
        task.joint_names[1],
    ]
    robot = FakeRobot(probe, wire)
    true_position = {name: 0.05 * (i + 1) for i, name in enumerate(task.joint_names)}
    robot.position = np.array([true_position.get(name, 9.0) for name in wire])
    with start_actor(config, tmp_path) as actor:
        since = time.monotonic()
        expected = np.array([true_position[n] for n in command_order]) + task.DELTA_SCALE * 0.5
        assert robot.wait_commands(lambda c: np.allclose(c, expected, atol=1e-4), STARTUP_S, since), (
            f"commands {robot.command_values(since)[-3:]} != {expected}\n{actor.output()}"
        )


def test_stale_and_nan_states_give_safe_finite_commands(probe: RosProbe, tmp_path: Path) -> None:
    task = make_task("pendulum_swingup")
    config = write_config(
        tmp_path,
        shared={"task": "pendulum_swingup", "mode": "deploy", "control_rate_hz": 100.0},
        actor={"safe_command": "zero"},
    )
    robot = FakeRobot(probe, list(task.joint_names))
    robot.position[:] = 0.3
    torque = 0.8 * task.command_high[0]
    with start_actor(config, tmp_path) as actor:
        robot.publish_policy(policy_bytes(3, 1, 0.8, version=7), version=7)
        assert robot.wait_commands(lambda c: abs(c[0] - torque) < 1e-3, STARTUP_S, 0.0), actor.output()

        robot.publishing = False  # the robot goes silent: after state_timeout_s the safe command follows
        since = time.monotonic()
        assert robot.wait_commands(lambda c: c[0] == 0.0, 5.0, since), robot.command_values(since)[-5:]
        robot.publishing = True
        since = time.monotonic()
        assert robot.wait_commands(lambda c: abs(c[0] - torque) < 1e-3, 5.0, since)

        robot.velocity[:] = np.nan  # a sensor fault: NaN in the state
        since = time.monotonic()
        assert robot.wait_commands(lambda c: c[0] == 0.0, 5.0, since)
        probe.spin_for(0.5)
        robot.velocity[:] = 0.0
        assert robot.wait_commands(lambda c: abs(c[0] - torque) < 1e-3, 5.0, time.monotonic())
        probe.spin_until(lambda: int(robot.diagnostic("invalid_state_ticks") or 0) > 0, 5.0)
        values = robot.command_values()
        assert np.all(np.isfinite(values)), "a non-finite command was published"
        assert np.all(np.abs(values) <= task.command_high[0])
        assert int(robot.diagnostic("invalid_state_ticks")) > 0
        assert int(robot.diagnostic("stale_ticks")) > 0
        assert int(robot.diagnostic("stale_events")) >= 1  # the silence: one fresh -> stale transition
        assert robot.diagnostic("policy_version") == "7"


def test_corrupt_policy_rejected_old_policy_keeps_running(probe: RosProbe, tmp_path: Path) -> None:
    task = make_task("pendulum_swingup")
    config = write_config(
        tmp_path, shared={"task": "pendulum_swingup", "mode": "deploy", "control_rate_hz": 100.0}
    )
    robot = FakeRobot(probe, list(task.joint_names))
    high = task.command_high[0]
    with start_actor(config, tmp_path) as actor:
        since = time.monotonic()
        assert robot.wait_commands(lambda c: c[0] == 0.0, STARTUP_S, since), actor.output()  # no policy: safe
        robot.publish_policy(policy_bytes(3, 1, 0.5, version=1), version=1)
        assert robot.wait_commands(lambda c: abs(c[0] - 0.5 * high) < 1e-3, 20.0, since), actor.output()

        robot.publish_policy(b"\x08\x01garbage, not an onnx model", version=2)
        assert probe.spin_until(lambda: robot.diagnostic("policies_rejected") == "1", 20.0), actor.output()
        robot.publish_policy(policy_bytes(4, 1, -0.5, version=3), version=3)  # wrong observation size
        assert probe.spin_until(lambda: robot.diagnostic("policies_rejected") == "2", 20.0), actor.output()
        since = time.monotonic()
        probe.spin_for(0.5)
        values = robot.command_values(since)
        assert len(values) > 10 and np.allclose(values[:, 0], 0.5 * high, atol=1e-3)
        assert robot.diagnostic("policy_version") == "1"
        assert "rejected policy" in actor.output()

        robot.publish_policy(policy_bytes(3, 1, -0.25, version=4), version=4)  # hot swap to a good one
        assert robot.wait_commands(lambda c: abs(c[0] + 0.25 * high) < 1e-3, 20.0, since), actor.output()
    probe.spin_for(0.5)
    assert robot.command_values()[-1][0] == 0.0  # the last command on shutdown (SIGINT) is the safe one


def test_train_mode_streams_transitions(probe: RosProbe, tmp_path: Path) -> None:
    """Without a policy the actor explores randomly and streams sequenced transition batches."""
    config = write_config(
        tmp_path,
        shared={"task": "pendulum_swingup", "mode": "train", "control_rate_hz": 100.0},
        actor={"transition_batch_size": 10, "max_policy_lag_steps": 0},
    )
    robot = FakeRobot(probe, ["hinge"])
    robot.position[:] = 1.0
    with start_actor(config, tmp_path) as actor:
        assert probe.spin_until(lambda: len(robot.transitions) >= 5, STARTUP_S), actor.output()
    decoded = [messages.decode_transitions(msg, 3, 1) for _, msg in robot.transitions]
    seqs = [seq for seq, _ in decoded]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    batch = decoded[0][1]
    assert batch.obs.shape == (10, 3)
    np.testing.assert_allclose(batch.obs[:, :2], [[math.cos(1.0), math.sin(1.0)]] * 10, rtol=1e-5)
    assert np.all(np.abs(batch.action) <= 1.0) and np.std(batch.action) > 0.05
    commands = robot.command_values()
    assert np.all(np.isfinite(commands)) and np.std(commands) > 0.1


def test_lockstep_with_sim_node_resets_and_throttles(probe: RosProbe, tmp_path: Path) -> None:
    """Against the real sim_node in lockstep: one command per state, resets at episode end, UTD throttle."""
    config = write_config(
        tmp_path,
        shared={"task": "pendulum_swingup", "mode": "train", "control_rate_hz": 50.0},
        sim={"sim_mode": "lockstep"},
        actor={"reset_service": "/sim_node/reset", "transition_batch_size": 20, "max_policy_lag_steps": 250},
    )
    robot = FakeRobot(probe, ["hinge"])
    robot.publishing = False  # the sim node is the robot here
    progress_pub = probe.publisher(
        messages.Int64MultiArray, messages.LEARNER_PROGRESS_TOPIC, messages.PROGRESS_QOS
    )
    sim = NodeProcess("sim_node", config, log_path=tmp_path / "sim.log")
    with sim, start_actor(config, tmp_path) as actor:
        rows = lambda: sum(int(msg.layout.dim[0].size) for _, msg in robot.transitions)  # noqa: E731
        # no learner progress yet: the actor runs max_policy_lag_steps + 1 steps, flushes and pauses
        assert probe.spin_until(lambda: rows() >= 251, STARTUP_S), f"{actor.output()}\n{sim.output()}"
        assert probe.spin_until(lambda: robot.diagnostic("throttled") == "True", 10.0), actor.output()
        paused_at = rows()
        probe.spin_for(1.0)
        assert rows() == paused_at == 251, "the actor did not pause for the learner"
        # a learner resumed from a run with 5000 steps: its first report is the starting point, so the actor
        # runs another max_policy_lag_steps + 1 steps and pauses again
        progress_pub.publish(messages.encode_progress(messages.LearnerProgress(env_steps=5000, updates=1)))
        assert probe.spin_until(lambda: rows() >= 2 * 251, 30.0), actor.output()
        probe.spin_for(1.0)
        assert rows() == 2 * 251, "the actor did not pause again"
    batches = [messages.decode_transitions(msg, 3, 1)[1] for _, msg in robot.transitions]
    truncated = np.concatenate([b.truncated for b in batches])
    next_obs = np.concatenate([b.next_obs for b in batches])
    obs = np.concatenate([b.obs for b in batches])
    ends = np.flatnonzero(truncated)
    assert ends.size >= 2 and ends[0] == 199 and ends[1] == 399  # 200-step episodes
    # within an episode consecutive transitions chain; across the reset they do not
    np.testing.assert_allclose(next_obs[:199], obs[1:200], rtol=1e-6)
    assert not np.allclose(next_obs[199], obs[200])


def test_deadman_and_human_intervention(probe: RosProbe, tmp_path: Path) -> None:
    task = make_task("pendulum_swingup")
    high = task.command_high[0]
    config = write_config(
        tmp_path,
        shared={"task": "pendulum_swingup", "mode": "deploy", "control_rate_hz": 100.0},
        actor={"require_enable": True, "policy_file": str(tmp_path / "policy.onnx")},
    )
    (tmp_path / "policy.onnx").write_bytes(policy_bytes(3, 1, 0.5))
    robot = FakeRobot(probe, list(task.joint_names))
    enable_pub = probe.publisher(Bool, "/rl_control/enable", 1)
    intervention_pub = probe.publisher(Float64MultiArray, "/rl_control/intervention", 1)
    joystick: dict[str, Any] = {"deadman": False, "action": None}

    def operator() -> None:  # a joystick node: deadman button and optional override, at 20 Hz
        enable_pub.publish(Bool(data=joystick["deadman"]))
        if joystick["action"] is not None:
            intervention_pub.publish(Float64MultiArray(data=[joystick["action"]]))

    probe.node.create_timer(0.05, operator)
    with start_actor(config, tmp_path) as actor:
        since = time.monotonic()
        assert robot.wait_commands(lambda c: c[0] == 0.0, STARTUP_S, since), (
            actor.output()
        )  # deadman released
        probe.spin_for(0.5)
        assert np.all(robot.command_values(since)[:, 0] == 0.0)
        joystick["deadman"] = True
        assert robot.wait_commands(lambda c: abs(c[0] - 0.5 * high) < 1e-3, 10.0, time.monotonic())
        joystick["action"] = -1.0
        assert robot.wait_commands(lambda c: abs(c[0] + high) < 1e-3, 10.0, time.monotonic())
        joystick["action"] = None  # the override times out after state_timeout_s: back to the policy
        assert robot.wait_commands(lambda c: abs(c[0] - 0.5 * high) < 1e-3, 10.0, time.monotonic())
        joystick["deadman"] = False
        assert robot.wait_commands(lambda c: c[0] == 0.0, 10.0, time.monotonic())
        assert probe.spin_until(lambda: int(robot.diagnostic("intervention_ticks") or 0) > 0, 5.0)
        assert int(robot.diagnostic("disabled_ticks")) > 0


def test_lockstep_quadruped_uses_imu_and_odometry_of_the_same_step(probe: RosProbe, tmp_path: Path) -> None:
    """A task needing /imu and /odom: each transition is built from the three topics of one sim step."""
    task = make_task("quadruped_walk")
    config = write_config(
        tmp_path,
        shared={"task": "quadruped_walk", "mode": "train", "control_rate_hz": 50.0},
        sim={"sim_mode": "lockstep"},
        actor={"reset_service": "/sim_node/reset", "transition_batch_size": 10, "max_policy_lag_steps": 0},
    )
    robot = FakeRobot(probe, list(task.joint_names))
    robot.publishing = False
    sim = NodeProcess("sim_node", config, log_path=tmp_path / "sim.log")
    with sim, start_actor(config, tmp_path) as actor:
        assert probe.spin_until(lambda: len(robot.transitions) >= 6, STARTUP_S), (
            f"{actor.output()}\n{sim.output()}"
        )
    batches = [
        messages.decode_transitions(msg, task.observation_dim, task.action_dim)[1]
        for _, msg in robot.transitions
    ]
    obs = np.concatenate([b.obs for b in batches])
    next_obs = np.concatenate([b.next_obs for b in batches])
    done = np.concatenate([b.terminated + b.truncated for b in batches]) > 0
    assert np.all(np.isfinite(obs)) and np.all(np.isfinite(next_obs))
    assert np.all(np.abs(obs[:, 6:9].sum(axis=1)) > 0.1)  # projected gravity from the IMU, never left at zero
    chained = ~done[:-1]
    np.testing.assert_allclose(next_obs[:-1][chained], obs[1:][chained], rtol=1e-5, atol=1e-6)


def test_policy_file_for_another_task_is_a_startup_error(tmp_path: Path) -> None:
    (tmp_path / "policy.onnx").write_bytes(policy_bytes(17, 4, 0.1))  # an arm policy
    config = write_config(
        tmp_path,
        shared={"task": "pendulum_swingup", "mode": "deploy"},
        actor={"policy_file": str(tmp_path / "policy.onnx")},
    )
    with start_actor(config, tmp_path) as actor:
        assert actor.wait(STARTUP_S) == 2
    assert "obs_dim=17" in actor.output() and "needs obs_dim=3" in actor.output()


@pytest.mark.parametrize(
    ("actor_mode", "document", "lockstep"),
    [
        ("lockstep", None, True),
        ("realtime", {"sim_node": {"ros__parameters": {"sim_mode": "lockstep"}}}, False),
        ("auto", {"sim_node": {"ros__parameters": {"sim_mode": "lockstep"}}}, True),
        ("auto", {"sim_node": {"ros__parameters": {"sim_mode": "realtime"}}}, False),
        ("auto", {"sim_node": {"ros__parameters": {}}}, True),  # sim_node's default is lockstep
        ("auto", {"actor_node": {"ros__parameters": {}}}, False),  # no sim node: hardware
        ("auto", None, False),
    ],
)
def test_resolve_lockstep(tmp_path: Path, actor_mode: str, document: dict | None, lockstep: bool) -> None:
    from rl_control.ros.actor_node import resolve_lockstep

    path = None
    if document is not None:
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(document), encoding="utf-8")
    assert resolve_lockstep(actor_mode, None if path is None else str(path)) is lockstep
