"""Physics sanity of the shipped MJCF models and limits of the simulator/task command path."""

from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest

from rl_control.envs import TASK_NAMES, MujocoSimulator, RobotState, make_task
from rl_control.envs.robot_model import load_model, robot_spec

ROBOTS = ("pendulum", "cartpole", "arm", "quadruped")


def test_pendulum_small_angle_period_matches_theory() -> None:
    sim = MujocoSimulator("pendulum", control_rate_hz=200.0)  # decimation 1: sample every physics step
    amplitude = 0.05
    sim.reset(qpos=np.array([math.pi - amplitude]), qvel=np.array([0.0]))
    sim.apply_command(np.zeros(1))
    times, angles = [], []
    for _ in range(2000):  # 10 s, about six periods
        state = sim.step()
        times.append(state.stamp)
        angles.append(state.position[0] - math.pi)
    angles_arr, times_arr = np.array(angles), np.array(times)
    crossings = []
    for i in np.flatnonzero((angles_arr[:-1] < 0) & (angles_arr[1:] >= 0)):  # upward zero crossings
        a0, a1 = angles_arr[i], angles_arr[i + 1]
        crossings.append(times_arr[i] + (times_arr[i + 1] - times_arr[i]) * (-a0) / (a1 - a0))
    measured = float(np.mean(np.diff(crossings)))
    mass, length, gravity = 1.0, 1.0, 9.81  # the rod of sim/pendulum.xml
    inertia_pivot = mass * length**2 / 3.0
    theory = 2.0 * math.pi * math.sqrt(inertia_pivot / (mass * gravity * length / 2.0))
    assert len(crossings) >= 5
    assert abs(measured - theory) / theory < 0.02, (measured, theory)


@pytest.mark.parametrize("robot", ROBOTS)
def test_models_have_home_keyframe_realistic_masses_and_limits(robot: str) -> None:
    model = load_model(robot)
    spec = robot_spec(robot)
    assert mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_KEY, "home") >= 0
    assert np.all(model.body_mass[1:] > 0.0) and np.all(model.body_inertia[1:] > 0.0)
    assert 0.1 < model.body_mass.sum() < 50.0
    actuated = np.asarray(spec.actuator_of_joint) >= 0
    assert np.all(spec.command_low[actuated] < spec.command_high[actuated])
    assert np.all(model.actuator_ctrllimited == 1)
    assert model.opt.timestep <= 0.005


def test_quadruped_stands_at_home_with_imu_and_odometry() -> None:
    sim = MujocoSimulator("quadruped", control_rate_hz=50.0)
    state = sim.reset()
    sim.apply_command(state.position)
    for _ in range(100):  # 2 s holding the home pose
        state = sim.step()
    assert sim.data.qpos[2] > 0.25  # trunk still up
    assert state.imu_orientation is not None and abs(np.linalg.norm(state.imu_orientation) - 1.0) < 1e-9
    assert state.imu_linear_acceleration is not None
    assert abs(state.imu_linear_acceleration[2] - 9.81) < 0.5  # accelerometer reads +g at rest
    assert state.base_linear_velocity is not None and np.linalg.norm(state.base_linear_velocity) < 0.05


def test_effort_commands_are_clipped_to_actuator_limits() -> None:
    sim = MujocoSimulator("pendulum", control_rate_hz=50.0)
    sim.reset(qpos=np.array([math.pi]), qvel=np.array([0.0]))
    sim.apply_command(np.array([100.0]))
    state = sim.step()
    assert sim.data.ctrl[0] == pytest.approx(2.0)
    assert state.effort[0] == pytest.approx(2.0)


def test_position_commands_respect_joint_limits_under_random_actions() -> None:
    task = make_task("arm_reach")
    sim = MujocoSimulator("arm", control_rate_hz=task.control_rate_hz)
    rng = np.random.default_rng(0)
    task.reset(rng)
    state = sim.reset(*task.initial_state(rng))
    spec = robot_spec("arm")
    for _ in range(200):
        command = task.command(rng.uniform(-3.0, 3.0, task.action_dim), state)
        assert np.all(command >= task.command_low) and np.all(command <= task.command_high)
        sim.apply_command(command)
        state = sim.step()
    assert np.all(state.position >= np.asarray(spec.joint_low) - 0.05)
    assert np.all(state.position <= np.asarray(spec.joint_high) + 0.05)
    torque = sim.data.actuator_force
    assert np.all(np.abs(torque) <= sim.model.actuator_forcerange[:, 1] + 1e-9)


@pytest.mark.parametrize("task_name", TASK_NAMES)
def test_bad_commands_and_actions_are_rejected(task_name: str) -> None:
    task = make_task(task_name)
    sim = MujocoSimulator(task.robot, control_rate_hz=task.control_rate_hz)
    state = sim.reset()
    with pytest.raises(ValueError, match="shape"):
        task.command(np.zeros(task.action_dim + 1), state)
    with pytest.raises(ValueError, match="non-finite"):
        task.command(np.full(task.action_dim, np.nan), state)
    with pytest.raises(ValueError, match="shape"):
        sim.apply_command(np.zeros(len(sim.joint_names) + 2))
    with pytest.raises(ValueError, match="non-finite"):
        sim.apply_command(np.full(len(sim.joint_names), np.inf))
    safe = task.safe_command(state)
    assert safe.shape == (len(task.joint_names),) and np.all(np.isfinite(safe))
    if task.command_interface == "position":
        np.testing.assert_allclose(safe, np.clip(state.position, task.command_low, task.command_high))
        broken = RobotState(np.full(len(task.joint_names), np.nan), state.velocity, state.effort)
        with pytest.raises(ValueError, match="cannot hold"):
            task.safe_command(broken)
    else:
        assert np.all(safe == 0.0)


def test_control_rate_must_divide_physics_rate() -> None:
    with pytest.raises(ValueError, match="not a multiple of the physics step"):
        MujocoSimulator("pendulum", control_rate_hz=30.0)


def test_quadruped_observation_needs_imu_and_odometry() -> None:
    task = make_task("quadruped_walk")
    n = len(task.joint_names)
    bare = RobotState(position=np.zeros(n), velocity=np.zeros(n), effort=np.zeros(n))
    with pytest.raises(ValueError, match="IMU"):
        task.observation(bare)


def test_bench_sim_reports_every_robot() -> None:
    import io

    from rich.console import Console

    from rl_control.envs.bench import bench_sim

    buffer = io.StringIO()
    result = bench_sim(json_output=True, quick=True, console=Console(file=buffer, width=120))
    assert set(result["robots"]) == set(ROBOTS)
    for figures in result["robots"].values():
        assert figures["env_steps_per_s"] > 0 and figures["raw_steps_per_s"] > 0
        # The env does the raw stepping and more, but a quick run on a shared machine times a few
        # milliseconds per block: a robot whose physics dominates (the quadruped) can come out a little
        # faster than raw (observed: -11 % while the test suite ran). Only a gross error fails here.
        assert math.isfinite(figures["overhead"]) and figures["overhead"] > -0.5
    assert "quadruped" in buffer.getvalue()
