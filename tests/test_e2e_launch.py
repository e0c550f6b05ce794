"""End to end: ``rl-control launch`` runs sim_node <-> actor_node <-> learner_node in lockstep and learns.

Short enough for CI: the graph learns ``pendulum_balance`` (the same robot and reward as the main job's
swing-up, from a small tilt) online from scratch for a bounded time, with the learner's demo buffer
seeded from a scripted controller's episodes; the exported deterministic policy must clearly beat doing
nothing. (The from-scratch swing-up main job is ``./rlc.sh``; see docs/howto_sim_training.md.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]

TRAIN_MINUTES = 2.0


def test_lockstep_graph_learns_online_and_exports_a_better_policy(tmp_path: Path) -> None:
    from rl_control.envs import RobotTaskEnv
    from rl_control.learning import evaluate_policy
    from rl_control.learning.experts import pendulum_expert, record_demonstrations

    env = RobotTaskEnv("pendulum_balance")
    demos, expert_returns = record_demonstrations(env, pendulum_expert, episodes=3, seed=100)
    demos.to_npz(tmp_path / "demos.npz")
    idle = float(np.mean(evaluate_policy(env, lambda obs: np.zeros(1, np.float32), episodes=10, seed=1000)))
    assert np.mean(expert_returns) > idle + 20  # the demonstrations are worth learning from

    run_dir = tmp_path / "run"
    config = tmp_path / "experiment.yaml"
    config.write_text(
        textwrap.dedent(f"""
        /**:
          ros__parameters:
            task: pendulum_balance
            controller: forward_effort_controller
            run_dir: {run_dir}
            seed: 3
        sim_node:
          ros__parameters:
            sim_mode: lockstep
        actor_node:
          ros__parameters:
            state_timeout_s: 1.0
            safe_command: zero
            max_policy_lag_steps: 50
        learner_node:
          ros__parameters:
            preset: droq
            demo_files: [demos.npz]
            publish_every_updates: 300
            checkpoint_every_s: 20.0
            agent:
              hidden_sizes: [64, 64]
              batch_size: 128
              utd_ratio: 4
              learning_starts: 200
              init_temperature: 0.1
    """)
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rl_control.cli",
            "launch",
            str(config),
            "--no-progress",
            "--max-minutes",
            str(TRAIN_MINUTES),
        ],
        capture_output=True,
        text=True,
        timeout=TRAIN_MINUTES * 60 + 120,
        cwd=tmp_path,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-5000:]
    for node in ("sim_node", "actor_node", "learner_node"):
        assert f"[{node}]" in log, f"no output from {node}"

    summary = json.loads((run_dir / "launch_summary.json").read_text())
    assert summary["episodes"] >= 3, summary  # episodes ran through the reset service
    assert summary["updates"] > 0 and summary["policy_version"] >= 2, (
        summary
    )  # policies went back to the actor
    assert summary["learner_env_steps"] >= 1000, summary  # transitions crossed processes into the replay
    assert summary["intervention_transitions"] == 0, summary  # no human in this graph
    assert Path(summary["policy_file"]).is_file()
    assert summary["final_eval_mean"] > idle + 15, (idle, summary)
    assert any((run_dir / "checkpoints").iterdir())  # checkpointed on shutdown
    # results to look at: the learning curve, and the monitor's evaluations on the env-step axis
    assert (run_dir / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert summary["learning_curve"] == str(run_dir / "learning_curve.png")
    assert any((run_dir / "tensorboard" / "monitor").iterdir())
    assert any((run_dir / "tensorboard" / "learner_node").iterdir())
