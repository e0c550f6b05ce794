"""Learner faults across real processes: the scenarios of ``rl-control bench faults``, with their figures
asserted (SIGKILLed learners, restarted actors, damaged and foreign files, poisoned transitions)."""

from __future__ import annotations

import pytest

pytest.importorskip("rclpy")

from rl_control.faults import SCENARIOS, ScenarioContext, ScenarioResult, load_scenarios

pytestmark = [pytest.mark.ros, pytest.mark.usefixtures("ros_domain")]


def test_sigkill_of_learner_and_actor_restart_loses_no_received_transition(held_scenario) -> None:
    values = held_scenario("learner_sigkill_with_actor_restart").values
    assert values["checkpointed"] == 0  # none of the first 200 rows was in a checkpoint at the SIGKILL
    assert values["rows"] == values["sent"] == 300
    assert values["interventions_kept"] == 300 // 5  # flagged rows reach the demo buffer through the WAL too


def test_a_huge_reward_is_dropped_and_training_and_restarts_go_on(held_scenario) -> None:
    values = held_scenario("learner_huge_reward").values
    assert values["dropped"] == 1 and values["updates"] >= 100
    assert values["exit"] == values["restart_exit"] == 0


def test_random_bytes_in_run_json_are_refused_naming_the_file(held_scenario) -> None:
    values = held_scenario("learner_run_json_garbage").values
    assert values["exit"] == 2 and values["named"] == 1


@pytest.mark.slow
def test_a_damaged_oldest_chunk_costs_only_its_rows_across_a_restart(held_scenario) -> None:
    values = held_scenario("learner_damaged_oldest_chunk").values
    # The oldest chunk holds the rows of the first checkpoint period (timing decides how many).
    assert 0 < values["lost"] == values["damaged_rows"] <= 100
    assert values["recovered"] == 300 - values["lost"]


@pytest.mark.slow
def test_a_truncated_newest_manifest_falls_back_without_losing_or_duplicating_rows(held_scenario) -> None:
    values = held_scenario("learner_truncated_state").values
    assert values["rows"] == values["env_steps"] == 200


@pytest.mark.slow
def test_a_diverged_update_is_rolled_back_in_the_running_node(held_scenario) -> None:
    values = held_scenario("learner_diverged_update_rollback").values
    assert values["rollbacks"] >= 1 and values["restart_exit"] == 0


@pytest.mark.slow
def test_a_deleted_run_json_is_recovered_from_the_checkpoint(held_scenario) -> None:
    values = held_scenario("learner_run_json_deleted").values
    assert values["recovered"] == values["identical"] == 1


def test_every_learner_scenario_has_a_test() -> None:
    names = {name for name in load_scenarios() if name.startswith("learner_")}
    tested = {
        "learner_sigkill_with_actor_restart",
        "learner_huge_reward",
        "learner_run_json_garbage",
        "learner_damaged_oldest_chunk",
        "learner_truncated_state",
        "learner_diverged_update_rollback",
        "learner_run_json_deleted",
    }
    assert names == tested and set(SCENARIOS) >= tested


def test_bench_faults_reports_every_scenario_and_a_crash_as_failed(monkeypatch, capsys) -> None:
    import rl_control.faults as faults

    def holds(context: ScenarioContext) -> ScenarioResult:
        assert context.workdir.is_dir() and context.probe.node is not None
        return ScenarioResult("3 of 3 rows", held=True)

    def crashes(context: ScenarioContext) -> ScenarioResult:
        raise RuntimeError("node never started")

    monkeypatch.setattr(faults, "SCENARIO_MODULES", ())
    monkeypatch.setattr(faults, "SCENARIOS", {"a_holds": holds, "b_crashes": crashes})
    summary = faults.bench_faults(json_output=False)
    assert (summary["scenarios"], summary["held"], summary["failed"]) == (2, 1, 1)
    assert summary["results"]["a_holds"]["verdict"] == "held"
    assert summary["results"]["b_crashes"] == {
        "figure": "scenario raised RuntimeError('node never started')",
        "verdict": "FAILED",
        "seconds": summary["results"]["b_crashes"]["seconds"],
    }
    table = capsys.readouterr().out
    assert "a_holds" in table and "3 of 3 rows" in table and "1 of 2 scenarios held" in table
