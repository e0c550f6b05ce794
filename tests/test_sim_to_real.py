"""The sim-to-real benchmark's pieces that need no ROS graph: experiment files, fine-tuning start, plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rl_control.benchmarks.sim_to_real import (
    EpisodeLog,
    SimToRealSettings,
    deployment_figures,
    emulated_experiment,
    finetune_learner,
    finetune_start,
    paired_gain,
    plot_curve,
)
from rl_control.cli import main as cli_main
from rl_control.config import load_experiment
from rl_control.learning import Learner
from rl_control.learning.gym_train import train_gym
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


def test_the_fine_tuning_learner_starts_from_the_simulation_run(tmp_path: Path) -> None:
    from rl_control.learning.checkpoint import RunDirectory
    from rl_control.start_checks import learner_start_problem

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
    # the fine-tuning learner gets the run's own agent config (else it refuses the run) with the asked
    # update-to-data ratio, share of prior data and actor average, the run to start from, one torch thread
    asked = SimToRealSettings(out_dir=tmp_path, demo_fraction=0.3, finetune_actor_average=0.01)
    learner = finetune_learner(run, asked)
    new_run = tmp_path / "finetune_run"
    path = emulated_experiment(SimToRealSettings(out_dir=tmp_path), tmp_path / "tty", new_run, "ft", learner)
    config = load_experiment(path)
    assert config.learner_node.preset == "sac" and config.learner_node.torch_threads == 1
    assert config.learner_node.start_from == str(run)
    assert (
        config.learner_node.agent.hidden_sizes == [16, 16] and config.learner_node.agent.demo_fraction == 0.3
    )
    assert config.learner_node.agent.utd_ratio == asked.finetune_utd_ratio
    assert config.learner_node.agent.deployed_actor_average == 0.01
    assert learner_start_problem(config) is None  # what config check and learner_node run at start
    fine_tuning = Learner.create_or_resume(
        new_run, 21, 4, config.learner_node.agent, start_from=Path(config.learner_node.start_from)
    )
    assert fine_tuning.demo_buffer_rows == 60 and len(fine_tuning.replay) == 0  # the sim data: prior data

    other = {**learner, "agent": {**learner["agent"], "hidden_sizes": [32, 32]}}
    config = load_experiment(
        emulated_experiment(SimToRealSettings(out_dir=tmp_path), tmp_path / "tty", tmp_path / "x", "x", other)
    )
    problem = learner_start_problem(config)
    assert (
        problem is not None
        and problem.startswith(f"learner_node: start_from {run}")
        and "hidden_sizes" in problem
    )
    (run / "run.json").unlink()
    assert RunDirectory(run).read_run_info() is None
    with pytest.raises(FileNotFoundError, match=r"no run\.json"):
        finetune_learner(run, asked)


def test_curve_plot_is_written(tmp_path: Path) -> None:
    log = EpisodeLog(times_s=[10.0, 40.0, 70.0], returns=[3.0, 10.0, 30.0])
    plot_curve(log, 65.0, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"
    assert log.mean == pytest.approx(43.0 / 3.0)


def test_a_mean_return_comes_with_its_standard_error() -> None:
    returns = [3.0, 10.0, 30.0, 41.0]
    log = EpisodeLog(times_s=[1.0, 2.0, 3.0, 4.0], returns=returns)
    assert log.standard_error == pytest.approx(np.std(returns, ddof=1) / 2.0)
    assert np.isnan(EpisodeLog(times_s=[1.0], returns=[5.0]).standard_error)


def test_deployment_figures_pair_each_deployed_episode_with_its_simulated_one() -> None:
    deployed = {
        "randomized": EpisodeLog(times_s=[1.0, 2.0, 3.0], returns=[50.0, 60.0, 70.0]),
        "nominal": EpisodeLog(times_s=[1.0, 2.0, 3.0], returns=[40.0, 44.0, 60.0]),
    }
    # the randomized policy keeps exactly 5/6 on every target; the nominal one 4/6, 4/6 and 6/8
    sim = {"randomized": np.array([60.0, 72.0, 84.0, 99.0]), "nominal": np.array([60.0, 66.0, 80.0])}
    figures = deployment_figures(deployed, sim)
    assert figures["emulated_return_before"] == 60.0 and figures["nominal_policy_emulated_return"] == 48.0
    assert figures["sim_return_arm_targets"] == 72.0  # the deployed episodes' three targets only
    assert figures["kept_fraction"] == pytest.approx(60.0 / 72.0)
    assert figures["nominal_policy_kept_fraction"] == pytest.approx(48.0 / (206.0 / 3.0))
    # a constant share on every target has no spread left: the targets' spread cancels in the pairs
    assert figures["kept_fraction_stderr"] == pytest.approx(0.0, abs=1e-12)
    assert figures["nominal_policy_kept_fraction_stderr"] > 0.0
    assert figures["nominal_policy_extra_loss"] == pytest.approx(60.0 / 72.0 - 48.0 / (206.0 / 3.0))
    influence = (np.array([40.0, 44.0, 60.0]) - figures["nominal_policy_kept_fraction"] * sim["nominal"]) / (
        206.0 / 3.0
    )
    assert figures["nominal_policy_extra_loss_stderr"] == pytest.approx(
        np.std(influence, ddof=1) / np.sqrt(3)
    )
    assert figures["emulated_return_before_stderr"] == pytest.approx(
        np.std([50, 60, 70], ddof=1) / np.sqrt(3)
    )
    assert figures["nominal_policy_emulated_returns"] == [40.0, 44.0, 60.0]


def test_fine_tuning_gain_is_paired_episode_by_episode() -> None:
    gain, stderr = paired_gain([50.0, 70.0, 30.0], [53.0, 74.0, 32.0, 99.0])  # the extra episode is unpaired
    assert gain == pytest.approx(3.0) and stderr == pytest.approx(
        np.std([3.0, 4.0, 2.0], ddof=1) / np.sqrt(3)
    )


def test_simulated_episodes_meet_the_targets_the_deployed_actor_draws(tmp_path: Path) -> None:
    """The actor (ROS-free core, seeded as the emulated graphs are) and the paired simulation draw the same
    target for each episode index."""
    from rl_control.actor.core import ActorCore, task_command_safety
    from rl_control.benchmarks.sim_to_real import DEPLOY_SEED
    from rl_control.envs.gym_env import RobotTaskEnv
    from rl_control.envs.tasks import make_task

    actor_task = make_task("arm_reach")
    core = ActorCore(
        actor_task, task_command_safety(actor_task, actor_task.joint_names), train=False, seed=DEPLOY_SEED
    )
    env = RobotTaskEnv("arm_reach")
    goal_rng = np.random.default_rng(DEPLOY_SEED)
    for episode in range(3):  # the actor draws its first episode's target when it starts
        env.reset(seed=episode, options={"goal_rng": goal_rng})
        np.testing.assert_array_equal(env.task.target, actor_task.target)
        core.begin_episode()
    env.reset(seed=0)
    assert not np.array_equal(env.task.target, actor_task.target)


def test_sim_to_real_flags_are_refused_by_other_benchmarks() -> None:
    with pytest.raises(SystemExit, match="--minutes does not apply"):
        cli_main(["bench", "driver", "--minutes", "1"])
    with pytest.raises(SystemExit, match="--episodes does not apply"):
        cli_main(["bench", "learner", "--episodes", "5"])


def test_fine_tuning_starts_from_the_better_policy_that_falls_short() -> None:
    def logs(randomized: float, nominal: float) -> dict[str, EpisodeLog]:
        return {
            "randomized": EpisodeLog(times_s=[1.0], returns=[randomized]),
            "nominal": EpisodeLog(times_s=[1.0], returns=[nominal]),
        }

    assert finetune_start(logs(60.0, 62.0), 65.0) == "nominal"
    assert finetune_start(logs(60.0, 58.0), 65.0) == "randomized"
    assert finetune_start(logs(60.0, 70.0), 65.0) == "randomized"  # the nominal-only one needs none
    assert finetune_start(logs(66.0, 70.0), 65.0) is None
