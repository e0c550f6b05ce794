"""Actor faults across real processes: hostile joint states, stale state, a SIGKILLed actor in front of a
realtime sim_node, and a ``--no-sim`` deploy graph that must never call a simulator service."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("rclpy")

from rl_control.faults import SCENARIO_MODULES, load_scenarios

pytestmark = [pytest.mark.ros, pytest.mark.usefixtures("ros_domain")]


def test_hostile_joint_states_give_no_unsafe_command(held_scenario) -> None:
    values = held_scenario("actor_hostile_joint_states").values
    assert values["bad_commands"] == 0 and values["commands"] >= 750
    assert values["state_errors"] > 0 and values["invalid_state_ticks"] > 0 and values["policy_ticks"] > 0


@pytest.mark.slow
def test_a_silent_robot_gets_the_safe_command_within_the_timeout(held_scenario) -> None:
    values = held_scenario("actor_stale_state").values
    assert values["max_periods"] <= values["timeout_periods"] + 2 and values["stale_events"] >= 3


@pytest.mark.slow
def test_a_killed_actor_leaves_the_simulator_applying_the_safe_command(held_scenario) -> None:
    values = held_scenario("actor_sigkill_sim_safe_command").values
    assert values["delay_s"] <= values["timeout_s"] + 0.26


@pytest.mark.slow
def test_a_no_sim_deploy_graph_never_calls_the_simulator(held_scenario) -> None:
    values = held_scenario("actor_no_sim_never_calls_simulator").values
    assert values["service_calls"] == 0 and values["episodes"] >= 2 and values["policy_after"] > 0


def test_every_fault_module_is_registered_and_each_of_its_scenarios_has_a_test() -> None:
    modules = {module.rsplit(".", 1)[1] for module in SCENARIO_MODULES}
    assert {"learner", "persistence", "actor", "driver", "config"} <= modules
    tests = "".join(path.read_text() for path in Path(__file__).parent.glob("test_faults_*.py"))
    prefixes = ("actor_", "driver_", "config_", "persistence_")
    ours = [name for name in load_scenarios() if name.startswith(prefixes)]
    assert len(ours) == 11
    untested = [name for name in ours if f'"{name}"' not in tests]
    assert not untested, f"fault scenarios without a test: {untested}"
