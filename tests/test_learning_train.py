"""End-to-end in-process training on a tiny task, the gym helpers and export_run."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from rl_control.learning import OnnxPolicy
from rl_control.learning.experts import (
    pendulum_expert,
    record_demonstrations,
    write_arm_demonstrations,
    write_pendulum_demonstrations,
)
from rl_control.learning.gym_train import (
    ActionScaler,
    evaluate_batched,
    evaluate_policy,
    export_run,
    train_gym,
)


class PointMass(gym.Env):
    """1-D point to be driven to the origin: x' = x + 0.2 * a * 2, reward -|x|, 20-step episodes."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.x = float(self.np_random.choice([-1.0, 1.0]) * self.np_random.uniform(0.5, 1.0))
        self.t = 0
        return np.array([self.x], np.float32), {}

    def step(self, action):
        self.x = float(np.clip(self.x + 0.2 * float(action[0]), -2.0, 2.0))
        self.t += 1
        return np.array([self.x], np.float32), -abs(self.x), False, self.t >= 20, {}


@pytest.mark.slow  # about 8 s on an idle 2-core machine, up to ~40 s when the machine is shared
def test_short_training_run_measurably_improves_return(tmp_path: Path) -> None:
    env = PointMass()
    zero = evaluate_policy(env, lambda obs: np.zeros(1, np.float32), episodes=10, seed=5)
    summary = train_gym(
        "PointMass",
        "sac",
        steps=600,
        run_dir=tmp_path / "run",
        seed=0,
        eval_every=300,
        env_factory=PointMass,
        overrides={"hidden_sizes": [64, 64], "batch_size": 64, "utd_ratio": 2, "learning_starts": 50},
        eval_episodes=10,
        progress=False,
        tensorboard=False,
    )
    assert summary["env_steps"] == 600 and summary["num_updates"] == 2 * 551
    final = summary["final_eval_return"]
    # Doing nothing scores about -15; driving straight to the origin about -1.2 (seeds 0-2 reach -1.3..-1.8).
    assert np.mean(zero) < -10.0
    assert final > -4.0, summary["evaluations"]
    policy = OnnxPolicy.from_file(summary["onnx_path"])
    scaler = ActionScaler(env.action_space)
    onnx_returns = evaluate_policy(env, lambda obs: scaler.to_env(policy(obs)), episodes=10, seed=1_000_000)
    assert np.mean(onnx_returns) == pytest.approx(final, abs=1e-3)
    exported = export_run(tmp_path / "run", tmp_path / "again.onnx")
    assert OnnxPolicy.from_file(exported).version > policy.version


def test_pendulum_expert_demonstrations(tmp_path: Path) -> None:
    returns = write_pendulum_demonstrations(tmp_path / "demos.npz", episodes=3, seed=0)
    assert len(returns) == 3 and np.mean(returns) > -200.0
    env = gym.make("Pendulum-v1")
    batch, _ = record_demonstrations(env, pendulum_expert, episodes=1, seed=0)
    assert len(batch) == 200 and batch.truncated[-1] == 1.0 and np.abs(batch.action).max() <= 1.0
    random_returns = evaluate_policy(env, lambda obs: env.action_space.sample(), episodes=3, seed=0)
    assert np.mean(returns) > np.mean(random_returns) + 500


def test_arm_expert_demonstrations_under_randomization(tmp_path: Path) -> None:
    from rl_control.envs import RandomizationConfig
    from rl_control.transitions import TransitionBatch

    returns = write_arm_demonstrations(
        tmp_path / "demos.npz", episodes=3, seed=0, randomization=RandomizationConfig(enabled=True)
    )
    batch = TransitionBatch.from_npz(tmp_path / "demos.npz")
    assert len(batch) == 300 and batch.obs.shape == (300, 21) and np.abs(batch.action).max() <= 1.0
    assert batch.truncated.sum() == 3 and np.mean(returns) > 40.0  # holding still scores about 1


def test_action_scaler_and_space_checks() -> None:
    scaler = ActionScaler(gym.spaces.Box(np.array([-2.0, 0.0], np.float32), np.array([2.0, 1.0], np.float32)))
    np.testing.assert_allclose(scaler.to_env(np.array([-1.0, 1.0])), [-2.0, 1.0])
    np.testing.assert_allclose(scaler.to_env(np.array([0.0, 5.0])), [0.0, 1.0])
    with pytest.raises(ValueError, match="continuous"):
        ActionScaler(gym.spaces.Discrete(3))
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        export_run(Path("/nonexistent/run"))


def test_batched_evaluation_equals_sequential_evaluation() -> None:
    def policy(obs: np.ndarray) -> np.ndarray:
        return np.clip(-1.5 * obs, -2.0, 2.0)

    sequential = evaluate_policy(PointMass(), policy, episodes=4, seed=3)
    batched = evaluate_batched([PointMass() for _ in range(4)], policy, seed=3)
    np.testing.assert_allclose(batched, sequential)
    assert len(set(np.round(sequential, 6))) > 1  # different seeds, different episodes
