"""Gymnasium environments and task behaviour: check_env, seeding, termination, scripted controllers."""

from __future__ import annotations

import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from rl_control.envs import ENV_IDS, TASK_NAMES, RandomizationConfig, RobotTaskEnv, make_task, make_vector_env


@pytest.mark.parametrize("task_name", TASK_NAMES)
@pytest.mark.parametrize("randomized", [False, True])
def test_check_env_passes(task_name: str, randomized: bool) -> None:
    env = gym.make(ENV_IDS[task_name], randomization=RandomizationConfig(enabled=randomized))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Box observation space (min|max)imum value is.*infinity")
        check_env(env.unwrapped, skip_render_check=True)
    obs, info = env.reset(seed=1)
    assert obs.shape == (env.unwrapped.task.observation_dim,) and obs.dtype == np.float32
    assert ("friction" in info["randomization"]) == randomized
    env.close()


def test_unknown_task_lists_the_available_ones() -> None:
    with pytest.raises(ValueError, match="available: pendulum_swingup"):
        make_task("pendulum_swingdown")
    with pytest.raises(ValueError, match="unknown task"):
        RobotTaskEnv("walker")


def test_goal_generator_option_sets_the_goals_and_bad_options_are_named() -> None:
    env = RobotTaskEnv("arm_reach")
    targets = []
    for seed in (1, 2):  # two different start seeds, one goal generator each time from the same seed
        env.reset(seed=seed, options={"goal_rng": np.random.default_rng(7)})
        targets.append(env.task.target.copy())
    np.testing.assert_array_equal(targets[0], targets[1])
    with pytest.raises(ValueError, match=r"unknown reset option.*goal_seed"):
        env.reset(options={"goal_seed": 7})
    with pytest.raises(TypeError, match="'goal_rng' must be a numpy Generator, got int"):
        env.reset(options={"goal_rng": 7})


@pytest.mark.parametrize("task_name", ["pendulum_swingup", "quadruped_walk"])
def test_same_seed_same_episode(task_name: str) -> None:
    def rollout() -> tuple[np.ndarray, list[float]]:
        env = RobotTaskEnv(task_name, randomization=RandomizationConfig(enabled=True))
        obs, _ = env.reset(seed=42)
        rng = np.random.default_rng(0)
        observations, rewards = [obs], []
        for _ in range(40):
            obs, reward, terminated, truncated, _ = env.step(rng.uniform(-1, 1, env.action_space.shape))
            observations.append(obs)
            rewards.append(reward)
            if terminated or truncated:
                break
        return np.array(observations), rewards

    obs_a, rew_a = rollout()
    obs_b, rew_b = rollout()
    np.testing.assert_array_equal(obs_a, obs_b)
    assert rew_a == rew_b


def test_time_limit_truncates_and_failure_terminates() -> None:
    env = RobotTaskEnv("pendulum_swingup")
    env.reset(seed=0)
    flags = [env.step(np.zeros(1, np.float32))[2:4] for _ in range(env.task.episode_steps)]
    assert all(flags[i] == (False, False) for i in range(len(flags) - 1))
    assert flags[-1] == (False, True)

    quad = RobotTaskEnv("quadruped_walk")
    quad.reset(seed=0)
    quad.sim.data.qpos[3:7] = [0.0, 1.0, 0.0, 0.0]  # upside down
    quad.sim.data.qpos[2] = 0.5
    _, _, terminated, truncated, _ = quad.step(np.zeros(12, np.float32))
    assert terminated and not truncated


def test_vector_env_steps_a_batch() -> None:
    envs = make_vector_env("pendulum_swingup", 3)
    obs, _ = envs.reset(seed=[1, 2, 3])
    assert obs.shape == (3, 3)
    assert not np.allclose(obs[0], obs[1])
    obs, rewards, terminated, truncated, _ = envs.step(np.zeros((3, 1), np.float32))
    assert obs.shape == (3, 3) and rewards.shape == (3,) and terminated.shape == truncated.shape == (3,)
    envs.close()
    with pytest.raises(ValueError, match="num_envs"):
        make_vector_env("pendulum_swingup", 0)


def _pendulum_energy_controller(obs: np.ndarray) -> np.ndarray:
    """Energy pumping (bang-bang) far from upright, PD balance near it."""
    c, s, w = (float(v) for v in obs)
    theta = math.atan2(s, c)
    energy = 0.5 * (1.0 / 3.0) * w * w + 9.81 * 0.5 * c  # relative to the pivot; upright at rest = 4.905
    if abs(theta) < 0.5 and energy > 3.4:
        u = -(10.0 * theta + 2.0 * w) / 2.0
    else:
        u = math.copysign(1.0, (4.905 - energy) * w) if abs(w) > 0.05 else 1.0
    return np.array([np.clip(u, -1.0, 1.0)], np.float32)


def _mean_return(env: RobotTaskEnv, policy, episodes: int) -> float:
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=episode)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy(obs))
            total += reward
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


def test_scripted_swingup_reaches_the_pendulum_success_threshold() -> None:
    env = RobotTaskEnv("pendulum_swingup")
    scripted = _mean_return(env, _pendulum_energy_controller, episodes=10)
    passive = _mean_return(env, lambda obs: np.zeros(1, np.float32), episodes=10)
    assert scripted >= env.task.success_threshold > passive
    # Upright at rest scores 0 per step, hanging at rest -1.
    task = env.task
    assert task.reward(np.array([1.0, 0.0, 0.0]), np.zeros(1), np.array([1.0, 0.0, 0.0])) == 0.0
    assert task.reward(np.array([-1.0, 0.0, 0.0]), np.zeros(1), np.zeros(3)) == pytest.approx(-1.0)


def test_scripted_reaching_reaches_the_arm_success_threshold() -> None:
    """The threshold is reachable from the observation alone (the servo targets' lead included)."""
    from rl_control.learning.experts import arm_reach_expert

    env = RobotTaskEnv("arm_reach")
    scripted = _mean_return(env, arm_reach_expert(env.task), episodes=10)
    still = _mean_return(env, lambda obs: np.zeros(4, np.float32), episodes=10)
    assert scripted >= env.task.success_threshold > still


def test_arm_zero_action_holds_pose_and_fk_matches_simulator() -> None:
    env = RobotTaskEnv("arm_reach")
    obs, _ = env.reset(seed=3)
    start = obs[:4].copy()
    for _ in range(50):
        obs, *_ = env.step(np.zeros(4, np.float32))
    assert np.max(np.abs(obs[:4] - start)) < 0.03  # servo targets held, only gravity sag
    site = env.sim.data.site("ee").xpos
    np.testing.assert_allclose(obs[8:11], site, atol=1e-5)


def test_arm_observes_the_lead_of_its_servo_targets() -> None:
    env = RobotTaskEnv("arm_reach")
    task = env.task
    obs, _ = env.reset(seed=4)
    lead = slice(*task.observation_layout["servo_target_lead"])
    assert lead == slice(17, 21) and not obs[lead].any()  # no command yet this episode
    start = obs[:4].astype(np.float64)
    action = np.array([1.0, -1.0, 0.5, 0.0], np.float32)
    obs, *_ = env.step(action)
    commanded = start + task.DELTA_SCALE * action  # the first target starts from the measured pose
    np.testing.assert_allclose(obs[lead], commanded - obs[:4], atol=1e-5)
    assert obs[lead][0] > 0.0 > obs[lead][1]  # the servos lag their targets after one tick
    for _ in range(5):  # held actions wind the targets up to MAX_LEAD ahead, never further
        obs, *_ = env.step(action)
    assert np.all(np.abs(obs[lead]) <= task.MAX_LEAD + 1e-6)
    obs, _ = env.reset(seed=5)
    assert not obs[lead].any()  # a new episode forgets the old targets


def test_quadruped_observation_and_command_layout() -> None:
    env = RobotTaskEnv("quadruped_walk")
    obs, _ = env.reset(seed=0)
    task = env.task
    np.testing.assert_allclose(obs[6:9], [0.0, 0.0, -1.0], atol=1e-6)  # level body: gravity straight down
    np.testing.assert_allclose(obs[9:12], task.velocity_command, rtol=1e-6)
    action = np.linspace(-1, 1, 12).astype(np.float32)
    obs, *_ = env.step(action)
    np.testing.assert_allclose(obs[36:48], action, atol=1e-6)  # last action is observed
    task.set_velocity_command(5.0, 0.0, 0.0)
    assert task.velocity_command[0] == pytest.approx(task.COMMAND_HIGH[0])


def test_cartpole_upright_beats_hanging() -> None:
    task = make_task("cartpole_swingup")
    upright = np.array([0.0, 1.0, 0.0, 0.0, 0.0])
    hanging = np.array([0.0, -1.0, 0.0, 0.0, 0.0])
    assert task.reward(upright, np.zeros(1), upright) == pytest.approx(1.0)
    assert task.reward(hanging, np.zeros(1), hanging) == pytest.approx(0.0)
    assert task.command(np.array([0.5]), None)[1] == 0.0  # the passive hinge gets no effort


def _cartpole_lqr_gain(sim_env: RobotTaskEnv) -> np.ndarray:
    """Discrete LQR gain around upright from a finite-difference linearization of one control step."""
    sim = sim_env.sim

    def step(state: np.ndarray, force: float) -> np.ndarray:
        sim.reset(qpos=state[:2].copy(), qvel=state[2:].copy())
        sim.apply_command(np.array([force, 0.0]))
        measured = sim.step()
        return np.concatenate([measured.position, measured.velocity])

    eps, origin = 1e-2, np.zeros(4)
    base = step(origin, 0.0)
    a_mat = np.stack([(step(origin + eps * np.eye(4)[i], 0.0) - base) / eps for i in range(4)], axis=1)
    b_mat = (step(origin, 1.0) - base)[:, None]
    q_mat, r_mat = np.diag([1.0, 5.0, 0.5, 0.5]), np.array([[0.01]])
    p_mat = q_mat.copy()
    for _ in range(3000):
        gain = np.linalg.solve(r_mat + b_mat.T @ p_mat @ b_mat, b_mat.T @ p_mat @ a_mat)
        p_mat = q_mat + a_mat.T @ p_mat @ (a_mat - b_mat @ gain)
    return gain[0]


def test_scripted_swingup_and_lqr_reach_the_cartpole_success_threshold() -> None:
    env = RobotTaskEnv("cartpole_swingup")
    gain = _cartpole_lqr_gain(env)
    mass, com, gravity = 0.1, 0.5, 9.81  # the pole of sim/cartpole.xml
    inertia = mass * com**2 + mass / 12.0
    upright_energy = mass * gravity * com

    def controller(obs: np.ndarray) -> np.ndarray:
        x, c, s, xd, w = (float(v) for v in obs)
        energy = 0.5 * inertia * w * w + mass * gravity * com * c
        if c > math.cos(0.5) and abs(energy - upright_energy) < 0.2:
            force = -float(gain @ np.array([x, math.atan2(s, c), xd, w]))
        else:
            force = -10.0 * math.copysign(1.0, (upright_energy - energy) * w * c) if abs(w) > 0.05 else 10.0
            force += -5.0 * x - 2.0 * xd
        return np.array([np.clip(force / 10.0, -1.0, 1.0)], np.float32)

    scripted = _mean_return(env, controller, episodes=3)
    passive = _mean_return(env, lambda obs: np.zeros(1, np.float32), episodes=3)
    assert scripted >= env.task.success_threshold > passive


@pytest.mark.parametrize("task_name", TASK_NAMES)
def test_random_actions_under_randomization_stay_finite(task_name: str) -> None:
    env = RobotTaskEnv(task_name, randomization=RandomizationConfig(enabled=True, push_interval_s=[0.5, 1.0]))
    env.reset(seed=5)
    rng = np.random.default_rng(5)
    for _ in range(300):
        obs, reward, terminated, truncated, _ = env.step(rng.uniform(-1, 1, env.action_space.shape))
        assert np.all(np.isfinite(obs)) and math.isfinite(reward)
        if terminated or truncated:
            env.reset()
    assert "push_count" in env.randomization_info()


def test_quadruped_walks_forward_with_an_open_loop_trot() -> None:
    """The model can locomote: a fixed diagonal-pair trot moves it forward without falling."""
    env = RobotTaskEnv("quadruped_walk")
    obs, _ = env.reset(seed=0)
    speeds = []
    for t in range(200):  # 4 s
        phase = 2.0 * math.pi * 3.0 * t / env.task.control_rate_hz  # 3 Hz
        action = np.zeros(12, np.float32)
        for leg, offset in enumerate((0.0, math.pi, math.pi, 0.0)):  # FL, FR, RL, RR: diagonal pairs
            action[3 * leg + 1] = math.sin(phase + offset)  # thigh swing, full 0.25 rad
            action[3 * leg + 2] = -max(0.0, math.sin(phase + offset + 3.93))  # calf flex lifts the foot
        obs, _, terminated, _, _ = env.step(action)
        assert not terminated
        speeds.append(obs[0])
    assert np.mean(speeds[50:]) > 0.25  # body-frame forward speed [m/s] from odometry
