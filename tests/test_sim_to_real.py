"""The sim-to-real benchmark's pieces that need no ROS graph: experiment files, demonstrations, the plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rl_control.benchmarks.sim_to_real import (
    EpisodeLog,
    SimToRealSettings,
    emulated_experiment,
    export_demonstrations,
    finetune_learner,
    plot_curve,
)
from rl_control.cli import main as cli_main
from rl_control.config import load_experiment
from rl_control.transitions import TransitionBatch


def test_emulated_experiment_is_the_arm_file_with_the_emulator_and_learner_settings(tmp_path: Path) -> None:
    settings = SimToRealSettings(out_dir=tmp_path, reality_gap="harsh")
    demos = tmp_path / "demos.npz"
    TransitionBatch(
        obs=np.zeros((2, 21)),
        action=np.zeros((2, 4)),
        reward=np.zeros(2),
        next_obs=np.zeros((2, 21)),
        terminated=np.zeros(2),
        truncated=np.zeros(2),
    ).to_npz(demos)
    learner = {"preset": "sac", "demo_files": [str(demos)], "agent": {"demo_fraction": 0.3}}
    path = emulated_experiment(settings, tmp_path / "ttyDXL", tmp_path / "run", "finetune", learner)
    config = load_experiment(path)
    assert config.driver_node.port == str(tmp_path / "ttyDXL")
    assert config.driver_node.emulator.reality_gap == "harsh"
    assert config.shared.run_dir == str(tmp_path / "run")
    assert config.learner_node.preset == "sac" and config.learner_node.agent.demo_fraction == 0.3
    assert config.has_driver and config.shared.task == "arm_reach"


def test_demonstrations_and_learner_settings_resume_the_simulation_run(tmp_path: Path) -> None:
    from rl_control.learning.checkpoint import RunDirectory
    from rl_control.learning.gym_train import train_gym
    from rl_control.learning.learner import check_run_directory

    run = tmp_path / "run"
    train_gym(
        "rl_control/ArmReach-v0",
        "sac",
        steps=60,
        run_dir=run,
        eval_every=60,
        overrides={"learning_starts": 50, "batch_size": 8, "hidden_sizes": [16, 16]},
        eval_episodes=1,
        progress=False,
        tensorboard=False,
        export=False,
    )
    rows = export_demonstrations(run, tmp_path / "demos.npz")
    batch = TransitionBatch.from_npz(tmp_path / "demos.npz")
    assert rows == len(batch) == 60
    assert batch.obs.shape == (60, 21) and np.all(np.abs(batch.action) <= 1.0)
    # the fine-tuning learner gets the run's own agent config (else it refuses the run) with the asked
    # update-to-data ratio, the demos at the asked share, and one torch thread
    learner = finetune_learner(run, tmp_path / "demos.npz", 0.3, 4)
    path = emulated_experiment(SimToRealSettings(out_dir=tmp_path), tmp_path / "tty", run, "ft", learner)
    config = load_experiment(path).learner_node
    assert config.preset == "sac" and config.torch_threads == 1 and config.demo_files
    assert config.agent.hidden_sizes == [16, 16] and config.agent.demo_fraction == 0.3
    assert config.agent.utd_ratio == 4
    check_run_directory(run, 21, 4, config.agent)
    (run / "run.json").unlink()
    assert RunDirectory(run).read_run_info() is None
    with pytest.raises(FileNotFoundError, match=r"no run\.json"):
        finetune_learner(run, tmp_path / "demos.npz", 0.3, 1)


def test_curve_plot_is_written(tmp_path: Path) -> None:
    log = EpisodeLog(times_s=[10.0, 40.0, 70.0], returns=[3.0, 10.0, 30.0])
    plot_curve(log, 65.0, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"
    assert log.mean == pytest.approx(43.0 / 3.0)


def test_sim_to_real_flags_are_refused_by_other_benchmarks() -> None:
    with pytest.raises(SystemExit, match="--minutes does not apply"):
        cli_main(["bench", "driver", "--minutes", "1"])
