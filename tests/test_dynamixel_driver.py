"""The driver bus logic (no ROS) against the emulator: start-up errors, the cycle, faults, safe behaviour."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from rl_control.config import load_experiment
from rl_control.drivers.dynamixel import control_table as ct
from rl_control.drivers.dynamixel.driver import (
    BusSettings,
    DriverLoop,
    DriverStartupError,
    DynamixelBus,
    JointReading,
    servos_from_config,
)
from rl_control.drivers.dynamixel.emulator import REALITY_GAPS, PtyServer, ServoBus, setup_from_config
from rl_control.envs.robot_model import robot_spec
from rl_control.paths import config_path

RATE_HZ = 100.0


@pytest.fixture(scope="module")
def arm_config():
    return load_experiment(config_path("arm_dynamixel.yaml"))


@pytest.fixture
def emulator(arm_config) -> Iterator[PtyServer]:
    setup = setup_from_config(arm_config, reality_gap="none")
    with PtyServer(setup.build()).start() as server:
        yield server


def wait_for(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def make_bus(arm_config, port: str, **settings) -> DynamixelBus:
    bus_settings = BusSettings(**{"port": port, "state_rate_hz": RATE_HZ, "bus_watchdog_ms": 0, **settings})
    spec = robot_spec("arm")  # position limits from the joint range, as driver_node does
    return DynamixelBus(
        bus_settings, servos_from_config(arm_config.driver_node, spec.joint_low, spec.joint_high)
    )


def started(arm_config, emulator: PtyServer, **settings) -> DynamixelBus:
    bus = make_bus(arm_config, emulator.path, **settings)
    bus.open()
    bus.check_servos()
    bus.configure()
    return bus


@contextmanager
def running(
    arm_config, emulator: PtyServer, **settings
) -> Iterator[tuple[DynamixelBus, DriverLoop, list[JointReading]]]:
    """A started bus with torque on and its loop running and enabled; readings collected; closed after."""
    bus = started(arm_config, emulator, **settings)
    readings: list[JointReading] = []
    loop = DriverLoop(bus, readings.append)
    bus.set_torque(True)
    loop.enable(True)
    loop.start()
    try:
        yield bus, loop, readings
    finally:
        loop.stop()
        bus.close()


def test_missing_port_names_it_with_the_usual_fixes(arm_config, tmp_path: Path) -> None:
    bus = make_bus(arm_config, str(tmp_path / "ttyUSB7"))
    with pytest.raises(DriverStartupError) as error:
        bus.open()
    message = str(error.value)
    assert str(tmp_path / "ttyUSB7") in message
    assert "dialout" in message and "latency_timer" in message and "udev" in message


def test_missing_ids_and_wrong_models_are_named(arm_config) -> None:
    setup = setup_from_config(arm_config, reality_gap="none")
    setup.faults[4].silent = True  # servo 4 does not answer (unpowered, wrong id, broken cable)
    wrong = setup.servos[1]
    setup.servos[1] = type(wrong)(wrong.servo_id, ct.MODELS["XH430-W350"], wrong.joint, wrong.calibration)
    with PtyServer(setup.build()).start() as server:
        bus = make_bus(arm_config, server.path)
        bus.open()
        with pytest.raises(DriverStartupError) as error:
            bus.check_servos()
        bus.close()
    message = str(error.value)
    assert "servo ids [4] do not answer" in message
    assert "id 2 is a XH430-W350, configured as XM430-W350" in message


def test_configure_writes_modes_limits_and_return_delay(arm_config, emulator: PtyServer) -> None:
    bus = started(arm_config, emulator)
    firmware = emulator.bus.servos
    assert [firmware[i].value(ct.OPERATING_MODE) for i in (1, 2, 3, 4)] == [3, 5, 5, 3]
    assert firmware[2].value(ct.CURRENT_LIMIT) == round(2.0 / ct.MODELS["XM430-W350"].current_unit_a)
    assert all(firmware[i].value(ct.RETURN_DELAY_TIME) == 0 for i in (1, 2, 3, 4))
    # The shoulder's joint range (-1.6, 1.6) rad as servo position limits.
    assert firmware[2].value(ct.MIN_POSITION_LIMIT) == 2048 - round(1.6 / ct.RAD_PER_TICK)
    assert firmware[2].value(ct.MAX_POSITION_LIMIT) == 2048 + round(1.6 / ct.RAD_PER_TICK)
    assert not any(firmware[i].torque_on for i in (1, 2, 3, 4))
    bus.set_torque(True)  # RAM settings at torque on: goal current of current-based position mode
    assert firmware[2].value(ct.GOAL_CURRENT) == firmware[2].value(ct.CURRENT_LIMIT)
    assert all(firmware[i].torque_on for i in (1, 2, 3, 4))
    bus.close()


def test_cycle_reads_si_units_and_commands_move_the_arm(arm_config, emulator: PtyServer) -> None:
    with running(arm_config, emulator) as (bus, loop, readings):
        time.sleep(0.5)
        assert len(readings) > 0.5 * RATE_HZ * 0.5, f"{len(readings)} readings in 0.5 s at {RATE_HZ} Hz"
        truth = emulator.bus.joint_positions()
        np.testing.assert_allclose(readings[-1].position, list(truth.values()), atol=0.01)
        target = readings[-1].position.copy()
        target[0] += 0.4  # base yaw
        target[3] = 0.3  # wrist
        loop.set_command(target)
        time.sleep(1.5)
        np.testing.assert_allclose(readings[-1].position[[0, 3]], target[[0, 3]], atol=0.05)
        assert bus.counters.write_failures == 0 and bus.counters.command_latencies_s
    assert not any(f.torque_on for f in emulator.bus.servos.values()), "close() turns the torque off"


def test_move_home_reports_a_joint_that_stops_short_and_its_tolerance_decides(
    arm_config, emulator: PtyServer
) -> None:
    """The episode reset without a simulator: back home at a limited speed, checked against the tolerance."""
    with running(arm_config, emulator) as (bus, loop, readings):
        position_mode = np.ones(4, dtype=bool)
        assert wait_for(lambda: len(readings) > 5, 2.0)
        home = readings[-1].position.copy()
        away = home.copy()
        away[[0, 3]] += 0.4
        loop.set_command(away)
        assert wait_for(lambda: abs(readings[-1].position[0] - away[0]) < 0.05, 3.0)
        assert loop.move_home(home, position_mode, speed_rad_s=2.0, tolerance_rad=0.05) == ""
        np.testing.assert_allclose(readings[-1].position[[0, 3]], home[[0, 3]], atol=0.05)

        beyond = home.copy()  # a home pose past the base's limit: the servo stops 0.3 rad short of it
        beyond[0] = bus.servos[0].position_max_rad + 0.3
        problem = loop.move_home(beyond, position_mode, speed_rad_s=2.0, tolerance_rad=0.1)
        assert problem.startswith("home pose not reached: 0.3") and "tolerance 0.1 rad" in problem, problem
        assert loop.move_home(beyond, position_mode, speed_rad_s=2.0, tolerance_rad=0.4) == ""


def test_the_bus_thread_runs_at_the_configured_realtime_priority(
    arm_config, emulator: PtyServer, realtime_scheduling
) -> None:
    with running(arm_config, emulator, realtime_priority=50) as (_, loop, readings):
        assert wait_for(lambda: len(readings) >= 5, 2.0)
        assert realtime_scheduling(loop._thread) == 50


@pytest.mark.usefixtures("refused_realtime_scheduling")
def test_a_refused_realtime_priority_is_logged_and_the_bus_still_cycles(
    arm_config, emulator: PtyServer, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.WARNING),
        running(arm_config, emulator, realtime_priority=50) as (_, _, readings),
    ):
        assert wait_for(lambda: len(readings) >= 5, 2.0)
    assert "cannot set SCHED_FIFO priority 50" in caplog.text and "normal priority" in caplog.text


def test_command_timeout_holds_the_measured_position(arm_config, emulator: PtyServer) -> None:
    with running(arm_config, emulator, command_timeout_s=0.2) as (_, loop, readings):
        time.sleep(0.3)
        start = readings[-1].position.copy()
        goal = start.copy()
        goal[0] += 1.5
        loop.set_command(goal)  # one command, then silence: the base is on its way when it times out
        time.sleep(0.8)
        assert loop.timed_out
        held = readings[-1].position[0]
        assert start[0] + 0.05 < held < goal[0] - 0.05, "stopped on the way, not at the goal"
        time.sleep(0.5)
        assert readings[-1].position[0] == pytest.approx(held, abs=0.03)
        loop.set_command(start)  # a new command is obeyed again (re-sent within the 0.2 s timeout)
        for _ in range(10):
            time.sleep(0.1)
            assert not loop.timed_out
            loop.set_command(start)
        assert readings[-1].position[0] < (held + start[0]) / 2, "the base did not head back to the new goal"


def test_silent_servo_fault_state_safe_behaviour_and_recovery(arm_config, emulator: PtyServer) -> None:
    with running(arm_config, emulator, failures_before_error=3, retries=1) as (bus, loop, readings):
        time.sleep(0.3)
        emulator.bus.set_fault(3, "silent", True)
        assert wait_for(lambda: loop.in_fault, 3.0), (
            "3 failed cycles in a row put the loop in its fault state"
        )
        assert bus.counters.read_failures >= 3 and loop.fatal_error is None
        assert loop.bus.counters.consecutive_failures >= 3
        bus.read_hardware_errors()
        assert not bus.health[3].responding and bus.health[1].responding
        emulator.bus.set_fault(3, "silent", False)
        count = len(readings)
        assert wait_for(lambda: not loop.in_fault and len(readings) > count, 3.0), (
            "reads recover by themselves"
        )


def test_overload_is_decoded_and_reboot_clears_it(arm_config, emulator: PtyServer) -> None:
    bus = started(arm_config, emulator)
    bus.set_torque(True)
    emulator.bus.set_fault(2, "hardware_error", 1 << ct.OVERLOAD_BIT)
    time.sleep(0.05)
    bus.read_hardware_errors()
    assert ct.decode_hardware_error(bus.health[2].hardware_error) == ["overload"]
    assert not bus.health[2].torque_on and not emulator.bus.servos[2].torque_on
    assert bus.reboot(2) == ""
    bus.read_hardware_errors()
    assert bus.health[2].hardware_error == 0
    assert "not on this bus" in bus.reboot(9)
    bus.close()


def test_a_fired_bus_watchdog_is_counted_and_rearmed(arm_config, emulator: PtyServer) -> None:
    bus = started(arm_config, emulator, bus_watchdog_ms=100)
    bus.set_torque(True)
    assert emulator.bus.servos[1].value(ct.BUS_WATCHDOG) == 5
    time.sleep(0.4)  # the host stalls: no instruction for 400 ms
    assert emulator.bus.servos[1].watchdog_tripped
    bus.read_hardware_errors()
    assert [bus.health[i].watchdog_trips for i in (1, 2, 3, 4)] == [1, 1, 1, 1]
    assert emulator.bus.servos[1].value(ct.BUS_WATCHDOG) == 5 and not emulator.bus.servos[1].watchdog_tripped
    bus.close()


def test_corrupt_replies_are_retried_within_the_cycle(arm_config) -> None:
    setup = setup_from_config(arm_config, reality_gap="none")
    bus_emulator: ServoBus = setup.build()
    with PtyServer(bus_emulator).start() as server:
        bus = started(arm_config, server, retries=3)
        bus_emulator.set_fault(1, "corrupt_crc_probability", 0.3)
        ok = sum(bus.read_state(time.monotonic() + 0.05) is not None for _ in range(30))
        bus.close()
    assert bus.counters.retries > 0
    assert ok >= 27, f"only {ok}/30 cycles read a state with 30% corrupt replies and 3 retries"


def test_reality_gap_presets_exist() -> None:
    assert set(REALITY_GAPS) == {"none", "default", "harsh"}
    assert REALITY_GAPS["default"].link_mass_scale > 1.0 and REALITY_GAPS["none"].backlash_rad == 0.0


@pytest.mark.parametrize(
    ("change", "key", "message"),
    [
        ({"servo_joints": ["base_yaw", "shoulder"]}, "servo_joints", "one entry per servo id (4), got 2"),
        ({"servo_ids": [1, 2, 2, 4]}, "servo_ids", "duplicate servo ids"),
        ({"models": ["XM430-W350"] * 3 + ["XM999"]}, "models", "'XM999' is not one of"),
        ({"directions": [1, 1, 1]}, "directions", "one entry per servo id (4) or none, got 3"),
        ({"directions": [1, 1, 0, 1]}, "directions", "0 is not one of"),
        ({"baud_rate": 1234}, "baud_rate", "1234 is not one of"),
        ({"position_min_rad": [0.0] * 4, "position_max_rad": [0.0] * 4}, "position_min_rad", "below"),
    ],
)
def test_driver_section_errors_name_the_key(tmp_path: Path, change: dict, key: str, message: str) -> None:
    import yaml

    from rl_control.config import ConfigError

    document = yaml.safe_load(config_path("arm_dynamixel.yaml").read_text())
    document["driver_node"]["ros__parameters"].update(change)
    path = tmp_path / "robot.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(ConfigError) as error:
        load_experiment(path)
    text = str(error.value)
    assert "driver_node" in text and key in text and message in text, text
