"""sim_node in a child process: lockstep stepping, /clock, command validation, reset and pause, realtime."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("rclpy")

from nav_msgs.msg import Odometry
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool, Trigger

from rl_control.envs import make_task
from rl_control.envs.simulator import MujocoSimulator
from rl_control.ros import messages
from rl_control.ros.sim_node import reset_rng
from rl_control.testing.node_process import NodeProcess
from rl_control.testing.probe import RosProbe

pytestmark = [pytest.mark.ros, pytest.mark.usefixtures("ros_domain")]

CONTROLLER = "effort_controller"
RATE_HZ = 50.0
SEED = 3
PERIOD_NS = 20_000_000
STARTUP_S = 30.0


def write_config(tmp_path: Path, *, shared: dict | None = None, sim: dict | None = None) -> Path:
    document = {
        "/**": {
            "ros__parameters": {
                "task": "pendulum_swingup",
                "controller": CONTROLLER,
                "control_rate_hz": RATE_HZ,
                "run_dir": str(tmp_path / "run"),
                "seed": SEED,
                **(shared or {}),
            }
        },
        "sim_node": {"ros__parameters": {"sim_mode": "lockstep", **(sim or {})}},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def stamp_ns(msg: JointState | Imu | Odometry) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


class Lockstep:
    """Drives a lockstep sim_node: one command, then wait for the state with the next stamp."""

    def __init__(self, probe: RosProbe, node: NodeProcess) -> None:
        self.probe = probe
        self.node = node
        self.states = probe.collect(JointState, messages.JOINT_STATES_TOPIC, messages.STATE_QOS)
        self.clock = probe.collect(Clock, messages.CLOCK_TOPIC, messages.CLOCK_QOS)
        self.commands = probe.publisher(
            Float64MultiArray, messages.command_topic(CONTROLLER), messages.COMMAND_QOS
        )
        assert probe.spin_until(lambda: bool(self.states), STARTUP_S), f"no joint state:\n{node.output()}"
        # The command subscription must be matched before the first command is sent.
        assert probe.spin_until(lambda: self.commands.get_subscription_count() > 0, STARTUP_S)

    @property
    def latest(self) -> JointState:
        return self.states[-1][1]

    def wait_new_state(self, after_ns: int, timeout_s: float = 10.0) -> JointState:
        def arrived() -> bool:
            return stamp_ns(self.latest) > after_ns

        assert self.probe.spin_until(arrived, timeout_s), (
            f"no new state after {after_ns}:\n{self.node.output()}"
        )
        return self.latest

    def step(self, values: list[float]) -> JointState:
        before = stamp_ns(self.latest)
        self.commands.publish(Float64MultiArray(data=values))
        return self.wait_new_state(before)


def test_lockstep_advances_one_period_per_command_matching_the_simulator(tmp_path: Path, probe) -> None:
    with NodeProcess("sim_node", write_config(tmp_path)) as node:
        sim = Lockstep(probe, node)
        first = sim.latest
        assert list(first.name) == ["hinge"]

        # The same simulator in-process, reset from the same seeded distribution.
        task = make_task("pendulum_swingup")
        reference = MujocoSimulator(task.robot, control_rate_hz=RATE_HZ, seed=SEED)
        reference.reset(*task.initial_state(reset_rng(SEED)))
        np.testing.assert_allclose(first.position, reference.state().position, rtol=0, atol=1e-12)

        torques = [1.5, -2.0, 0.7, 0.0, 2.0, 1.0, -1.0, 0.3]
        previous = stamp_ns(first)
        for torque in torques:
            state = sim.step([torque])
            assert stamp_ns(state) - previous == PERIOD_NS  # exactly one control period per command
            previous = stamp_ns(state)
            reference.apply_command(np.array([torque]))
            expected = reference.step()
            np.testing.assert_allclose(state.position, expected.position, rtol=0, atol=1e-12)
            np.testing.assert_allclose(state.velocity, expected.velocity, rtol=0, atol=1e-12)
            # /clock follows the published stamps.
            assert probe.spin_until(lambda t=previous: clock_ns(sim) == t, 5.0), "/clock differs from stamp"

        # No command, no step: within half a second only idle re-publications with the same stamp arrive.
        probe.spin_for(0.7)
        assert stamp_ns(sim.latest) == previous
        np.testing.assert_array_equal(sim.latest.position, state.position)
        assert clock_ns(sim) == previous

        # Wrong length and NaN commands are rejected: the sim still advances, holding the previous command.
        state = sim.step([1.0, 1.0])
        reference.apply_command(np.array([torques[-1]]))
        np.testing.assert_allclose(state.position, reference.step().position, rtol=0, atol=1e-12)
        state = sim.step([float("nan")])
        np.testing.assert_allclose(state.position, reference.step().position, rtol=0, atol=1e-12)
        assert node.wait_for_output("rejected command on /effort_controller/commands", 5.0), node.output()
    assert node.returncode == 0, node.output()


def clock_ns(sim: Lockstep) -> int:
    """The latest /clock time (-1 before any)."""
    if not sim.clock:
        return -1
    msg = sim.clock[-1][1]
    return msg.clock.sec * 1_000_000_000 + msg.clock.nanosec


def test_reset_and_pause_services(tmp_path: Path, probe) -> None:
    with NodeProcess("sim_node", write_config(tmp_path)) as node:
        sim = Lockstep(probe, node)
        for _ in range(3):
            state = sim.step([2.0])
        before = stamp_ns(state)
        old_position = float(state.position[0])

        response = probe.call(Trigger, messages.SIM_RESET_SERVICE, Trigger.Request())
        assert response.success, response.message
        assert "episode 2" in response.message
        reset_state = sim.wait_new_state(before)
        assert stamp_ns(reset_state) - before == PERIOD_NS  # the clock never goes back across episodes
        assert float(reset_state.position[0]) != old_position
        assert -1.0 <= float(reset_state.velocity[0]) <= 1.0  # the task's initial-state distribution

        response = probe.call(SetBool, messages.SIM_PAUSE_SERVICE, SetBool.Request(data=True))
        assert response.success and response.message == "paused"
        paused_at = stamp_ns(sim.latest)
        sim.commands.publish(Float64MultiArray(data=[1.0]))
        probe.spin_for(0.6)
        assert stamp_ns(sim.latest) == paused_at  # paused: the command did not step the sim

        response = probe.call(SetBool, messages.SIM_PAUSE_SERVICE, SetBool.Request(data=False))
        assert response.success and response.message == "running"
        resumed = sim.wait_new_state(paused_at)  # the command received while paused is applied now
        assert stamp_ns(resumed) - paused_at == PERIOD_NS
        probe.spin_for(0.3)
        assert stamp_ns(sim.latest) == stamp_ns(resumed)


@pytest.mark.parametrize(("rate_hz", "factor"), [(50.0, 2.0), (500.0, 1.0)])
def test_realtime_mode_paces_by_the_wall_clock(tmp_path: Path, probe, rate_hz: float, factor: float) -> None:
    """States at rate × factor per wall second; 500 Hz needs a shortened physics step (2 ms, model 5 ms)."""
    config = write_config(
        tmp_path,
        shared={"control_rate_hz": rate_hz},
        sim={"sim_mode": "realtime", "real_time_factor": factor},
    )
    period_ns = round(1e9 / rate_hz)
    expected_per_s = rate_hz * factor
    with NodeProcess("sim_node", config) as node:
        states = probe.collect(JointState, messages.JOINT_STATES_TOPIC, messages.STATE_QOS)
        assert probe.spin_until(lambda: len(states) > 5, STARTUP_S), node.output()
        start = len(states)
        probe.spin_for(1.0)
        window = states[start:]
        # Loose bounds on the count: the machine is shared; the stamps must be exact.
        assert 0.6 * expected_per_s <= len(window) <= 1.3 * expected_per_s, len(window)
        stamps = np.array([stamp_ns(msg) for _, msg in window])
        assert np.all(np.diff(stamps) % period_ns == 0) and np.all(np.diff(stamps) > 0)
        sim_seconds = (stamps[-1] - stamps[0]) * 1e-9
        wall_seconds = window[-1][0] - window[0][0]
        assert sim_seconds / wall_seconds == pytest.approx(factor, rel=0.3)
    if rate_hz > 200.0:
        assert "physics step shortened from 0.005 s to 0.002 s" in node.output()


@pytest.mark.parametrize(
    ("shared", "sim", "expected"),
    [
        ({}, {"sim_mode": "lockstp"}, "did you mean 'lockstep'"),
        ({"joint_names": ["elbow"]}, {}, "unknown ['elbow'], missing ['hinge']"),
    ],
)
def test_bad_config_exits_with_a_clear_message(
    tmp_path: Path, shared: dict, sim: dict, expected: str
) -> None:
    node = NodeProcess("sim_node", write_config(tmp_path, shared=shared, sim=sim)).start()
    try:
        assert node.wait(timeout_s=STARTUP_S) == 2
    finally:
        node.stop()
    assert expected in node.output()


def test_floating_base_robot_publishes_imu_and_odometry_with_the_joint_state_stamp(
    tmp_path: Path, probe
) -> None:
    config = write_config(tmp_path, shared={"task": "quadruped_walk"})
    imu = probe.collect(Imu, messages.IMU_TOPIC, messages.STATE_QOS)
    odom = probe.collect(Odometry, messages.ODOM_TOPIC, messages.STATE_QOS)
    with NodeProcess("sim_node", config) as node:
        sim = Lockstep(probe, node)
        joints = list(sim.latest.name)
        assert len(joints) == 12 and "FL_hip_joint" in joints
        for _ in range(3):
            state = sim.step(list(sim.latest.position))  # position servos: hold the measured pose
            stamp = stamp_ns(state)

            def sensors_match(stamp: int = stamp) -> bool:
                return bool(imu and odom) and stamp_ns(imu[-1][1]) == stamp == stamp_ns(odom[-1][1])

            assert probe.spin_until(sensors_match, 5.0), node.output()
        quaternion = imu[-1][1].orientation
        norm = np.linalg.norm([quaternion.w, quaternion.x, quaternion.y, quaternion.z])
        assert norm == pytest.approx(1.0, abs=1e-6)
        assert imu[-1][1].header.frame_id == "imu_link"
        assert abs(imu[-1][1].linear_acceleration.z) > 5.0  # gravity (specific force) on a standing robot
        assert odom[-1][1].child_frame_id == "base_link"


def test_missing_or_unparsable_params_file_exits_with_code_2(tmp_path: Path) -> None:
    missing = NodeProcess("sim_node", tmp_path / "nope.yaml").start()
    assert missing.wait(timeout_s=STARTUP_S) == 2
    assert "nope.yaml: config file not found" in missing.output()
    broken = tmp_path / "broken.yaml"
    broken.write_text("sim_node:\n  ros__parameters: [1, 2\n", encoding="utf-8")
    unparsable = NodeProcess("sim_node", broken).start()
    assert unparsable.wait(timeout_s=STARTUP_S) == 2
    assert "cannot start ROS" in unparsable.output() and "broken.yaml" in unparsable.output()


def test_realtime_applies_the_safe_command_when_commands_stop(tmp_path: Path, probe) -> None:
    """A commander that goes silent: the applied effort drops to zero within command_timeout_s."""
    timeout_s = 0.3
    config = write_config(tmp_path, sim={"sim_mode": "realtime", "command_timeout_s": timeout_s})
    with NodeProcess("sim_node", config) as node:
        states = probe.collect(JointState, messages.JOINT_STATES_TOPIC, messages.STATE_QOS)
        commands = probe.publisher(
            Float64MultiArray, messages.command_topic(CONTROLLER), messages.COMMAND_QOS
        )
        assert probe.spin_until(lambda: bool(states), STARTUP_S), node.output()
        assert probe.spin_until(lambda: commands.get_subscription_count() > 0, STARTUP_S)
        last_sent = 0.0
        for _ in range(50):  # 1 s of +1.5 N·m at 50 Hz
            commands.publish(Float64MultiArray(data=[1.5]))
            last_sent = time.monotonic()
            probe.spin_for(1.0 / RATE_HZ)
        assert states[-1][1].effort[0] == pytest.approx(1.5), "the commanded effort must be applied"

        def released() -> bool:
            return any(t > last_sent and abs(msg.effort[0]) < 1e-9 for t, msg in states)

        assert probe.spin_until(released, 5.0), node.output()
        released_at = next(t for t, msg in states if t > last_sent and abs(msg.effort[0]) < 1e-9)
        delay = released_at - last_sent
        print(f"safe command applied {delay * 1e3:.0f} ms after the last command (timeout {timeout_s} s)")
        assert timeout_s - 0.05 <= delay <= timeout_s + 3 / RATE_HZ + 0.2
        assert "no command on /effort_controller/commands" in node.output()
