"""Scripted expert for Gymnasium ``Pendulum-v1`` and demonstration recording.

Pendulum-v1 dynamics (angle 0 = upright): ``theta_dd = 3 g / (2 l) sin(theta) + 3 / (m l^2) u`` with
g = 10, m = l = 1, so with ``E = 0.5 theta_d^2 + 15 (cos(theta) - 1)`` (0 at rest upright) we get
``dE/dt = 3 u theta_d``. Far from upright the expert pumps energy toward 0 (``u = -k E theta_d``,
saturated); near upright a PD law stabilizes. It reaches the typical -150 return of trained agents.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np

from rl_control.learning.replay import TransitionBatch, save_demonstrations

MAX_TORQUE = 2.0
_GRAVITY_TERM = 15.0  # 3 g / (2 l)
_CAPTURE_COS = math.cos(0.6)


def pendulum_expert(obs: np.ndarray) -> np.ndarray:
    """Torque ``[1]`` in newton-metres for a Pendulum-v1 observation ``[cos, sin, theta_dot]``."""
    cos_theta, sin_theta, theta_dot = (float(v) for v in obs)
    theta = math.atan2(sin_theta, cos_theta)
    if cos_theta > _CAPTURE_COS:
        torque = -(10.0 * theta + 2.5 * theta_dot)
    else:
        energy = 0.5 * theta_dot**2 + _GRAVITY_TERM * (cos_theta - 1.0)
        torque = -2.0 * energy * theta_dot if abs(theta_dot) > 1e-3 else MAX_TORQUE
    return np.array([min(max(torque, -MAX_TORQUE), MAX_TORQUE)], np.float32)


def record_demonstrations(
    env: gym.Env, expert: Callable[[np.ndarray], np.ndarray], episodes: int, seed: int
) -> tuple[TransitionBatch, list[float]]:
    """Roll out ``expert`` (env actions) for ``episodes``; actions are stored normalized to [-1, 1]."""
    space = env.action_space
    if not isinstance(space, gym.spaces.Box):
        raise ValueError(f"demonstrations need a continuous (Box) action space, got {space}")
    low, high = space.low.astype(np.float64), space.high.astype(np.float64)
    rows: dict[str, list[np.ndarray]] = {name: [] for name in TransitionBatch.__dataclass_fields__}
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done:
            action = np.clip(expert(obs), low, high)
            next_obs, reward, terminated, truncated, _ = env.step(action.astype(space.dtype))
            rows["obs"].append(np.asarray(obs, np.float32))
            rows["action"].append((2.0 * (action - low) / (high - low) - 1.0).astype(np.float32))
            rows["reward"].append(np.float32(reward))
            rows["next_obs"].append(np.asarray(next_obs, np.float32))
            rows["terminated"].append(np.float32(terminated))
            rows["truncated"].append(np.float32(truncated))
            total += float(reward)
            done = terminated or truncated
            obs = next_obs
        returns.append(total)
    return TransitionBatch(**{name: np.stack(values) for name, values in rows.items()}), returns


def write_pendulum_demonstrations(path: Path, episodes: int = 5, seed: int = 10_000) -> list[float]:
    """Record ``episodes`` expert episodes of Pendulum-v1 into ``path`` (npz); returns their returns."""
    env = gym.make("Pendulum-v1")
    try:
        batch, returns = record_demonstrations(env, pendulum_expert, episodes, seed)
    finally:
        env.close()
    save_demonstrations(Path(path), batch)
    return returns
