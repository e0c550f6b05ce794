"""actor_node in a child process against a fake robot (test probe) and against the real sim_node."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import Bool, Float64MultiArray, UInt8MultiArray

from rl_control.envs import make_task
from rl_control.envs.tasks import QuadrupedWalk
from rl_control.ros import messages
from rl_control.testing.experiment import TEST_CONTROLLER, write_actor_experiment
from rl_control.testing.exported_policy import constant_exported_policy, constant_task_policy
from rl_control.testing.node_process import NodeProcess
from rl_control.testing.policies import linear_policy
from rl_control.testing.probe import RosProbe, command_rows

pytestmark = pytest.mark.ros

CONTROLLER = TEST_CONTROLLER
STARTUP_S = 90.0  # node start-up is slow on a loaded 2-core machine


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
        return command_rows(self.commands, since)

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


def start_pendulum_actor_acting(
    probe: RosProbe, tmp_path: Path, actor_settings: dict[str, Any], position: float = 0.0
) -> tuple[NodeProcess, FakeRobot, float]:
    """A deployed 50 Hz pendulum actor with ``actor_settings`` against a fake robot at ``position``, started
    and acting on a constant policy (version 7, torque 0.8 of the limit): (actor, robot, torque)."""
    task = make_task("pendulum_swingup")
    config = write_actor_experiment(
        tmp_path,
        shared={"task": "pendulum_swingup", "mode": "deploy", "control_rate_hz": 50.0},
        actor=actor_settings,
    )
    robot = FakeRobot(probe, list(task.joint_names), rate_hz=50.0)
    robot.position[:] = position
    torque = 0.8 * task.command_high[0]
    actor = start_actor(config, tmp_path)
    robot.publish_policy(constant_exported_policy(3, 1, 0.8, version=7), version=7)
    if not robot.wait_commands(lambda c: abs(c[0] - torque) < 1e-3, STARTUP_S, 0.0):
        actor.stop()
        pytest.fail(f"the actor never applied the policy:\n{actor.output()}")
    return actor, robot, torque


def test_joint_remapping_and_policy_file(probe: RosProbe, tmp_path: Path) -> None:
    """Shuffled JointState order with extra joints: the command follows the configured joint order."""
    task = make_task("arm_reach")
    policy_file = tmp_path / "policy.onnx"
    policy_file.write_bytes(constant_task_policy(task, 0.5))
    command_order = list(reversed(task.joint_names))
    config = write_actor_experiment(
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


@pytest.mark.parametrize("pacing", ["realtime", "triggered"])
def test_stale_and_nan_states_give_safe_finite_commands(probe: RosProbe, tmp_path: Path, pacing: str) -> None:
    task = make_task("pendulum_swingup")
    # 50 Hz: the triggered watchdog waits 2 periods (40 ms) for a state, more than a loaded test process's
    # timer jitter, so only the deliberate silence makes it tick
    actor, robot, torque = start_pendulum_actor_acting(
        probe, tmp_path, {"safe_command": "zero", "pacing": pacing}, position=0.3
    )
    with actor:
        # watchdog ticks from here on (start-up, before the robot's states were discovered, does not count)
        assert probe.spin_until(lambda: robot.diagnostic("watchdog_ticks") is not None, 5.0)
        watchdog_before, running_since = int(robot.diagnostic("watchdog_ticks") or 0), time.monotonic()

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
        probe.spin_for(2.0)  # state-driven operation after the faults, so the commands are mostly its own
        values = robot.command_values()
        assert np.all(np.isfinite(values)), "a non-finite command was published"
        assert np.all(np.abs(values) <= task.command_high[0])
        assert int(robot.diagnostic("invalid_state_ticks")) > 0
        assert int(robot.diagnostic("stale_ticks")) > 0
        assert int(robot.diagnostic("stale_events")) >= 1  # the silence: one fresh -> stale transition
        assert robot.diagnostic("policy_version") == "7"
        assert robot.diagnostic("pacing") == pacing
        if pacing == "triggered":  # states drove the ticks; only the silence made the watchdog tick
            watchdog_ticks = int(robot.diagnostic("watchdog_ticks")) - watchdog_before
            assert 0 < watchdog_ticks < len(robot.command_values(running_since)) / 2


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (its threads, not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize("busy_poll", [False, True])
def test_busy_poll_spends_cpu_polling_acts_on_every_state_and_still_stops(
    probe: RosProbe, tmp_path: Path, busy_poll: bool
) -> None:
    actor, robot, _ = start_pendulum_actor_acting(
        probe, tmp_path, {"pacing": "triggered", "busy_poll": busy_poll}
    )
    try:
        assert actor.process is not None
        cpu_before, since, states_before = process_cpu_s(actor.process.pid), time.monotonic(), robot.sent
        probe.spin_for(3.0)
        busy_share = (process_cpu_s(actor.process.pid) - cpu_before) / (time.monotonic() - since)
        commands, states = len(robot.command_values(since)), robot.sent - states_before
    finally:
        stopping = time.monotonic()
        assert actor.stop() == 0, actor.output()
    # polling: measured 0.38-0.39 CPU seconds per second (rclpy's EventsExecutor yields briefly inside a
    # turn without a wait); sleeping between 50 Hz states: 0.06
    assert (busy_share > 0.2) == busy_poll, f"actor CPU time {busy_share:.2f} s per second"
    assert commands >= 0.8 * states > 0, f"{commands} commands for {states} states"
    assert time.monotonic() - stopping < 5.0, "the actor took long to stop"


def test_corrupt_policy_rejected_old_policy_keeps_running(probe: RosProbe, tmp_path: Path) -> None:
    task = make_task("pendulum_swingup")
    config = write_actor_experiment(
        tmp_path, shared={"task": "pendulum_swingup", "mode": "deploy", "control_rate_hz": 100.0}
    )
    robot = FakeRobot(probe, list(task.joint_names))
    high = task.command_high[0]
    with start_actor(config, tmp_path) as actor:
        since = time.monotonic()
        assert robot.wait_commands(lambda c: c[0] == 0.0, STARTUP_S, since), actor.output()  # no policy: safe
        robot.publish_policy(constant_exported_policy(3, 1, 0.5, version=1), version=1)
        assert robot.wait_commands(lambda c: abs(c[0] - 0.5 * high) < 1e-3, 20.0, since), actor.output()

        robot.publish_policy(b"\x08\x01garbage, not an onnx model", version=2)
        assert probe.spin_until(lambda: robot.diagnostic("policies_rejected") == "1", 20.0), actor.output()
        robot.publish_policy(
            constant_exported_policy(4, 1, -0.5, version=3), version=3
        )  # wrong observation size
        assert probe.spin_until(lambda: robot.diagnostic("policies_rejected") == "2", 20.0), actor.output()
        since = time.monotonic()
        probe.spin_for(0.5)
        values = robot.command_values(since)
        assert len(values) > 10 and np.allclose(values[:, 0], 0.5 * high, atol=1e-3)
        assert robot.diagnostic("policy_version") == "1"
        assert "rejected policy" in actor.output()

        robot.publish_policy(
            constant_exported_policy(3, 1, -0.25, version=4), version=4
        )  # hot swap to a good one
        assert robot.wait_commands(lambda c: abs(c[0] + 0.25 * high) < 1e-3, 20.0, since), actor.output()
    probe.spin_for(0.5)
    assert robot.command_values()[-1][0] == 0.0  # the last command on shutdown (SIGINT) is the safe one


def test_train_mode_streams_transitions(probe: RosProbe, tmp_path: Path) -> None:
    """Without a policy the actor explores randomly and streams sequenced transition batches."""
    config = write_actor_experiment(
        tmp_path,
        shared={"task": "pendulum_swingup", "mode": "train", "control_rate_hz": 100.0},
        actor={"transition_batch_size": 10, "max_policy_lag_steps": 0},
    )
    robot = FakeRobot(probe, ["hinge"])
    robot.position[:] = 1.0
    with start_actor(config, tmp_path) as actor:
        assert probe.spin_until(lambda: len(robot.transitions) >= 5, STARTUP_S), actor.output()
    decoded = [messages.transitions_from_message(msg, 3, 1) for _, msg in robot.transitions]
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
    config = write_actor_experiment(
        tmp_path,
        shared={"task": "pendulum_swingup", "mode": "train", "control_rate_hz": 50.0},
        sim={"sim_mode": "lockstep"},
        actor={
            "pacing": "lockstep",
            "reset_service": "/sim_node/reset",
            "transition_batch_size": 20,
            "max_policy_lag_steps": 250,
        },
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
    batches = [messages.transitions_from_message(msg, 3, 1)[1] for _, msg in robot.transitions]
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
    config = write_actor_experiment(
        tmp_path,
        shared={"task": "pendulum_swingup", "mode": "deploy", "control_rate_hz": 100.0},
        actor={"require_enable": True, "policy_file": str(tmp_path / "policy.onnx")},
    )
    (tmp_path / "policy.onnx").write_bytes(constant_exported_policy(3, 1, 0.5))
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
    config = write_actor_experiment(
        tmp_path,
        shared={"task": "quadruped_walk", "mode": "train", "control_rate_hz": 50.0},
        sim={"sim_mode": "lockstep"},
        actor={
            "pacing": "lockstep",
            "reset_service": "/sim_node/reset",
            "transition_batch_size": 10,
            "max_policy_lag_steps": 0,
        },
    )
    robot = FakeRobot(probe, list(task.joint_names))
    robot.publishing = False
    sim = NodeProcess("sim_node", config, log_path=tmp_path / "sim.log")
    with sim, start_actor(config, tmp_path) as actor:
        assert probe.spin_until(lambda: len(robot.transitions) >= 6, STARTUP_S), (
            f"{actor.output()}\n{sim.output()}"
        )
    batches = [
        messages.transitions_from_message(msg, task.observation_dim, task.action_dim)[1]
        for _, msg in robot.transitions
    ]
    obs = np.concatenate([b.obs for b in batches])
    next_obs = np.concatenate([b.next_obs for b in batches])
    done = np.concatenate([b.terminated + b.truncated for b in batches]) > 0
    assert np.all(np.isfinite(obs)) and np.all(np.isfinite(next_obs))
    assert np.all(np.abs(obs[:, 6:9].sum(axis=1)) > 0.1)  # projected gravity from the IMU, never left at zero
    chained = ~done[:-1]
    np.testing.assert_allclose(next_obs[:-1][chained], obs[1:][chained], rtol=1e-5, atol=1e-6)


def test_deploy_quadruped_follows_cmd_vel_and_stops_when_it_stops(probe: RosProbe, tmp_path: Path) -> None:
    """A plain Twist publisher on /cmd_vel steers a realtime deploy actor; without fresh Twists it stands."""
    task = make_task("quadruped_walk")
    start, stop = task.observation_layout["velocity_command"]
    echo = np.zeros((task.observation_dim, task.action_dim))  # action[i] = observed command[i], i < 3
    echo[np.arange(start, stop), np.arange(stop - start)] = 1.0
    (tmp_path / "policy.onnx").write_bytes(linear_policy(echo, version=1, joint_names=list(task.joint_names)))
    config = write_actor_experiment(
        tmp_path,
        shared={"task": "quadruped_walk", "mode": "deploy", "control_rate_hz": 50.0},
        actor={"policy_file": str(tmp_path / "policy.onnx"), "cmd_vel_timeout_s": 0.5},
    )
    home = np.array(task.spec.home_qpos)[np.array(task.spec.qpos_adr)]
    robot = FakeRobot(probe, list(task.joint_names), rate_hz=50.0)
    robot.position = home + 0.05  # the measured pose: what the stopped robot holds
    imu_pub = probe.publisher(Imu, messages.IMU_TOPIC, messages.STATE_QOS)
    odom_pub = probe.publisher(Odometry, messages.ODOM_TOPIC, messages.STATE_QOS)
    cmd_vel_pub = probe.publisher(Twist, "/cmd_vel", 10)  # reliable, depth 10: a typical teleop publisher
    teleop: dict[str, Twist | None] = {"twist": None}

    def sensors_and_teleop() -> None:
        imu, odom = Imu(), Odometry()
        imu.orientation.w = 1.0
        imu_pub.publish(imu)
        odom_pub.publish(odom)
        if teleop["twist"] is not None:
            cmd_vel_pub.publish(teleop["twist"])

    def twist(x: float, y: float, yaw_rate: float) -> Twist:
        msg = Twist()
        msg.linear.x, msg.linear.y, msg.angular.z = x, y, yaw_rate
        return msg

    def steered_by(expected: list[float]) -> Callable[[np.ndarray], bool]:
        def check(command: np.ndarray) -> bool:
            observed = (command[:3] - home[:3]) / QuadrupedWalk.ACTION_SCALE
            return bool(np.allclose(observed, expected, atol=1e-6) and np.allclose(command[3:], home[3:]))

        return check

    def standing(command: np.ndarray) -> bool:
        return bool(np.allclose(command, robot.position))

    probe.node.create_timer(0.02, sensors_and_teleop)
    with start_actor(config, tmp_path) as actor:
        assert robot.wait_commands(standing, STARTUP_S, time.monotonic()), actor.output()  # no Twist yet
        teleop["twist"] = twist(0.6, -0.1, 0.3)
        assert robot.wait_commands(steered_by([0.6, -0.1, 0.3]), 10.0, time.monotonic()), actor.output()
        teleop["twist"] = twist(3.0, 0.0, -2.0)  # beyond the trained range: clipped to it
        assert robot.wait_commands(steered_by([1.0, 0.0, -0.5]), 10.0, time.monotonic())
        teleop["twist"] = twist(float("nan"), 0.0, 0.0)  # refused: no fresh command, the robot stops
        assert robot.wait_commands(standing, 10.0, time.monotonic())
        teleop["twist"] = twist(0.4, 0.0, 0.0)
        assert robot.wait_commands(steered_by([0.4, 0.0, 0.0]), 10.0, time.monotonic())
        teleop["twist"] = None  # the teleop stops publishing: after cmd_vel_timeout_s the robot stops
        stopped_from = time.monotonic()
        assert robot.wait_commands(standing, 10.0, stopped_from)
        assert time.monotonic() - stopped_from >= 0.4  # not before the timeout (0.5 s, less one tick)
        assert probe.spin_until(lambda: int(robot.diagnostic("cmd_vel_stopped_ticks") or 0) > 0, 5.0)
    assert "cmd_vel: Twist linear.x is nan" in actor.output()


def test_policy_file_for_another_task_is_a_startup_error(tmp_path: Path) -> None:
    (tmp_path / "policy.onnx").write_bytes(constant_task_policy(make_task("arm_reach"), 0.1))
    config = write_actor_experiment(
        tmp_path,
        shared={"task": "pendulum_swingup", "mode": "deploy"},
        actor={"policy_file": str(tmp_path / "policy.onnx")},
    )
    with start_actor(config, tmp_path) as actor:
        assert actor.wait(STARTUP_S) == 2
    assert "obs_dim=21" in actor.output() and "needs obs_dim=3" in actor.output()
