"""``rl-control bench main-job``: the README's main job timed from launch to success, against its old recipe.

The main job is ``rl-control launch config/pendulum_sim.yaml``: pendulum swing-up learned from scratch through
the ROS graph (sim_node, actor_node, learner_node, lockstep). Each run starts the launcher exactly as a user
does, with the shipped file's ``seed`` and ``run_dir`` changed (nothing resumed), in a ROS domain of its own;
its time is ``elapsed_s`` of the run's ``launch_summary.json``: from the launch until the graph stopped on
success (or on its time limit). The reference, measured in the same run on the same seeds, is the recipe the
main job shipped before it was tuned for two cores (:data:`REFERENCE_LEARNER`: DroQ at UTD 10, a new policy
every 1000 updates, ~200 s on the CPUs of its time). ``robots`` (``--robots 2,4``) also times the shipped
recipe with each of those numbers of simulated robots feeding its one learner, to show how the main job's
time changes.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

#: the main job's target: its median time to success over the seeds, on 2 cores
TARGET_S = 90.0
#: each launch's limit (the launcher's default): a run that has not succeeded by then counts as not reached
LAUNCH_LIMIT_MINUTES = 15.0
#: the main job's learner settings before this project tuned them (issue 13's "today ~200 s")
REFERENCE_LEARNER: dict[str, Any] = {"agent": {"utd_ratio": 10}, "publish_every_updates": 1000}
#: time a launcher gets past its limit to stop its nodes, export and evaluate the final policy
STOP_ALLOWANCE_S = 300.0
SHIPPED = "shipped"
REFERENCE = "reference"


def main_job_experiment(
    directory: Path, seed: int | None = None, learner: dict[str, Any] | None = None
) -> Path:
    """Write the main job's experiment file into ``directory``, its run directory there (nothing resumed),
    with ``seed`` and ``learner_node`` settings merged over the shipped ones when given; returns its path."""
    import yaml

    from rl_control.config.yaml_file import load_yaml_file
    from rl_control.paths import config_path

    document = load_yaml_file(config_path("pendulum_sim.yaml"))
    shared = document["/**"]["ros__parameters"]
    shared["run_dir"] = str(directory / "run")
    if seed is not None:
        shared["seed"] = seed
    parameters = document["learner_node"]["ros__parameters"]
    parameters["resume"] = False
    for key, value in (learner or {}).items():
        parameters[key] = {**parameters.get(key, {}), **value} if isinstance(value, dict) else value
    path = directory / "experiment.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def time_main_job(
    directory: Path, seed: int, learner: dict[str, Any] | None = None, robots: int = 1
) -> dict[str, Any]:
    """Launch the main job once (seed ``seed``, ``learner`` settings over the shipped ones, ``robots``
    simulated robots) and return its ``launch_summary.json`` figures: ``elapsed_s``, ``succeeded`` (stopped on
    success), ``final_eval_mean``, ``learner_env_steps``, ``updates``."""
    from rl_control.launcher import stop_graph

    directory.mkdir(parents=True, exist_ok=True)
    config = main_job_experiment(directory, seed, learner)
    command = [sys.executable, "-m", "rl_control.cli", "launch", str(config), "--no-progress"]
    command += ["--max-minutes", str(LAUNCH_LIMIT_MINUTES), "--robots", str(robots)]
    log_path = directory / "launch.log"
    with log_path.open("wb") as log:
        launcher = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:  # the launcher stops itself at its limit; the timeout is the backstop
        launcher.wait(timeout=LAUNCH_LIMIT_MINUTES * 60.0 + STOP_ALLOWANCE_S)
    except BaseException:  # the timeout, or the benchmark interrupted: no graph is left running
        stop_graph(launcher)
        raise
    summary_path = directory / "run" / "launch_summary.json"
    if not summary_path.is_file():
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"main job, seed {seed}: the launcher wrote no {summary_path.name}\n{tail}")
    summary = json.loads(summary_path.read_text())
    return {
        "seed": seed,
        "robots": robots,
        "elapsed_s": summary["elapsed_s"],
        "succeeded": summary["stop_reason"] == "success threshold reached",
        "final_eval_mean": summary.get("final_eval_mean"),
        "learner_env_steps": summary["learner_env_steps"],
        "updates": summary["updates"],
    }


def median_time_s(runs: list[dict[str, Any]]) -> float | None:
    """The median time to success over ``runs``; a run that did not succeed counts as slower than any that
    did, so the median is None when half of them or more did not."""
    times = sorted(run["elapsed_s"] if run["succeeded"] else float("inf") for run in runs)
    median = statistics.median(times)
    return median if median != float("inf") else None


def bench_main_job(
    json_output: bool = False,
    quick: bool = False,
    seeds: int = 3,
    robots: str = "",
    console: Any = None,
) -> dict[str, Any]:
    """Time the main job for seeds 0..``seeds``-1 with the shipped recipe and the reference recipe, and the
    shipped recipe with each robot count in ``robots`` (comma-separated, e.g. ``"2,4"``).

    Returns ``runs`` (method → list of per-seed figures, see :func:`time_main_job`), ``median_s`` (method →
    median time to success, None when most runs missed), ``speedup_vs_reference``, ``target_s`` and
    ``target_met``. Methods: ``shipped``, ``reference``, ``robots<N>``. ``quick`` runs one seed.
    """
    from rich.console import Console
    from rich.table import Table

    from rl_control.testing.node_process import isolated_ros_domain

    if seeds < 1:
        raise ValueError(f"--seeds {seeds}: at least one seed")
    robot_counts = [int(count) for count in robots.split(",") if count.strip()] if robots else []
    if any(count < 2 for count in robot_counts):
        raise ValueError(f"--robots {robots}: robot counts of 2 or more (one robot is the shipped run)")
    seeds = 1 if quick else seeds
    console = console or Console(stderr=json_output, file=sys.stderr if json_output else None)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    methods: dict[str, tuple[dict[str, Any] | None, int]] = {
        SHIPPED: (None, 1),
        REFERENCE: (REFERENCE_LEARNER, 1),
    }
    methods |= {f"robots{count}": (None, count) for count in robot_counts}
    runs: dict[str, list[dict[str, Any]]] = {method: [] for method in methods}
    root = Path(tempfile.mkdtemp(prefix="rlc_bench_main_job_"))
    try:
        for seed in range(seeds):  # methods alternate, so a change of machine load hits them alike
            for method, (learner, count) in methods.items():
                with isolated_ros_domain():
                    run = time_main_job(root / f"{method}_seed{seed}", seed, learner, count)
                runs[method].append(run)
                verdict = "success" if run["succeeded"] else "not reached"
                console.print(
                    f"{method} seed {seed}: {run['elapsed_s']:.1f} s, {verdict}, "
                    f"{run['learner_env_steps']} env steps"
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    medians = {method: median_time_s(method_runs) for method, method_runs in runs.items()}
    shipped, reference = medians[SHIPPED], medians[REFERENCE]
    figures: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "seeds": seeds,
        "runs": runs,
        "median_s": medians,
        "speedup_vs_reference": reference / shipped if shipped and reference else None,
        "target_s": TARGET_S,
        "target_met": shipped is not None and shipped <= TARGET_S,
    }
    table = Table(title=f"main job (pendulum_sim.yaml) to success, {seeds} seed(s), {os.cpu_count()} CPUs")
    for column in ("recipe", "robots", "seconds per seed", "median s"):
        table.add_column(column, justify="right")
    for method, (_, count) in methods.items():
        seconds = ", ".join(
            f"{run['elapsed_s']:.0f}" + ("" if run["succeeded"] else " (not reached)") for run in runs[method]
        )
        median = medians[method]
        table.add_row(method, str(count), seconds, "-" if median is None else f"{median:.1f}")
    console.print(table)
    console.print(
        f"target: shipped median <= {TARGET_S:.0f} s: {'met' if figures['target_met'] else 'missed'}"
    )
    return figures
