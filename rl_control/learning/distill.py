"""Distill a scripted expert into an ONNX policy under domain randomization (``rl-control distill``).

The expert drives the simulated robot with every domain-randomization range of
:class:`~rl_control.envs.randomization.RandomizationConfig` enabled. Following DART (Laskey et al. 2017),
the executed action is the expert's plus Gaussian noise (a different level per episode) while the label is
the expert's clean action, so the data also show how to return to the gait after a disturbance. An MLP
actor (the learner's :class:`~rl_control.learning.networks.Actor` with observation normalization) regresses
the labels; the result is exported, verified and evaluated like a learner's policy: deterministic episodes
on the nominal model and under randomization.

Used for ``quadruped_walk``, where reinforcement learning from scratch does not fit the time a 2-core
machine gives (see docs/howto_quadruped.md for the figures).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rl_control.envs.gym_env import RobotTaskEnv
from rl_control.envs.randomization import RandomizationConfig
from rl_control.learning.checkpoint import atomic_write
from rl_control.learning.experts import TrotExpert
from rl_control.learning.gym_train import evaluate_policy
from rl_control.learning.networks import Actor, Policy, RunningNormalizer
from rl_control.learning.onnx_policy import build_actor_graph, verify_export
from rl_control.policy.runtime import FORMAT, OBS_INPUT, OnnxPolicy

log = logging.getLogger(__name__)

Expert = Callable[[np.ndarray], np.ndarray]
#: task -> factory of a fresh expert (one per episode)
EXPERTS: dict[str, Callable[[], Any]] = {"quadruped_walk": TrotExpert}
POLICY_FILE = "policy.onnx"
SUMMARY_FILE = "summary.json"
EVAL_SEED = 1_000_000  # evaluation episodes never reuse a training seed


@dataclass
class DistillConfig:
    """What ``rl-control distill`` does; the defaults are the recipe of the shipped quadruped policy."""

    task: str = "quadruped_walk"
    episodes: int = 200  # expert episodes of ``episode_steps`` steps, randomized
    episode_steps: int = 500  # shorter than the task's 1000: more episodes, more commands and dynamics
    action_noise: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3)  # DART noise std, cycled over the episodes
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 256])
    epochs: int = 30
    batch_size: int = 512
    learning_rate: float = 1e-3
    eval_episodes: int = 10
    seed: int = 0


def collect(config: DistillConfig) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Expert rollouts under the default randomization: observations, clean expert actions, returns."""
    if config.task not in EXPERTS:
        raise ValueError(f"no scripted expert for task {config.task!r}; available: {sorted(EXPERTS)}")
    env = RobotTaskEnv(
        config.task, randomization=RandomizationConfig(enabled=True), episode_steps=config.episode_steps
    )
    rng = np.random.default_rng(config.seed)
    observations: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    returns = []
    for episode in range(config.episodes):
        expert = EXPERTS[config.task]()
        noise = config.action_noise[episode % len(config.action_noise)]
        obs, _ = env.reset(seed=config.seed * 100_000 + episode)
        total, done = 0.0, False
        while not done:
            action = expert(obs)
            observations.append(obs)
            labels.append(action)
            executed = np.clip(action + noise * rng.standard_normal(action.shape), -1.0, 1.0)
            obs, reward, terminated, truncated, _ = env.step(executed.astype(np.float32))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return np.stack(observations), np.stack(labels), returns


def fit(observations: np.ndarray, labels: np.ndarray, config: DistillConfig) -> tuple[Policy, list[float]]:
    """Regress the labels with a normalized MLP actor (MSE on the tanh-squashed action); per-epoch losses."""
    torch.manual_seed(config.seed)
    obs = torch.from_numpy(observations.astype(np.float32))
    target = torch.from_numpy(labels.astype(np.float32))
    actor = Actor(obs.shape[1], target.shape[1], list(config.hidden_sizes), stochastic=False)
    normalizer = RunningNormalizer(obs.shape[1], True)
    normalizer.update(obs)
    policy = Policy(actor, normalizer, exploration_noise=0.0)
    optimizer = torch.optim.Adam(actor.parameters(), lr=config.learning_rate)
    losses = []
    for _ in range(config.epochs):
        order = torch.randperm(obs.shape[0])
        total = 0.0
        for start in range(0, obs.shape[0], config.batch_size):
            index = order[start : start + config.batch_size]
            loss = (policy(obs[index]) - target[index]).square().mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * index.numel()
        losses.append(total / obs.shape[0])
    return policy, losses


def export(policy: Policy, env: RobotTaskEnv, path: Path, extra: dict[str, str]) -> bytes:
    """Write the deterministic ONNX policy with the task's contract metadata (verified against torch)."""
    metadata = {
        **env.policy_contract().to_metadata(),
        **extra,
        "format": FORMAT,
        "obs_dim": str(env.task.observation_dim),
        "act_dim": str(env.task.action_dim),
        "joint_names": json.dumps(list(env.task.joint_names)),
        "policy_version": "1",
        "stochastic": "false",
        "input_names": json.dumps([OBS_INPUT]),
    }
    kwargs: dict[str, Any] = {"stochastic": False, "exploration_noise": 0.0}
    model = build_actor_graph(policy.actor, policy.normalizer, metadata=metadata, **kwargs)
    data = model.SerializeToString()
    verify_export(data, policy.actor, policy.normalizer, **kwargs)
    atomic_write(path, data)
    return data


def distill(config: DistillConfig, run_dir: Path) -> dict[str, Any]:
    """Collect, fit, export ``run_dir/policy.onnx`` and evaluate it; the summary is also written as JSON."""
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    observations, labels, expert_returns = collect(config)
    collected = time.monotonic()
    log.info("%d expert steps in %.0f s; fitting", len(observations), collected - start)
    policy, losses = fit(observations, labels, config)
    fitted = time.monotonic()
    nominal_env = RobotTaskEnv(config.task)
    recipe = {
        "algorithm": "dart_distillation",
        "preset": "distill",
        "expert": type(EXPERTS[config.task]()).__name__,
        "distill_config": json.dumps({**config.__dict__, "action_noise": list(config.action_noise)}),
        "env_steps": str(len(observations)),
    }
    data = export(policy, nominal_env, run_dir / POLICY_FILE, recipe)
    onnx_policy = OnnxPolicy.from_bytes(data)
    seed = EVAL_SEED + config.seed
    nominal = evaluate_policy(nominal_env, onnx_policy, config.eval_episodes, seed)
    randomized_env = RobotTaskEnv(config.task, randomization=RandomizationConfig(enabled=True))
    randomized = evaluate_policy(randomized_env, onnx_policy, config.eval_episodes, seed)
    summary = {
        "task": config.task,
        "policy": str(run_dir / POLICY_FILE),
        "env_steps": len(observations),
        "collect_s": round(collected - start, 1),
        "fit_s": round(fitted - collected, 1),
        "wall_s": round(time.monotonic() - start, 1),
        "final_loss": losses[-1],
        "losses": losses,
        "expert_return_randomized_500_steps": float(np.mean(expert_returns)),
        "nominal_returns": nominal,
        "nominal_return": float(np.mean(nominal)),
        "randomized_returns": randomized,
        "randomized_return": float(np.mean(randomized)),
        "success_threshold": nominal_env.task.success_threshold,
    }
    (run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary
