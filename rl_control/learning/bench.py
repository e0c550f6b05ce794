"""Benchmarks for ``rl-control bench learner`` and ``rl-control bench sample-efficiency``.

Both measure the reference (Stable-Baselines3 SAC, a benchmark-only optional dependency imported
lazily here) side by side in the same process and report ratios. Tables go to stderr.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from rl_control.learning.config import PRESET_NAMES, preset_config
from rl_control.learning.learner import Learner
from rl_control.learning.replay import TransitionBatch

log = logging.getLogger(__name__)

BENCH_OBS_DIM = 17  # HalfCheetah-sized problem
BENCH_ACT_DIM = 6
BENCH_BATCH = 256
BENCH_HIDDEN = [256, 256]
PENDULUM_THRESHOLD = -200.0


@dataclass(frozen=True)
class SampleEfficiencyTask:
    """A Gymnasium task of ``bench sample-efficiency``: its threshold, evaluation period and step caps."""

    env_id: str
    threshold: float
    eval_every: int
    sb3_cap: int
    our_cap: int
    quick_sb3_cap: int
    quick_our_cap: int


#: The tasks the benchmark knows: the pendulum of the mission and the next ones a user would try that
#: learn within minutes on 2 CPU cores (thresholds: Gymnasium's ``reward_threshold`` where it has one).
SAMPLE_EFFICIENCY_TASKS: dict[str, SampleEfficiencyTask] = {
    task.env_id: task
    for task in (
        SampleEfficiencyTask("Pendulum-v1", PENDULUM_THRESHOLD, 200, 20_000, 6_000, 8_000, 3_000),
        SampleEfficiencyTask("InvertedPendulum-v5", 950.0, 500, 30_000, 10_000, 15_000, 5_000),
    )
}


def _import_sb3():
    try:
        import stable_baselines3
        from stable_baselines3.common.logger import configure
    except ImportError as error:  # pragma: no cover - depends on the optional extra
        raise RuntimeError(
            "this benchmark compares against Stable-Baselines3: pip install 'rl_control[bench]' "
            "(or pip install stable-baselines3)"
        ) from error
    return stable_baselines3, configure


def measure_matmul_gflops(seconds: float = 1.0, size: int = 1024) -> float:
    """Sustained fp32 matrix-multiply throughput of this machine (GFLOP/s) with torch's thread settings."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        reps += 1
    return 2.0 * size**3 * reps / (time.perf_counter() - start) / 1e9


def _random_transitions(rows: int, seed: int) -> TransitionBatch:
    rng = np.random.default_rng(seed)
    return TransitionBatch(
        obs=rng.normal(size=(rows, BENCH_OBS_DIM)).astype(np.float32),
        action=rng.uniform(-1, 1, (rows, BENCH_ACT_DIM)).astype(np.float32),
        reward=rng.normal(size=rows).astype(np.float32),
        next_obs=rng.normal(size=(rows, BENCH_OBS_DIM)).astype(np.float32),
        terminated=np.zeros(rows, np.float32),
        truncated=(np.arange(rows) % 1000 == 999).astype(np.float32),
    )


class _OurSide:
    """rl_control learner on random data: SAC with ``num_critics`` doing SB3-equivalent gradient steps
    (critic + actor + temperature per step), or ``preset`` as configured when ``num_critics`` is None."""

    def __init__(self, num_critics: int | None, run_dir: Path, preset: str = "sac", **overrides: Any) -> None:
        settings: dict[str, Any] = {}
        if num_critics is not None:  # SAC with N critics, one actor step per critic step (like SB3)
            settings = {
                "num_critics": num_critics,
                "num_target_critics": 2,
                "utd_ratio": 1,
                "actor_delay": 1,
                "hidden_sizes": BENCH_HIDDEN,
            }
        config = preset_config(
            preset,
            **{
                **settings,
                "batch_size": BENCH_BATCH,
                "learning_starts": 0,
                "buffer_capacity": 20_000,
                "device": "cpu",
                **overrides,
            },
        )
        self.learner = Learner(run_dir, BENCH_OBS_DIM, BENCH_ACT_DIM, config, {}, seed=0)
        self.learner.add_transitions(_random_transitions(10_000, 0))

    def run(self, env_steps: int) -> None:
        self.learner.train(env_steps)

    def flops_per_step(self) -> float:
        """Floating point operations of one step, counted by torch's FLOP counter (matmuls)."""
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter:
            self.learner.train(1)
        return counter.get_total_flops() / self.learner.config.utd_ratio


class _SB3Side:
    """Stable-Baselines3 SAC with the same critics, network size and batch."""

    def __init__(self, num_critics: int) -> None:
        import gymnasium as gym

        sb3, configure = _import_sb3()

        class _Spaces(gym.Env):
            observation_space = gym.spaces.Box(-np.inf, np.inf, (BENCH_OBS_DIM,), np.float32)
            action_space = gym.spaces.Box(-1.0, 1.0, (BENCH_ACT_DIM,), np.float32)

            def reset(self, *, seed=None, options=None):
                return np.zeros(BENCH_OBS_DIM, np.float32), {}

            def step(self, action):
                return np.zeros(BENCH_OBS_DIM, np.float32), 0.0, False, False, {}

        self.model = sb3.SAC(
            "MlpPolicy",
            _Spaces(),
            policy_kwargs={"net_arch": BENCH_HIDDEN, "n_critics": num_critics},
            batch_size=BENCH_BATCH,
            buffer_size=20_000,
            device="cpu",
            seed=0,
        )
        self.model.set_logger(configure(None, []))
        data = _random_transitions(10_000, 0)
        buffer = self.model.replay_buffer
        buffer.observations[:10_000, 0] = data.obs
        buffer.next_observations[:10_000, 0] = data.next_obs
        buffer.actions[:10_000, 0] = data.action
        buffer.rewards[:10_000, 0] = data.reward
        buffer.dones[:10_000, 0] = data.terminated
        buffer.pos = 10_000

    def run(self, steps: int) -> None:
        self.model.train(gradient_steps=steps, batch_size=BENCH_BATCH)


def _rate(run, steps: int) -> float:
    start = time.perf_counter()
    run(steps)
    return steps / (time.perf_counter() - start)


def bench_learner(
    json_output: bool = False, quick: bool = False, console: Console | None = None, threads: int = 0
) -> dict[str, Any]:
    """Gradient steps per second vs SB3 SAC at N=2 and N=10 critics, matmul fraction, and every preset's
    updates/s and ``realtime_capacity_hz`` (``result["presets"]``, SB3 SAC's N=2 rate as the reference).

    One step = one critic-ensemble update + one actor update + one temperature update (batch 256,
    256x256 MLPs, obs 17, act 6). Measurements alternate between both sides over several rounds and
    report the median rate of each. The table goes to stderr (or nowhere when ``json_output``).
    ``threads`` > 0 sets torch's thread count for both sides (0 keeps torch's default).
    """
    if threads > 0:
        torch.set_num_threads(threads)
    console = console or Console(stderr=True, quiet=json_output)
    rounds, steps_n10, steps_n2 = (2, 10, 30) if quick else (5, 30, 100)
    # The machine's throughput is the best of short measurements taken between the rounds, so a burst of
    # load from other processes during one measurement does not inflate the fraction.
    matmul_samples = [measure_matmul_gflops(0.3)]
    result: dict[str, Any] = {"threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as scratch:
        for num_critics, steps in ((10, steps_n10), (2, steps_n2)):
            ours = _OurSide(num_critics, Path(scratch) / f"n{num_critics}")
            reference = _SB3Side(num_critics)
            ours.run(3)
            reference.run(3)
            our_rates, sb3_rates = [], []
            for _ in range(rounds):
                our_rates.append(_rate(ours.run, steps))
                sb3_rates.append(_rate(reference.run, steps))
                matmul_samples.append(measure_matmul_gflops(0.3))
            flops = ours.flops_per_step()
            rate, sb3_rate = statistics.median(our_rates), statistics.median(sb3_rates)
            result[f"steps_per_s_n{num_critics}"] = rate
            result[f"sb3_steps_per_s_n{num_critics}"] = sb3_rate
            result[f"ratio_vs_sb3_n{num_critics}"] = rate / sb3_rate
            result[f"gflop_per_step_n{num_critics}"] = flops / 1e9
            result[f"_achieved_gflops_n{num_critics}"] = flops * rate / 1e9
        result["presets"] = _preset_rates(Path(scratch), quick, result["sb3_steps_per_s_n2"])
    matmul_gflops = max(matmul_samples)
    result["matmul_gflops"] = matmul_gflops
    for num_critics in (10, 2):
        achieved = result.pop(f"_achieved_gflops_n{num_critics}")
        result[f"matmul_fraction_n{num_critics}"] = achieved / matmul_gflops
    table = Table(title="learner gradient steps/s (critic + actor + temperature, batch 256, 256x256)")
    for column in ("critics", "rl_control", "SB3 SAC", "ratio", "target", "GFLOP/step", "matmul fraction"):
        table.add_column(column, justify="right")
    for num_critics, target in ((10, 4.0), (2, 1.5)):
        table.add_row(
            str(num_critics),
            f"{result[f'steps_per_s_n{num_critics}']:.1f}",
            f"{result[f'sb3_steps_per_s_n{num_critics}']:.1f}",
            f"{result[f'ratio_vs_sb3_n{num_critics}']:.2f}x",
            f">= {target}x",
            f"{result[f'gflop_per_step_n{num_critics}']:.2f}",
            f"{result[f'matmul_fraction_n{num_critics}']:.0%}"
            + (" (target >= 50%)" if num_critics == 10 else ""),
        )
    console.print(table)
    console.print(f"fp32 matmul throughput: {matmul_gflops:.0f} GFLOP/s on {result['threads']} threads")
    console.print(_preset_table(result["presets"], result["sb3_steps_per_s_n2"]))
    return result


def _preset_variants(quick: bool) -> dict[str, tuple[str, dict[str, Any]]]:
    """Every preset as configured (its own network sizes; batch 256, obs 17, act 6), plus CrossQ
    precisions and (unless ``quick``: compiling takes minutes) SAC and CrossQ with ``compile``."""
    variants: dict[str, tuple[str, dict[str, Any]]] = {name: (name, {}) for name in PRESET_NAMES}
    variants["crossq (fp32)"] = ("crossq", {"precision": "fp32"})
    variants["crossq (bf16)"] = ("crossq", {"precision": "bf16"})
    if not quick:
        variants["sac (compiled)"] = ("sac", {"compile": True})
        variants["crossq (compiled)"] = ("crossq", {"compile": True})
    return variants


def _preset_rates(scratch: Path, quick: bool, sb3_rate: float) -> dict[str, dict[str, Any]]:
    """Updates/s and real-time capacity (env steps/s learned from at the preset's own UTD) per preset,
    and the seconds of the first call (``first_call_s``: allocations, optimizer state, compilation)."""
    rates: dict[str, dict[str, Any]] = {}
    for label, (preset, overrides) in _preset_variants(quick).items():
        side = _OurSide(None, scratch / label.replace(" ", "_").strip("()"), preset=preset, **overrides)
        config = side.learner.config
        env_steps = max(1, round((10 if quick else 30) / config.utd_ratio))
        started = time.perf_counter()
        side.run(env_steps)  # warm-up (allocations, first optimizer state, compilation)
        first_call_s = time.perf_counter() - started
        capacity = statistics.median(_rate(side.run, env_steps) for _ in range(2 if quick else 3))
        rates[label] = {
            "utd_ratio": config.utd_ratio,
            "updates_per_s": capacity * config.utd_ratio,
            "realtime_capacity_hz": capacity,
            "capacity_vs_sb3_sac": capacity / sb3_rate,
            "precision": str(side.learner.agent.compute_dtype).removeprefix("torch."),
            "first_call_s": first_call_s,
        }
    return rates


def _preset_table(rates: dict[str, dict[str, Any]], sb3_rate: float) -> Table:
    table = Table(title="presets: critic updates/s and real-time capacity (env steps/s at their own UTD)")
    columns = (
        "preset",
        "UTD",
        "precision",
        "updates/s",
        "realtime capacity Hz",
        "vs SB3 SAC",
        "first call s",
    )
    for column in columns:
        table.add_column(column, justify="right")
    table.add_row("SB3 SAC (reference)", "1", "float32", f"{sb3_rate:.1f}", f"{sb3_rate:.1f}", "1.00x", "")
    for label, row in rates.items():
        table.add_row(
            label,
            str(row["utd_ratio"]),
            row["precision"],
            f"{row['updates_per_s']:.1f}",
            f"{row['realtime_capacity_hz']:.1f}" + (" (target >= 50)" if label == "crossq" else ""),
            f"{row['capacity_vs_sb3_sac']:.2f}x",
            f"{row['first_call_s']:.1f}",
        )
    return table


def _median_or_none(values: list[int | None]) -> float | None:
    """Median over seeds, counting unreached (None) as infinitely many steps; None if the median is."""
    ranked = sorted(float("inf") if value is None else float(value) for value in values)
    median = statistics.median(ranked)
    return None if median == float("inf") else median


def _sb3_steps_to_threshold(
    task: SampleEfficiencyTask, seed: int, max_steps: int, eval_episodes: int
) -> int | None:
    import gymnasium as gym
    from stable_baselines3.common.callbacks import BaseCallback

    from rl_control.learning.gym_train import EVAL_SEED_OFFSET, evaluate_batched

    sb3, _ = _import_sb3()
    eval_envs = [gym.make(task.env_id) for _ in range(eval_episodes)]
    reached: list[int] = []

    class _EvaluateUntilThreshold(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps % task.eval_every:
                return True
            returns = evaluate_batched(
                eval_envs,
                lambda obs: self.model.predict(obs, deterministic=True)[0],
                seed=seed + EVAL_SEED_OFFSET,
            )
            if float(np.mean(returns)) >= task.threshold:
                reached.append(self.num_timesteps)
                return False
            return True

    model = sb3.SAC("MlpPolicy", gym.make(task.env_id), seed=seed, device="cpu", verbose=0)
    model.learn(total_timesteps=max_steps, callback=_EvaluateUntilThreshold())
    for env in eval_envs:
        env.close()
    return reached[0] if reached else None


def steps_to_threshold(
    method: str,
    seed: int,
    cap: int,
    *,
    preset: str = "droq",
    demo_file: Path | None = None,
    overrides: dict[str, Any] | None = None,
    eval_episodes: int = 10,
    env_id: str = "Pendulum-v1",
) -> tuple[int | None, float]:
    """(env steps until ``env_id``'s threshold or None, wall-clock s) of ``method``.

    ``method`` is ``"sb3_sac"`` (SB3 SAC defaults) or ``"ours"`` (``preset`` with ``overrides``,
    learning_starts 100 like SB3, and ``demo_file`` demonstrations if given). ``env_id`` is one of
    :data:`SAMPLE_EFFICIENCY_TASKS`.
    """
    from rl_control.learning.gym_train import train_gym

    task = SAMPLE_EFFICIENCY_TASKS[env_id]
    start = time.perf_counter()
    if method == "sb3_sac":
        return _sb3_steps_to_threshold(task, seed, cap, eval_episodes), time.perf_counter() - start
    with tempfile.TemporaryDirectory() as scratch:
        summary = train_gym(
            env_id,
            preset,
            steps=cap,
            run_dir=Path(scratch) / "run",
            seed=seed,
            eval_every=task.eval_every,
            demo_file=demo_file,
            overrides={"learning_starts": 100, **(overrides or {})},
            eval_episodes=eval_episodes,
            stop_at_return=task.threshold,
            progress=False,
            tensorboard=False,
            export=False,
        )
    return summary["threshold_step"], time.perf_counter() - start


def _preset_names(preset: str) -> list[str]:
    """The presets of a comma-separated ``preset`` argument, checked before anything runs."""
    names = [name.strip() for name in preset.split(",") if name.strip()]
    if not names:
        raise ValueError("--preset: give at least one preset name")
    for name in names:
        preset_config(name)  # ValueError naming the unknown preset and the known ones
    return names


def bench_sample_efficiency(
    json_output: bool = False,
    quick: bool = False,
    preset: str = "droq",
    seeds: int = 3,
    console: Console | None = None,
    overrides: dict[str, Any] | None = None,
    threads: int = 1,
    demos: bool = True,
    env_id: str = "Pendulum-v1",
) -> dict[str, Any]:
    """Environment steps until the mean deterministic return over 10 episodes of ``env_id`` reaches its
    threshold (Pendulum-v1: -200; the tasks: :data:`SAMPLE_EFFICIENCY_TASKS`).

    Rows: SB3 SAC with its defaults, then each preset of the comma-separated ``preset`` (learning_starts
    100, as SB3, plus ``overrides``), on Pendulum-v1 each also with 5 scripted-expert demonstration
    episodes in the offline buffer unless ``demos`` is False (there is no expert for the other tasks).
    All presets share the SB3 reference of the same run. Evaluations every ``eval_every`` steps of the
    task on the same evaluation seeds for every method. ``quick`` runs one seed with lower step caps.
    Every method runs with ``threads`` torch threads (1 by default: robust on a shared machine).
    """
    from rl_control.learning.experts import write_pendulum_demonstrations

    presets = _preset_names(preset)
    if env_id not in SAMPLE_EFFICIENCY_TASKS:
        raise ValueError(
            f"--env {env_id}: not a benchmark task; choose one of {', '.join(SAMPLE_EFFICIENCY_TASKS)}"
        )
    task = SAMPLE_EFFICIENCY_TASKS[env_id]
    demos = demos and env_id == "Pendulum-v1"
    if threads > 0:
        torch.set_num_threads(threads)
    console = console or Console(stderr=True, quiet=json_output)
    seeds = 1 if quick else seeds
    sb3_cap, our_cap = (task.quick_sb3_cap, task.quick_our_cap) if quick else (task.sb3_cap, task.our_cap)
    # (row name, method, preset, step cap, with demonstrations)
    runs = [("sb3_sac", "sb3_sac", "", sb3_cap, False)]
    for name in presets:
        runs.append((name, "ours", name, our_cap, False))
        if demos:
            runs.append((f"{name}+demos", "ours", name, our_cap, True))
    steps: dict[str, list[int | None]] = {run[0]: [] for run in runs}
    wall: dict[str, list[float]] = {run[0]: [] for run in runs}
    demo_returns: list[float] = []
    with tempfile.TemporaryDirectory() as scratch:
        demo_file = Path(scratch) / "pendulum_expert_demos.npz"
        if demos:
            demo_returns = write_pendulum_demonstrations(demo_file, episodes=5)
        for seed in range(seeds):
            for name, method, run_preset, cap, with_demos in runs:
                reached, seconds = steps_to_threshold(
                    method,
                    seed,
                    cap,
                    preset=run_preset or "sac",
                    demo_file=demo_file if with_demos else None,
                    overrides=overrides,
                    env_id=env_id,
                )
                steps[name].append(reached)
                wall[name].append(seconds)
            log.info("seed %d: %s", seed, {name: values[-1] for name, values in steps.items()})
    medians = {name: _median_or_none(values) for name, values in steps.items()}
    sb3_median = medians["sb3_sac"]
    ratios = {
        name: None if median is None or sb3_median is None else median / sb3_median
        for name, median in medians.items()
    }
    result: dict[str, Any] = {
        "steps_to_threshold": steps,
        "wall_clock_s": wall,
        "median_steps": medians,
        "median_steps_ratio_vs_sb3": ratios,
        "env_id": env_id,
        "threshold": task.threshold,
        "step_caps": {run[0]: run[3] for run in runs},
        "overrides": {"learning_starts": 100, **(overrides or {})},
        "threads": torch.get_num_threads(),
        "demo_episode_returns": demo_returns,
    }
    table = Table(title=f"{env_id}: env steps until mean eval return >= {task.threshold:.0f}")
    for column in ("method", "steps per seed", "median", "ratio vs SB3", "target", "wall-clock s per seed"):
        table.add_column(column, justify="right")
    for name, *_, with_demos in runs:
        target = "" if name == "sb3_sac" else ("<= 0.10" if with_demos else "<= 0.33")
        table.add_row(
            name,
            ", ".join("-" if value is None else str(value) for value in steps[name]),
            "not reached" if medians[name] is None else f"{medians[name]:.0f}",
            "n/a" if ratios[name] is None else f"{ratios[name]:.2f}",
            target,
            ", ".join(f"{value:.0f}" for value in wall[name]),
        )
    console.print(table)
    if demos:
        console.print(f"expert demonstrations: 5 episodes, returns {np.round(demo_returns, 1).tolist()}")
    console.print("'-' = not reached within the step cap")
    return result
