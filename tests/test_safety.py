"""Unit tests of the ROS-free command safety layer."""

from __future__ import annotations

import numpy as np
import pytest

from rl_control.safety import CommandSafety, StaleWatchdog


def make(interface: str = "effort", mode: str = "hold", max_rate: float = 0.0) -> CommandSafety:
    return CommandSafety(
        [-2.0, -1.0],
        [2.0, 1.0],
        command_interface=interface,
        safe_mode=mode,
        max_rate=max_rate,
        joint_names=("a", "b"),
    )


def test_clips_to_limits_and_counts() -> None:
    safety = make()
    command, accepted = safety.filter(np.array([5.0, -0.5]))
    assert accepted
    np.testing.assert_array_equal(command, [2.0, -0.5])
    assert safety.counters.clipped == 1
    command, _ = safety.filter(np.array([1.0, 0.5]))
    np.testing.assert_array_equal(command, [1.0, 0.5])
    assert safety.counters.clipped == 1


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_command_is_replaced_by_safe_command(bad: float) -> None:
    safety = make("effort")
    command, accepted = safety.filter(np.array([bad, 0.3]))
    assert not accepted
    np.testing.assert_array_equal(command, [0.0, 0.0])
    assert safety.counters.non_finite == 1


def test_hold_position_uses_last_finite_position_and_none_before_any() -> None:
    safety = make("position", "hold")
    assert safety.safe_command() is None
    assert safety.counters.suppressed == 1
    command, accepted = safety.filter(np.array([np.nan, 0.0]))
    assert command is None and not accepted
    np.testing.assert_array_equal(
        safety.safe_command(np.array([0.5, 3.0])), [0.5, 1.0]
    )  # clipped into limits
    # a NaN in one joint keeps that joint's last finite position
    np.testing.assert_array_equal(safety.safe_command(np.array([np.nan, -0.25])), [0.5, -0.25])


def test_zero_mode_and_zero_outside_limits_is_clipped() -> None:
    safety = CommandSafety([0.5], [1.0], command_interface="position", safe_mode="zero")
    np.testing.assert_array_equal(safety.safe_command(np.array([0.7])), [0.5])
    effort_hold = make("effort", "hold")
    np.testing.assert_array_equal(effort_hold.safe_command(np.array([0.3, 0.2])), [0.0, 0.0])


def test_rate_limit_bounds_change_per_second() -> None:
    safety = make("position", max_rate=1.0)
    safety.filter(np.array([0.0, 0.0]))
    command, _ = safety.filter(np.array([1.5, -1.0]), dt=0.1)
    np.testing.assert_allclose(command, [0.1, -0.1])
    assert safety.counters.rate_limited == 1
    command, _ = safety.filter(np.array([0.15, -0.1]), dt=0.1)
    np.testing.assert_allclose(command, [0.15, -0.1])
    assert safety.counters.rate_limited == 1


def test_rejects_bad_shapes_and_limits() -> None:
    with pytest.raises(ValueError, match="expected 2"):
        make().filter(np.zeros(3))
    with pytest.raises(ValueError, match=r"low 1\.0 > high 0\.0"):
        CommandSafety([1.0], [0.0], command_interface="effort")
    with pytest.raises(ValueError, match="safe_command"):
        CommandSafety([0.0], [1.0], command_interface="effort", safe_mode="brake")
    with pytest.raises(ValueError, match="finite"):
        CommandSafety([-np.inf], [1.0], command_interface="effort")
    with pytest.raises(ValueError, match="max_rate"):
        CommandSafety([0.0], [1.0], command_interface="effort", max_rate=-1.0)


def test_returned_arrays_are_copies() -> None:
    safety = make()
    command, _ = safety.filter(np.array([0.1, 0.2]))
    command[0] = 99.0
    np.testing.assert_array_equal(safety.last_command, [0.1, 0.2])


def test_stale_watchdog() -> None:
    now = [0.0]
    watchdog = StaleWatchdog(0.1, clock=lambda: now[0])
    assert watchdog.stale()  # never fed
    watchdog.feed()
    now[0] = 0.05
    assert not watchdog.stale()
    now[0] = 0.2
    assert watchdog.stale()
    assert watchdog.stale_events == 1
    assert watchdog.age() == pytest.approx(0.2)
    watchdog.feed(0.19)
    assert not watchdog.stale()
    with pytest.raises(ValueError, match="state_timeout_s"):
        StaleWatchdog(0.0)
