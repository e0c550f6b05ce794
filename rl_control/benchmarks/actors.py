"""``rl-control bench actors``: data collection and learning throughput with N simulated robots, one learner.

For N = 1, 2, 4 the multi-robot training graph (:func:`rl_control.graph.graph_layout`: N sim_node +
actor_node pairs in ``/robot<k>``, one learner_node) runs as processes started exactly as ``rl-control
launch --robots N`` starts them, on the main job's experiment file (``config/pendulum_sim.yaml``, lockstep).
A probe counts the transitions reaching the learner's topic (per publisher) and reads the learner's
progress; after a warm-up (learning started, every robot publishing) the figures are measured over
``duration_s``: environment steps collected per second and learner updates per second. N = 1 is the
reference, measured in the same run.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROBOT_COUNTS = (1, 2, 4)
STARTUP_S = 180.0


def _measure(robots: int, duration_s: float, directory: Path) -> dict[str, float]:
    """Run the graph with ``robots`` robots and measure its throughput (figures of one row)."""
    from rl_control.benchmarks.main_job import main_job_experiment
    from rl_control.graph import graph_layout, layout_overrides
    from rl_control.launcher import GraphProcesses, managed_nodes
    from rl_control.ros import messages
    from rl_control.testing.probe import RosProbe

    config = main_job_experiment(directory)
    layout = graph_layout("sim_train", robots=robots)
    overrides = layout_overrides("sim_train", layout, config_file=config)
    nodes = managed_nodes(layout, config, overrides, directory)
    log = (directory / "graph.log").open("w", encoding="utf-8")

    def emit(name: str, line: str) -> None:
        log.write(f"[{name}] {line}\n")

    processes = GraphProcesses(nodes, emit=emit)
    rows: dict[str, int] = {}
    progress: list[tuple[float, messages.LearnerProgress]] = []
    with RosProbe("bench_actors_probe") as probe:

        def on_transitions(msg: Any, info: Any) -> None:  # counted per publisher, as the learner does
            gid = info.get("publisher_gid")
            key = bytes(gid["data"]).hex() if gid else ""
            rows[key] = rows.get(key, 0) + int(msg.layout.dim[0].size)

        probe.node.create_subscription(
            messages.Float64MultiArray, messages.TRANSITIONS_TOPIC, on_transitions, messages.TRANSITIONS_QOS
        )
        probe.node.create_subscription(
            messages.Int64MultiArray,
            messages.LEARNER_PROGRESS_TOPIC,
            lambda msg: progress.append((time.monotonic(), messages.decode_progress(msg))),
            messages.PROGRESS_QOS,
        )
        processes.start()
        try:
            started = probe.spin_until(
                lambda: len(rows) >= robots and bool(progress) and progress[-1][1].updates > 0, STARTUP_S
            )
            if not started or processes.failed:
                raise RuntimeError(f"the {robots}-robot graph did not start learning; see {log.name}")
            first_rows, first_at = sum(rows.values()), time.monotonic()
            first_progress = progress[-1][1]
            probe.spin_for(duration_s)
            elapsed = time.monotonic() - first_at
            last_progress = progress[-1][1]
            collected = sum(rows.values()) - first_rows
        finally:
            processes.stop()
            log.close()
    updates = last_progress.updates - first_progress.updates
    return {
        "robots": robots,
        "env_steps_per_s": collected / elapsed,
        "learner_updates_per_s": updates / elapsed,
        "achieved_utd": updates / max(last_progress.env_steps - first_progress.env_steps, 1),
        "publishers": len(rows),
    }


def bench_actors(
    json_output: bool = False, duration_s: float = 30.0, quick: bool = False, console: Any = None
) -> dict[str, Any]:
    """Measure N = 1, 2, 4 robots feeding one learner; returns ``{"n1": {...}, "n2": ..., "n4": ...}`` with
    ``env_steps_per_s``, ``learner_updates_per_s``, ``achieved_utd`` and the collection speed-up over N=1.

    ``quick`` measures 8 s per N (rough). The table goes to ``console`` (default: stderr when
    ``json_output``, else stdout).
    """
    from rich.console import Console
    from rich.table import Table

    from rl_control.testing.node_process import isolated_ros_domain

    duration_s = min(duration_s, 8.0) if quick else duration_s
    console = console or Console(stderr=json_output, file=sys.stderr if json_output else None)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    figures: dict[str, Any] = {"cpu_count": os.cpu_count(), "duration_s": duration_s}
    with isolated_ros_domain():
        for robots in ROBOT_COUNTS:
            directory = Path(tempfile.mkdtemp(prefix=f"rlc_bench_actors_{robots}_"))
            try:
                figures[f"n{robots}"] = _measure(robots, duration_s, directory)
            finally:
                shutil.rmtree(directory, ignore_errors=True)
    reference = figures["n1"]["env_steps_per_s"]
    table = Table(title=f"N robots -> one learner (pendulum_sim.yaml, lockstep; {os.cpu_count()} CPUs)")
    for column in ("robots", "env steps/s", "vs N=1", "learner updates/s", "achieved UTD"):
        table.add_column(column, justify="right")
    for robots in ROBOT_COUNTS:
        row = figures[f"n{robots}"]
        row["collection_speedup_vs_n1"] = row["env_steps_per_s"] / max(reference, 1e-9)
        table.add_row(
            str(robots),
            f"{row['env_steps_per_s']:.1f}",
            f"{row['collection_speedup_vs_n1']:.2f}x",
            f"{row['learner_updates_per_s']:.1f}",
            f"{row['achieved_utd']:.2f}",
        )
    console.print(table)
    return figures
