"""cmd_vel without ROS: a velocity command reaches the observation; without a fresh one deploy stops."""

from __future__ import annotations

import numpy as np
import pytest

from rl_control.actor.control_loop import ControlLoop, Pacing
from rl_control.actor.core import ActorCore, task_command_safety
from rl_control.actor.inputs import LatestInputs
from rl_control.actor.state_mapping import ImuSample, JointSample, OdomSample
from rl_control.actor.throttle import UtdThrottle
from rl_control.actor.velocity_command import VelocityCommandInput, tracks_velocity_command, twist_command
from rl_control.envs.tasks import QuadrupedWalk, make_task
from rl_control.policy.runtime import OnnxPolicy
from rl_control.testing.policies import linear_policy

TIMEOUT_S = 0.5


def echo_command_policy(task: QuadrupedWalk) -> OnnxPolicy:
    """action[i] = observed velocity command[i] (i < 3), 0 elsewhere: the command shows what was observed."""
    start, stop = task.observation_layout["velocity_command"]
    weights = np.zeros((task.observation_dim, task.action_dim))
    for i, row in enumerate(range(start, stop)):
        weights[row, i] = 1.0
    return OnnxPolicy.from_bytes(linear_policy(weights, version=1))


def test_only_velocity_tasks_track_cmd_vel_and_twists_must_be_finite() -> None:
    assert tracks_velocity_command(make_task("quadruped_walk"))
    assert not tracks_velocity_command(make_task("pendulum_swingup"))
    assert twist_command(0.5, -0.1, 0.2) == (0.5, -0.1, 0.2)
    with pytest.raises(ValueError, match=r"linear\.y is nan"):
        twist_command(0.5, float("nan"), 0.0)
    with pytest.raises(ValueError, match="cmd_vel_timeout_s"):
        VelocityCommandInput(QuadrupedWalk(), 0.0, stop_when_stale=True)


def test_training_keeps_the_task_command_without_a_fresh_twist() -> None:
    task = QuadrupedWalk()
    task.reset(np.random.default_rng(0))
    sampled = task.velocity_command.copy()
    inputs = LatestInputs(0.2, needs_imu=True, needs_odometry=True)
    velocity = VelocityCommandInput(task, TIMEOUT_S, stop_when_stale=False)
    assert velocity.update(inputs, now=10.0)
    np.testing.assert_array_equal(task.velocity_command, sampled)  # no Twist yet: the episode's sample
    inputs.put_velocity_command((5.0, -0.1, -3.0), received=10.0)
    assert velocity.update(inputs, now=10.1)
    np.testing.assert_allclose(task.velocity_command, [task.COMMAND_HIGH[0], -0.1, task.COMMAND_LOW[2]])
    assert velocity.update(inputs, now=11.0)  # stale: the last command is kept
    np.testing.assert_allclose(task.velocity_command, [task.COMMAND_HIGH[0], -0.1, task.COMMAND_LOW[2]])
    assert velocity.stops == 0


def _quadruped_loop(published: list[np.ndarray], clock: list[float]) -> tuple[ControlLoop, LatestInputs]:
    task = make_task("quadruped_walk")
    assert isinstance(task, QuadrupedWalk)
    core = ActorCore(task, task_command_safety(task, task.joint_names), train=False, clock=lambda: clock[0])
    core.set_policy(echo_command_policy(task))
    inputs = LatestInputs(0.2, needs_imu=True, needs_odometry=True)
    loop = ControlLoop(
        core,
        inputs,
        published.append,
        pacing=Pacing.REALTIME,
        rate_hz=50.0,
        throttle=UtdThrottle(0),
        velocity=VelocityCommandInput(task, TIMEOUT_S, stop_when_stale=True),
        clock=lambda: clock[0],
    )
    return loop, inputs


def _put_state(inputs: LatestInputs, position: np.ndarray, now: float) -> None:
    zeros = np.zeros(3)
    inputs.put_joints(JointSample(position, np.zeros_like(position), np.zeros_like(position), now, now))
    inputs.put_imu(ImuSample(np.array([1.0, 0.0, 0.0, 0.0]), zeros, np.array([0.0, 0.0, 9.81]), now, now))
    inputs.put_odom(OdomSample(zeros, now, now))


def test_deploy_follows_a_fresh_twist_and_stops_without_one() -> None:
    published: list[np.ndarray] = []
    clock = [100.0]
    loop, inputs = _quadruped_loop(published, clock)
    task = loop.core.task
    assert isinstance(task, QuadrupedWalk)
    home = task.default_position
    measured = home + 0.05  # where the robot stands: what "hold" commands

    def tick(now: float) -> np.ndarray:
        clock[0] = now
        _put_state(inputs, measured, now)
        loop.tick(now)
        return published[-1]

    np.testing.assert_allclose(tick(100.0), measured)  # no Twist yet: stand (hold the measured pose)
    inputs.put_velocity_command((0.6, -0.1, 0.3), received=100.01)
    command = tick(100.02)
    np.testing.assert_allclose((command[:3] - home[:3]) / task.ACTION_SCALE, [0.6, -0.1, 0.3], atol=1e-6)
    np.testing.assert_allclose(command[3:], home[3:])
    inputs.put_velocity_command((3.0, 0.0, 0.0), received=100.04)  # beyond the trained range: clipped
    command = tick(100.05)
    assert (command[0] - home[0]) / task.ACTION_SCALE == pytest.approx(task.COMMAND_HIGH[0])
    np.testing.assert_allclose(tick(100.04 + TIMEOUT_S + 0.01), measured)  # stale: the robot stops
    assert loop.velocity is not None and loop.velocity.stops == 2
    assert loop.core.counters.disabled == 2 and loop.core.counters.policy_actions == 2
