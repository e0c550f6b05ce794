"""In-process training on any continuous-action Gymnasium environment (``rl-control train --gym-env``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from rl_control.learning.checkpoint import RunDirectory
from rl_control.learning.config import AgentConfig, preset_config
from rl_control.learning.learner import Learner
from rl_control.learning.replay import TransitionBatch

log = logging.getLogger(__name__)

EnvFactory = Callable[[], gym.Env]
POLICY_FILE = "policy.onnx"
STOCHASTIC_POLICY_FILE = "policy_stochastic.onnx"
EVAL_SEED_OFFSET = 1_000_000  # evaluation episodes use seeds seed + 1e6 + i, apart from training resets


class ActionScaler:
    """Maps normalized actions in [-1, 1] to a Box action space and back."""

    def __init__(self, space: gym.Space) -> None:
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise ValueError(f"need a 1-D continuous (Box) action space, got {space}")
        if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
            raise ValueError(f"action space bounds must be finite, got {space}")
        self.low = space.low.astype(np.float32)
        self.high = space.high.astype(np.float32)
        self.dtype = space.dtype

    def to_env(self, action: np.ndarray) -> np.ndarray:
        return (self.low + (np.clip(action, -1.0, 1.0) + 1.0) * 0.5 * (self.high - self.low)).astype(
            self.dtype
        )


def space_dims(env: gym.Env) -> tuple[int, int]:
    """(obs_dim, act_dim) of an environment with flat Box observation and action spaces."""
    obs_space, act_space = env.observation_space, env.action_space
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
        raise ValueError(f"need a flat Box observation space, got {obs_space}")
    ActionScaler(act_space)
    return obs_space.shape[0], act_space.shape[0]


def make_env_factory(env_id: str, **kwargs: Any) -> EnvFactory:
    """Factory for a registered id; ``rl_control/...`` ids are registered by importing ``rl_control.envs``."""
    if env_id.startswith("rl_control/"):
        import rl_control.envs  # noqa: F401 - registers the ids

    return lambda: gym.make(env_id, **kwargs)


def evaluate_policy(
    env: gym.Env, policy_fn: Callable[[np.ndarray], np.ndarray], episodes: int, seed: int
) -> list[float]:
    """Undiscounted return of ``episodes`` episodes; ``policy_fn`` maps an observation to an env action."""
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy_fn(obs))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return returns


def evaluate_batched(
    envs: list[gym.Env], batch_policy_fn: Callable[[np.ndarray], np.ndarray], seed: int
) -> list[float]:
    """One episode per environment, stepped in lockstep with one batched policy call per step.

    Environment ``i`` is reset with ``seed + i``, so the returns equal those of :func:`evaluate_policy`
    with ``episodes=len(envs)``; ``batch_policy_fn`` maps ``[k, obs_dim]`` to ``[k, act_dim]`` env actions.
    """
    observations = [env.reset(seed=seed + index)[0] for index, env in enumerate(envs)]
    returns = [0.0] * len(envs)
    alive = list(range(len(envs)))
    while alive:
        actions = batch_policy_fn(np.stack([observations[index] for index in alive]))
        still_alive = []
        for row, index in enumerate(alive):
            observations[index], reward, terminated, truncated, _ = envs[index].step(actions[row])
            returns[index] += float(reward)
            if not (terminated or truncated):
                still_alive.append(index)
        alive = still_alive
    return returns


def train_gym(
    env_id: str,
    preset: str,
    steps: int,
    run_dir: Path,
    seed: int = 0,
    eval_every: int = 1000,
    demo_file: Path | None = None,
    *,
    env_factory: EnvFactory | None = None,
    config: AgentConfig | None = None,
    overrides: dict[str, Any] | None = None,
    eval_episodes: int = 10,
    checkpoint_every: int = 10_000,
    stop_at_return: float | None = None,
    resume: bool = True,
    progress: bool = True,
    tensorboard: bool = True,
    export: bool = True,
    console: Console | None = None,
) -> dict[str, Any]:
    """Train ``preset`` (or ``config``) on ``env_id`` for ``steps`` environment steps in-process.

    Evaluates the deterministic policy every ``eval_every`` steps over ``eval_episodes`` episodes (and
    stops early once the mean reaches ``stop_at_return``, if given), checkpoints every
    ``checkpoint_every`` steps and at the end, logs to TensorBoard in ``run_dir/tb`` and exports
    ``policy.onnx`` (deterministic) and ``policy_stochastic.onnx``. Returns a summary dict.
    """
    if steps < 1 or eval_every < 1 or eval_episodes < 1:
        raise ValueError("steps, eval_every and eval_episodes must be positive")
    factory = env_factory or make_env_factory(env_id)
    env = factory()
    eval_envs = [factory() for _ in range(eval_episodes)]
    try:
        obs_dim, act_dim = space_dims(env)
        scaler = ActionScaler(env.action_space)
        agent_config = config or preset_config(preset, **(overrides or {}))
        metadata = {"preset": preset, "env_id": env_id}
        learner = Learner.create_or_resume(
            Path(run_dir), obs_dim, act_dim, agent_config, metadata=metadata, seed=seed, resume=resume
        )
        if demo_file is not None and learner.num_demonstrations == 0:
            learner.add_demonstrations(Path(demo_file))
        writer = _summary_writer(Path(run_dir)) if tensorboard else None
        loop = _TrainingLoop(learner, env, eval_envs, scaler, seed, writer)
        summary = loop.run(steps, eval_every, checkpoint_every, stop_at_return, progress, console)
        if export:
            learner.export_onnx(Path(run_dir) / POLICY_FILE, stochastic=False)
            learner.export_onnx(Path(run_dir) / STOCHASTIC_POLICY_FILE, stochastic=True)
            summary["onnx_path"] = str(Path(run_dir) / POLICY_FILE)
        learner.save_checkpoint()  # after the exports, so the stored policy_version covers them
        if writer is not None:
            writer.close()
        return summary
    finally:
        for each in (env, *eval_envs):
            each.close()


def _summary_writer(run_dir: Path):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(run_dir / "tb"))


class _TrainingLoop:
    """Environment interaction, updates, evaluation and logging for :func:`train_gym`."""

    def __init__(
        self,
        learner: Learner,
        env: gym.Env,
        eval_envs: list[gym.Env],
        scaler: ActionScaler,
        seed: int,
        writer: Any,
    ) -> None:
        self.learner = learner
        self.env = env
        self.eval_envs = eval_envs
        self.scaler = scaler
        self.seed = seed
        self.writer = writer
        self.evaluations: list[tuple[int, float]] = []

    def evaluate(self) -> float:
        learner = self.learner
        returns = evaluate_batched(
            self.eval_envs,
            lambda obs: self.scaler.to_env(learner.act(obs, deterministic=True)),
            seed=self.seed + EVAL_SEED_OFFSET,
        )
        mean = float(np.mean(returns))
        self.evaluations.append((learner.env_steps, mean))
        if self.writer is not None:
            self.writer.add_scalar("eval/mean_return", mean, learner.env_steps)
        return mean

    def run(
        self,
        steps: int,
        eval_every: int,
        checkpoint_every: int,
        stop_at_return: float | None,
        show_progress: bool,
        console: Console | None,
    ) -> dict[str, Any]:
        learner = self.learner
        start_time = time.perf_counter()
        threshold_step: int | None = None
        episode_returns: list[float] = []
        obs, _ = self.env.reset(seed=self.seed)
        episode_return = 0.0
        progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            disable=not show_progress,
        )
        updates_at_start, window_start = learner.num_updates, time.perf_counter()
        with progress:
            task = progress.add_task("train", total=steps, completed=learner.env_steps, info="")
            while learner.env_steps < steps:
                action = learner.act(obs, deterministic=False)
                next_obs, reward, terminated, truncated, _ = self.env.step(self.scaler.to_env(action))
                learner.add_transitions(
                    TransitionBatch(
                        obs=obs[None],
                        action=action[None],
                        reward=np.array([reward]),
                        next_obs=next_obs[None],
                        terminated=np.array([float(terminated)]),
                        truncated=np.array([float(truncated)]),
                    )
                )
                metrics = learner.train(1)
                episode_return += float(reward)
                obs = next_obs
                if terminated or truncated:
                    episode_returns.append(episode_return)
                    if self.writer is not None:
                        self.writer.add_scalar("train/episode_return", episode_return, learner.env_steps)
                    obs, _ = self.env.reset()
                    episode_return = 0.0
                step = learner.env_steps
                if self.writer is not None and metrics and step % 100 == 0:
                    for name, value in metrics.items():
                        self.writer.add_scalar(f"train/{name}", value, step)
                if step % eval_every == 0:
                    mean = self.evaluate()
                    if stop_at_return is not None and mean >= stop_at_return and threshold_step is None:
                        threshold_step = step
                        break
                if step % checkpoint_every == 0:
                    learner.save_checkpoint()
                if step % 50 == 0 or step == steps:
                    elapsed = max(time.perf_counter() - window_start, 1e-9)
                    rate = (learner.num_updates - updates_at_start) / elapsed
                    last = f"{episode_returns[-1]:.1f}" if episode_returns else "-"
                    evaluated = f"{self.evaluations[-1][1]:.1f}" if self.evaluations else "-"
                    info = f"return {last}  eval {evaluated}  {rate:.0f} updates/s"
                    progress.update(task, completed=step, info=info)
        return {
            "run_dir": str(learner.run.root),
            "env_steps": learner.env_steps,
            "num_updates": learner.num_updates,
            "wall_s": time.perf_counter() - start_time,
            "episode_returns": episode_returns,
            "evaluations": self.evaluations,
            "final_eval_return": self.evaluations[-1][1] if self.evaluations else None,
            "threshold_step": threshold_step,
        }


def export_run(run_dir: Path, out: Path | None = None, *, stochastic: bool = False) -> Path:
    """Write the ONNX policy of the newest good checkpoint in ``run_dir`` (``rl-control export``).

    ``out`` defaults to ``run_dir/policy.onnx`` (``policy_stochastic.onnx`` when ``stochastic``).
    """
    run_dir = Path(run_dir)
    info = RunDirectory(run_dir).read_run_info()
    if info is None:
        raise FileNotFoundError(f"{run_dir}: not a run directory (no run.json)")
    config = AgentConfig.from_dict(info["config"])
    learner = Learner.create_or_resume(run_dir, info["obs_dim"], info["act_dim"], config, resume=True)
    if learner.num_updates == 0 and not RunDirectory(run_dir).manifests():
        raise FileNotFoundError(f"{run_dir}: holds no checkpoint to export")
    target = (
        Path(out) if out is not None else run_dir / (STOCHASTIC_POLICY_FILE if stochastic else POLICY_FILE)
    )
    learner.export_onnx(target, stochastic=stochastic)
    log.info("exported policy version %d of %s to %s", learner.policy_version, run_dir, target)
    return target
