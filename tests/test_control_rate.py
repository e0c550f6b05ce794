"""One source per value: the configured control_rate_hz reaches the task, the simulator, the actor and the
launch monitor's evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")

from rclpy.context import Context
from rclpy.node import Node

from rl_control.config.schema import parse_experiment
from rl_control.envs.gym_env import RobotTaskEnv
from rl_control.envs.tasks import make_task

pytestmark = pytest.mark.ros

RATE_HZ = 25.0  # not the tasks' 50 Hz default; the pendulum's 5 ms physics step divides its period


class ZeroPolicy:
    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return np.zeros(1, np.float32)


def test_the_configured_control_rate_reaches_task_simulator_actor_and_evaluation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rl_control.ros.actor_node import ActorNode
    from rl_control.ros.launch_monitor import TrainingMonitor
    from rl_control.ros.sim_node import SimNode

    assert make_task("pendulum_swingup").control_rate_hz != RATE_HZ
    config = parse_experiment(
        {
            "/**": {
                "ros__parameters": {
                    "task": "pendulum_swingup",
                    "control_rate_hz": RATE_HZ,
                    "run_dir": str(tmp_path / "run"),
                    "mode": "deploy",
                }
            },
            "actor_node": {"ros__parameters": {"reset_service": ""}},
        }
    )
    context = Context()
    context.init()
    try:
        node = Node("rate_probe", context=context)
        actor = ActorNode(node, config)  # built, not started: its figures are what it would run at
        assert actor.task.control_rate_hz == RATE_HZ
        assert actor.loop.period_s == pytest.approx(1.0 / RATE_HZ)
        sim = SimNode(node, config)
        try:
            assert sim._task.control_rate_hz == RATE_HZ
            assert sim._sim.control_dt == pytest.approx(1.0 / RATE_HZ)
        finally:
            sim.shutdown()
        actor.shutdown()
        node.destroy_node()
    finally:
        context.try_shutdown()

    evaluated: list[float] = []
    close = RobotTaskEnv.close

    def record_and_close(env: RobotTaskEnv) -> None:
        evaluated.append(env.sim.control_dt)
        close(env)

    monkeypatch.setattr(RobotTaskEnv, "close", record_and_close)
    monitor = TrainingMonitor(config, graph="deploy", live=False)
    assert monitor.task.control_rate_hz == RATE_HZ
    assert len(monitor.evaluate(ZeroPolicy(), episodes=1)) == 1
    assert evaluated == [pytest.approx(1.0 / RATE_HZ)]


def test_the_control_loop_bench_measures_the_ros_free_step_back_to_back_and_after_an_idle_period(
    tmp_path: Path,
) -> None:
    from rl_control.benchmarks.control_loop import export_bench_policy, ros_free_tick_ms

    figures = ros_free_tick_ms(export_bench_policy(tmp_path), 500.0, priority=0, ticks=50)
    assert set(figures) == {
        "back_to_back_p50_ms",
        "back_to_back_p99_ms",
        "after_idle_p50_ms",
        "after_idle_p99_ms",
    }
    for name in ("back_to_back", "after_idle"):
        assert 0.0 < figures[f"{name}_p50_ms"] <= figures[f"{name}_p99_ms"] < 100.0
