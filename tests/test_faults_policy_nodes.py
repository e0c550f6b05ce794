"""Policy-authority faults across real processes: the ``policy_*`` scenarios of ``rl-control bench faults``,
with their figures asserted (a hostile publisher, unsigned / NaN / slow policies, rollback, 50 MB message)."""

from __future__ import annotations

import pytest

pytest.importorskip("rclpy")

from rl_control.faults import SCENARIOS, load_scenarios

pytestmark = [pytest.mark.ros, pytest.mark.usefixtures("ros_domain")]


def test_deploy_mode_ignores_a_hostile_policy(held_scenario) -> None:
    values = held_scenario("policy_deploy_topic_ignored").values
    assert values["policy_subscribers"] == values["from_other_policy"] == 0 and values["commands"] > 50


def test_an_unsigned_policy_is_refused_in_signed_only_mode(held_scenario) -> None:
    values = held_scenario("policy_unsigned_refused").values
    assert 0 <= values["refusal_s"] < 30 and values["commands_after"] > 20
    assert values["from_other_policy"] == 0


@pytest.mark.slow
def test_a_policy_nan_on_real_observations_is_refused(held_scenario) -> None:
    values = held_scenario("policy_nan_on_nonzero_refused").values
    assert 0 <= values["refusal_s"] < 30 and values["from_other_policy"] == 0


@pytest.mark.slow
def test_a_120_ms_policy_is_refused_at_50_hz(held_scenario) -> None:
    values = held_scenario("policy_slow_refused").values
    assert values["policy_call_s"] >= 0.12 and 0 <= values["refusal_s"] < 30


@pytest.mark.slow
def test_rollback_after_k_invalid_ticks(held_scenario) -> None:
    values = held_scenario("policy_rollback_after_invalid_ticks").values
    assert values["safe_commands"] <= 5


@pytest.mark.slow
def test_a_50_mb_message_delays_no_tick_by_more_than_a_period(held_scenario) -> None:
    values = held_scenario("policy_50mb_message").values
    assert values["missed_ticks"] <= values["reference_missed_ticks"]


def test_every_policy_scenario_has_a_test() -> None:
    names = {name for name in load_scenarios() if name.startswith("policy_")}
    tested = {
        "policy_deploy_topic_ignored",
        "policy_unsigned_refused",
        "policy_nan_on_nonzero_refused",
        "policy_slow_refused",
        "policy_rollback_after_invalid_ticks",
        "policy_50mb_message",
    }
    assert names == tested and set(SCENARIOS) >= tested
