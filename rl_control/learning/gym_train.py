"""In-process training on any continuous-action Gymnasium environment (``rl-control train --gym-env``)."""

from __future__ import annotations

import collections
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from rl_control.learning.checkpoint import RunDirectory
from rl_control.learning.config import AgentConfig, preset_config
from rl_control.learning.learner import Learner
from rl_control.results import (
    LEARNING_CURVE_FILE,
    TAG_EPISODE_RETURN,
    TAG_EVAL_RETURN,
    TAG_TRAIN_PREFIX,
    TENSORBOARD_DIR,
    plot_learning_curve,
)
from rl_control.transitions import EpisodeTracker, TransitionBatch

log = logging.getLogger(__name__)

EnvFactory = Callable[[], gym.Env]
POLICY_FILE = "policy.onnx"
STOCHASTIC_POLICY_FILE = "policy_stochastic.onnx"
EVAL_SEED_OFFSET = 1_000_000  # evaluation episodes use seeds seed + 1e6 + i, apart from training resets
LOG_EVERY_S = 10.0  # period of the plain progress lines when the console is not a terminal
ETA_WINDOW_S = 60.0  # the ETA uses the step rate over this much recent wall time


class EtaEstimator:
    """Time left from the recent step rate, once learning has started.

    Steps before ``learning_starts`` take random actions and no gradient updates, so they run many times
    faster than the rest: their rate says nothing about the time left and is not used. The rate is taken
    over the last :data:`ETA_WINDOW_S` seconds, which spans the periodic evaluations.
    """

    def __init__(self, total_steps: int, learning_starts: int, clock: Callable[[], float] = time.monotonic):
        self.total_steps = total_steps
        self.learning_starts = learning_starts
        self._clock = clock
        self._samples: collections.deque[tuple[float, int]] = collections.deque()

    def update(self, step: int) -> None:
        """Record that ``step`` env steps are done now."""
        if step <= self.learning_starts:
            return
        now = self._clock()
        self._samples.append((now, step))
        while len(self._samples) > 2 and now - self._samples[1][0] >= ETA_WINDOW_S:
            self._samples.popleft()

    def seconds_left(self) -> float | None:
        """Estimated seconds to ``total_steps``, or None while there is no learning-phase rate yet."""
        if len(self._samples) < 2:
            return None
        (t0, s0), (t1, s1) = self._samples[0], self._samples[-1]
        if t1 <= t0 or s1 <= s0:
            return None
        return (self.total_steps - s1) * (t1 - t0) / (s1 - s0)


def format_duration(seconds: float | None) -> str:
    """``1:02:03`` / ``4:05``, or ``-`` when unknown."""
    if seconds is None:
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class StopRequest:
    """Set by SIGINT/SIGTERM while training; the loop stops at the next step boundary."""

    def __init__(self) -> None:
        self.signal: int | None = None

    @contextmanager
    def installed(self) -> Iterator[StopRequest]:
        """Catch SIGINT and SIGTERM (main thread only) for the duration; a second signal acts as usual."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

        def request(signum: int, _frame: Any) -> None:
            self.signal = signum
            for sig, handler in previous.items():  # a second Ctrl-C interrupts at once
                signal.signal(sig, handler)

        for sig in previous:
            signal.signal(sig, request)
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


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
    scaler = ActionScaler(act_space)
    return obs_space.shape[0], scaler.low.shape[0]


def make_env_factory(env_id: str, **kwargs: Any) -> EnvFactory:
    """Factory for a registered id (``rl_control/...`` ids: registered by ``rl_control.envs.gym_env``)."""
    if env_id.startswith("rl_control/"):
        import rl_control.envs.gym_env  # noqa: F401 - registers the ids

    return lambda: gym.make(env_id, **kwargs)


def evaluate_policy(
    env: gym.Env,
    policy_fn: Callable[[np.ndarray], np.ndarray],
    episodes: int,
    seed: int,
    goal_seed: int | None = None,
) -> list[float]:
    """Undiscounted return of ``episodes`` episodes; ``policy_fn`` maps an observation to an env action.

    ``goal_seed``: draw the episodes' goals as an actor node with this ``seed`` draws them on a robot (an
    rl_control env's ``goal_rng`` reset option), so each return pairs with that deployment's episode."""
    goal_options = None if goal_seed is None else {"goal_rng": np.random.default_rng(goal_seed)}
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode, options=goal_options)
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
    ``checkpoint_every`` steps and at the end, logs to TensorBoard in ``run_dir/tensorboard/train`` (the
    tags of :mod:`rl_control.results`, x-axis env steps), exports ``policy.onnx`` (deterministic) and
    ``policy_stochastic.onnx`` and draws ``learning_curve.png``. Returns a summary dict.

    SIGINT/SIGTERM stop training at the next step: the checkpoint is written (and the policy exported), the
    summary has ``interrupted`` set to the signal number, and calling again with the same ``run_dir``
    resumes. ``steps`` at or below the agent's ``learning_starts`` is refused (the policy would be
    untrained). With ``progress`` a live bar is shown on a terminal, and plain log lines every
    :data:`LOG_EVERY_S` seconds otherwise.
    """
    if steps < 1 or eval_every < 1 or eval_episodes < 1:
        raise ValueError("steps, eval_every and eval_episodes must be positive")
    agent_config = config or preset_config(preset, **(overrides or {}))
    if steps <= agent_config.learning_starts:
        raise ValueError(
            f"--steps {steps} ends before learning starts (learning_starts {agent_config.learning_starts}): "
            "the policy would be untrained; give more steps or a smaller learning_starts"
        )
    factory = env_factory or make_env_factory(env_id)
    env = factory()
    eval_envs = [factory() for _ in range(eval_episodes)]
    try:
        obs_dim, act_dim = space_dims(env)
        scaler = ActionScaler(env.action_space)
        metadata = {"preset": preset, "env_id": env_id, **_contract_metadata(env)}
        learner = Learner.create_or_resume(
            Path(run_dir), obs_dim, act_dim, agent_config, metadata=metadata, seed=seed, resume=resume
        )
        if demo_file is not None and learner.num_demonstrations == 0:
            learner.add_demonstrations(Path(demo_file))
        writer = _summary_writer(Path(run_dir)) if tensorboard else None
        loop = _TrainingLoop(learner, env, eval_envs, scaler, seed, writer)
        with StopRequest().installed() as stop:
            summary = loop.run(steps, eval_every, checkpoint_every, stop_at_return, progress, console, stop)
        summary["interrupted"] = stop.signal
        curve = plot_learning_curve(
            Path(run_dir) / LEARNING_CURVE_FILE,
            loop.episode_points,
            loop.evaluations,
            title=f"{env_id} ({preset})",
            success_threshold=stop_at_return,
        )
        summary["learning_curve"] = str(curve)
        if stop.signal is not None:
            log.warning(
                "interrupted (signal %d) at env step %d of %d: saving the checkpoint; run the same command "
                "again to resume",
                stop.signal,
                learner.env_steps,
                steps,
            )
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


def _contract_metadata(env: gym.Env) -> dict[str, str]:
    """The policy contract of an ``rl_control/*`` env (task, joints, randomization); ``{}`` for others."""
    from rl_control.envs.gym_env import RobotTaskEnv

    unwrapped = env.unwrapped
    return unwrapped.policy_contract().to_metadata() if isinstance(unwrapped, RobotTaskEnv) else {}


def _summary_writer(run_dir: Path):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(run_dir / TENSORBOARD_DIR / "train"))


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
        self.episode_points: list[tuple[int, float]] = []  # (env steps at the episode's end, return)

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
            self.writer.add_scalar(TAG_EVAL_RETURN, mean, learner.env_steps)
        return mean

    def run(
        self,
        steps: int,
        eval_every: int,
        checkpoint_every: int,
        stop_at_return: float | None,
        show_progress: bool,
        console: Console | None,
        stop: StopRequest,
    ) -> dict[str, Any]:
        learner = self.learner
        start_time = time.perf_counter()
        threshold_step: int | None = None
        episodes = EpisodeTracker()
        episode_returns: list[float] = []
        obs, _ = self.env.reset(seed=self.seed)
        console = console or Console(stderr=True)
        live = show_progress and console.is_terminal
        plain_lines = show_progress and not live
        progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TextColumn("ETA {task.fields[eta]}"),
            console=console,
            disable=not live,
        )
        eta = EtaEstimator(steps, learner.config.learning_starts)
        updates_at_start, window_start = learner.num_updates, time.perf_counter()
        next_line = time.monotonic() + LOG_EVERY_S
        with progress:
            task = progress.add_task("train", total=steps, completed=learner.env_steps, info="", eta="-")
            while learner.env_steps < steps and stop.signal is None:
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
                obs = next_obs
                if episodes.add(float(reward), terminated or truncated):
                    episode_returns.append(episodes.last_return)
                    self.episode_points.append((learner.env_steps, episodes.last_return))
                    if self.writer is not None:
                        self.writer.add_scalar(TAG_EPISODE_RETURN, episodes.last_return, learner.env_steps)
                    obs, _ = self.env.reset()
                step = learner.env_steps
                if self.writer is not None and metrics and step % 100 == 0:
                    for name, value in metrics.items():
                        self.writer.add_scalar(f"{TAG_TRAIN_PREFIX}{name}", value, step)
                if step % eval_every == 0:
                    mean = self.evaluate()
                    if stop_at_return is not None and mean >= stop_at_return and threshold_step is None:
                        threshold_step = step
                        break
                if step % checkpoint_every == 0:
                    learner.save_checkpoint()
                if step % 50 == 0 or step == steps:
                    eta.update(step)
                    elapsed = max(time.perf_counter() - window_start, 1e-9)
                    rate = (learner.num_updates - updates_at_start) / elapsed
                    last = f"{episode_returns[-1]:.1f}" if episode_returns else "-"
                    evaluated = f"{self.evaluations[-1][1]:.1f}" if self.evaluations else "-"
                    info = f"return {last}  eval {evaluated}  {rate:.0f} updates/s"
                    left = format_duration(eta.seconds_left())
                    progress.update(task, completed=step, info=info, eta=left)
                    if plain_lines and (time.monotonic() >= next_line or step == steps):
                        next_line = time.monotonic() + LOG_EVERY_S
                        log.info(
                            "step %d/%d (%.0f%%)  %s  ETA %s", step, steps, 100 * step / steps, info, left
                        )
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
