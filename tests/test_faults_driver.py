"""Driver faults across real processes: driver_node against the servo-bus emulator (dropped and corrupted
replies, a silent servo, a SIGKILLed driver stopped by the servos' bus watchdog)."""

from __future__ import annotations

import pytest

pytest.importorskip("rclpy")

pytestmark = [pytest.mark.ros, pytest.mark.slow, pytest.mark.usefixtures("ros_domain")]


def test_dropped_and_corrupted_replies_are_retried_and_counted(held_scenario) -> None:
    values = held_scenario("driver_dropped_and_corrupt_replies").values
    assert values["retries"] > 0 and values["alive"] == 1
    assert values["faulty_rate"] > 0.5 * values["nominal_rate"]


def test_a_silent_servo_is_an_error_naming_it_and_the_bus_holds(held_scenario) -> None:
    values = held_scenario("driver_silent_servo").values
    assert values["drift_rad"] < 0.05 and values["alive"] == 1


def test_a_killed_driver_is_stopped_by_the_bus_watchdog(held_scenario) -> None:
    values = held_scenario("driver_sigkill_bus_watchdog").values
    assert values["trip_by_ms"] <= values["watchdog_ms"] + 200 and values["tripped"] >= 3
