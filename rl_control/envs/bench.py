"""``rl-control bench sim``: environment steps/s per robot, side by side with raw MuJoCo physics."""

from __future__ import annotations

import statistics
import sys
import time

import mujoco
import numpy as np
from rich.console import Console
from rich.table import Table

from rl_control.envs.gym_env import RobotTaskEnv
from rl_control.envs.randomization import RandomizationConfig

BENCH_TASKS: dict[str, str] = {
    "pendulum": "pendulum_swingup",
    "cartpole": "cartpole_swingup",
    "arm": "arm_reach",
    "quadruped": "quadruped_walk",
}


def _time_env_block(env: RobotTaskEnv, actions: np.ndarray, ctrl_log: np.ndarray) -> float:
    ctrl = env.sim.data.ctrl  # a view: stays valid, so no attribute lookup inside the timed loop
    start = time.thread_time()
    for i, action in enumerate(actions):
        _, _, terminated, truncated, _ = env.step(action)
        ctrl_log[i] = ctrl
        if terminated or truncated:
            env.reset()
    return time.thread_time() - start


def _time_raw_block(
    model: mujoco.MjModel, data: mujoco.MjData, decimation: int, ctrl_log: np.ndarray
) -> float:
    ctrl = data.ctrl
    start = time.thread_time()
    for logged in ctrl_log:
        ctrl[:] = logged
        mujoco.mj_step(model, data, decimation)
    return time.thread_time() - start


def measure_robot(task: str, *, blocks: int, block_steps: int, seed: int = 0) -> dict[str, float]:
    """Time ``blocks`` interleaved blocks of env steps and of raw ``mj_step`` × decimation.

    The raw reference replays, on a second MjData of the same (randomized) model, the controls the env
    block applied, from the same start state, so both integrate the same kind of trajectory. The env side
    includes everything a training loop pays per step: action mapping and checks, latency queue, pushes,
    measurement with noise and delay, observation, reward, termination and episode resets.
    Both sides are timed in per-thread CPU time (``time.thread_time``), so time this process spends
    waiting for a core shared with other processes is not counted; the overhead is the median over
    blocks of (env time / raw time - 1).
    """
    env = RobotTaskEnv(task, randomization=RandomizationConfig(enabled=True))
    env.reset(seed=seed)
    sim = env.sim
    rng = np.random.default_rng(seed)
    actions = (0.3 * rng.uniform(-1.0, 1.0, (block_steps, env.task.action_dim))).astype(np.float32)
    ctrl_log = np.zeros((block_steps, sim.model.nu))
    raw_data = mujoco.MjData(sim.model)
    _time_env_block(env, actions[:50], ctrl_log[:50])  # warm up caches and allocators
    env_times, raw_times = [], []
    for _ in range(blocks):
        start_qpos, start_qvel, start_ctrl = sim.data.qpos.copy(), sim.data.qvel.copy(), sim.data.ctrl.copy()
        env_times.append(_time_env_block(env, actions, ctrl_log))
        raw_data.qpos[:], raw_data.qvel[:], raw_data.ctrl[:] = start_qpos, start_qvel, start_ctrl
        mujoco.mj_forward(sim.model, raw_data)
        raw_times.append(_time_raw_block(sim.model, raw_data, sim.decimation, ctrl_log))
    env.close()
    total_steps = blocks * block_steps
    overhead = statistics.median(e / r - 1.0 for e, r in zip(env_times, raw_times, strict=True))
    return {
        "env_steps_per_s": total_steps / sum(env_times),
        "raw_steps_per_s": total_steps / sum(raw_times),
        "overhead": overhead,
        "decimation": float(sim.decimation),
    }


def bench_sim(json_output: bool, quick: bool = False, console: Console | None = None) -> dict:
    """Benchmark every robot; prints a table (to stderr when ``json_output``) and returns the figures.

    Returns ``{"robots": {robot: {"env_steps_per_s", "raw_steps_per_s", "overhead", "decimation"}},
    "target_overhead_quadruped": 0.30, "quadruped_within_target": bool}``. Randomization is enabled
    (default ranges), so noise, latency and pushes are part of the measured env cost.
    """
    blocks, block_steps = (5, 200) if quick else (25, 400)
    robots = {
        robot: measure_robot(task, blocks=blocks, block_steps=block_steps)
        for robot, task in BENCH_TASKS.items()
    }
    result = {
        "robots": robots,
        "target_overhead_quadruped": 0.30,
        "quadruped_within_target": robots["quadruped"]["overhead"] <= 0.30,
    }
    if console is None:
        console = Console(file=sys.stderr if json_output else sys.stdout)
    table = Table(title="Simulation throughput (control steps per CPU-second, randomization on)")
    for column in ("robot", "env steps/s", "raw mj_step×decimation steps/s", "overhead", "decimation"):
        table.add_column(column, justify="right" if column != "robot" else "left")
    for robot, figures in robots.items():
        table.add_row(
            robot,
            f"{figures['env_steps_per_s']:,.0f}",
            f"{figures['raw_steps_per_s']:,.0f}",
            f"{100 * figures['overhead']:.1f} %",
            f"{figures['decimation']:.0f}",
        )
    console.print(table)
    return result
