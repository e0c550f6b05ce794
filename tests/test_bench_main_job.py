"""``rl-control bench main-job``: the experiment files it launches and how it summarizes the runs."""

from __future__ import annotations

from pathlib import Path

from rl_control.benchmarks.main_job import REFERENCE_LEARNER, main_job_experiment, median_time_s
from rl_control.config import load_experiment
from rl_control.paths import config_path


def test_the_reference_recipe_changes_only_the_learner_settings_it_names(tmp_path: Path) -> None:
    shipped = load_experiment(config_path("pendulum_sim.yaml"))
    reference = load_experiment(main_job_experiment(tmp_path, seed=2, learner=REFERENCE_LEARNER))
    assert reference.shared.seed == 2
    assert reference.shared.run_dir == str(tmp_path / "run")
    assert reference.learner_node.resume is False
    assert reference.learner_node.agent.utd_ratio == 10 != shipped.learner_node.agent.utd_ratio
    assert reference.learner_node.publish_every_updates == 1000
    # the rest of the agent section is the shipped one (merged, not replaced)
    assert reference.learner_node.agent.hidden_sizes == shipped.learner_node.agent.hidden_sizes
    assert reference.learner_node.agent.n_step == shipped.learner_node.agent.n_step
    assert reference.learner_node.preset == shipped.learner_node.preset


def test_the_shipped_recipe_is_the_main_job_with_its_own_run_directory(tmp_path: Path) -> None:
    shipped = load_experiment(config_path("pendulum_sim.yaml"))
    written = load_experiment(main_job_experiment(tmp_path))
    assert written.shared.seed == shipped.shared.seed
    assert written.learner_node.agent == shipped.learner_node.agent


def test_a_run_that_did_not_succeed_counts_as_slower_than_every_success() -> None:
    def run(seconds: float, succeeded: bool = True) -> dict[str, object]:
        return {"elapsed_s": seconds, "succeeded": succeeded}

    assert median_time_s([run(80.0), run(60.0), run(70.0)]) == 70.0
    # a miss stopped early (e.g. at 30 s by a dead node) must not pull the median down
    assert median_time_s([run(80.0), run(30.0, succeeded=False), run(60.0)]) == 80.0
    assert median_time_s([run(80.0), run(900.0, succeeded=False), run(900.0, succeeded=False)]) is None
