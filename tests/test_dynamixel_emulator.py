"""The servo-bus emulator against ROBOTIS's own dynamixel_sdk (unmodified) over a pseudo-terminal (no ROS)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator

import dynamixel_sdk as sdk
import numpy as np
import pytest

from rl_control.drivers.dynamixel import control_table as ct
from rl_control.drivers.dynamixel.emulator import (
    REALITY_GAPS,
    EmulatedServo,
    PtyServer,
    ServoBus,
)
from rl_control.drivers.dynamixel.protocol import PacketParser, crc16, status_packet, stuff, unstuff

JOINTS = ("base_yaw", "shoulder", "elbow", "wrist")
XM430 = ct.MODELS["XM430-W350"]
XL330 = ct.MODELS["XL330-M288"]


def arm_servos() -> list[EmulatedServo]:
    models = (XM430, XM430, XM430, XL330)
    return [
        EmulatedServo(index + 1, model, joint, ct.JointCalibration(model))
        for index, (model, joint) in enumerate(zip(models, JOINTS, strict=True))
    ]


class PatientPacketHandler:
    """The SDK's PacketHandler, retrying a request whose reply timed out (a loaded machine stalls the
    emulator's thread for longer than the SDK's ~34 ms timeout); any other outcome is returned as is."""

    def __init__(self) -> None:
        self._handler = sdk.PacketHandler(2.0)

    def __getattr__(self, name: str):
        method = getattr(self._handler, name)
        if not name.endswith("TxRx") and name not in ("ping", "reboot"):
            return method

        def call(*args):
            for _ in range(3):
                outcome = method(*args)
                codes = outcome if isinstance(outcome, tuple) else (outcome,)
                if sdk.COMM_RX_TIMEOUT not in codes:
                    break
            return outcome

        return call


@pytest.fixture
def bus() -> ServoBus:
    return ServoBus("arm", arm_servos(), gap=REALITY_GAPS["none"])


@pytest.fixture
def sdk_port(bus: ServoBus) -> Iterator[tuple]:
    """(PortHandler, PacketHandler) of the unmodified SDK, opened on the emulator's pseudo-terminal.

    The SDK polls the port in a busy loop; the emulator's thread in this process must still get the GIL
    quickly (a real servo has its own CPU), hence the short thread switch interval."""
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(0.0002)
    with PtyServer(bus).start() as server:
        port = sdk.PortHandler(server.path)
        assert port.openPort() and port.setBaudRate(1_000_000)
        yield port, PatientPacketHandler()
        port.closePort()
    sys.setswitchinterval(switch_interval)


def test_crc_and_stuffing_agree_with_the_sdk() -> None:
    handler = sdk.PacketHandler(2.0)
    rng = np.random.default_rng(0)
    for size in (1, 7, 64, 300):
        data = bytes(rng.integers(0, 256, size, dtype=np.uint8))
        assert crc16(data) == handler.updateCRC(0, list(data), size)
    payload = bytes((0x02, 0xFF, 0xFF, 0xFD, 0x10, 0xFF, 0xFF, 0xFD))
    assert stuff(payload) == bytes((0x02, 0xFF, 0xFF, 0xFD, 0xFD, 0x10, 0xFF, 0xFF, 0xFD, 0xFD))
    assert unstuff(stuff(payload)) == payload
    # A status packet whose parameters need stuffing is read back by the SDK's own unstuffing.
    packet = list(status_packet(3, 0, bytes((0xFF, 0xFF, 0xFD, 0x01))))
    assert handler.updateCRC(0, packet, len(packet) - 2) == packet[-2] | (packet[-1] << 8)
    assert handler.removeStuffing(packet)[9:13] == [0xFF, 0xFF, 0xFD, 0x01]


def test_parser_drops_corrupt_packets_and_resynchronizes() -> None:
    parser = PacketParser()
    good = bytearray(status_packet(1, 0, b"\x01\x02"))
    good[7] = 0x02  # any instruction: the parser only frames
    crc = crc16(bytes(good[:-2]))
    good[-2:] = bytes((crc & 0xFF, crc >> 8))
    bad = bytearray(good)
    bad[-1] ^= 0xFF
    packets = parser.feed(b"\x00\x13" + bytes(bad) + bytes(good[:5]))
    assert packets == [] and parser.crc_errors == 1
    packets = parser.feed(bytes(good[5:]))
    assert [(p.servo_id, p.instruction, p.params) for p in packets] == [(1, 0x02, b"\x00\x01\x02")]


def test_ping_read_write_and_eeprom_protection(sdk_port) -> None:
    port, handler = sdk_port
    assert handler.ping(port, 1) == (XM430.model_number, sdk.COMM_SUCCESS, 0)
    assert handler.ping(port, 4)[0] == XL330.model_number
    assert handler.ping(port, 9)[1] == sdk.COMM_RX_TIMEOUT  # no such servo
    assert handler.read1ByteTxRx(port, 2, ct.OPERATING_MODE[0]) == (ct.MODE_POSITION, sdk.COMM_SUCCESS, 0)
    assert handler.write1ByteTxRx(port, 2, ct.OPERATING_MODE[0], ct.MODE_CURRENT_BASED_POSITION) == (0, 0)
    assert handler.write2ByteTxRx(port, 2, ct.CURRENT_LIMIT[0], 700) == (0, 0)
    assert handler.read2ByteTxRx(port, 2, ct.CURRENT_LIMIT[0])[0] == 700
    assert handler.write1ByteTxRx(port, 2, ct.TORQUE_ENABLE[0], 1) == (0, 0)
    # EEPROM is locked while the torque is on: access error, value unchanged.
    result, error = handler.write1ByteTxRx(port, 2, ct.OPERATING_MODE[0], ct.MODE_CURRENT)
    assert result == sdk.COMM_SUCCESS and error == 7
    assert "not available to target address" in handler.getRxPacketError(error)
    assert handler.read1ByteTxRx(port, 2, ct.OPERATING_MODE[0])[0] == ct.MODE_CURRENT_BASED_POSITION
    # Goals outside the position limits: data limit error.
    assert handler.write4ByteTxRx(port, 3, ct.MAX_POSITION_LIMIT[0], 3000) == (0, 0)
    assert handler.write4ByteTxRx(port, 3, ct.GOAL_POSITION[0], 3500) == (0, 6)
    # Present values are read only.
    assert handler.write4ByteTxRx(port, 2, ct.PRESENT_POSITION[0], 0)[1] == 7


def test_sync_read_write_and_bulk_read_move_the_arm(sdk_port, bus: ServoBus) -> None:
    port, handler = sdk_port
    state = sdk.GroupSyncRead(port, handler, *ct.STATE_BLOCK)
    for servo_id in range(1, 5):
        assert state.addParam(servo_id)
    before = bus.joint_positions()  # torque off: the arm sags under gravity meanwhile
    assert state.txRxPacket() == sdk.COMM_SUCCESS
    truth = bus.joint_positions()
    start = {i: ct.signed(state.getData(i, *ct.PRESENT_POSITION), 4) for i in range(1, 5)}
    for servo_id, joint in zip(range(1, 5), JOINTS, strict=True):
        measured = ct.JointCalibration(XM430).position_rad(start[servo_id])
        low, high = sorted((before[joint], truth[joint]))
        assert low - 0.002 <= measured <= high + 0.002, (joint, measured, low, high)

    # Torque on the base (no gravity on the yaw axis) and a 0.5 rad step with one sync write.
    assert handler.write1ByteTxRx(port, 1, ct.TORQUE_ENABLE[0], 1) == (0, 0)
    goal = start[1] + round(0.5 / ct.RAD_PER_TICK)
    writer = sdk.GroupSyncWrite(port, handler, *ct.GOAL_POSITION)
    assert writer.addParam(1, ct.to_le_bytes(goal, 4))
    assert writer.txPacket() == sdk.COMM_SUCCESS
    time.sleep(1.0)
    assert state.txRxPacket() == sdk.COMM_SUCCESS
    assert abs(ct.signed(state.getData(1, *ct.PRESENT_POSITION), 4) - goal) < 15  # P-only: a few ticks short
    assert bus.joint_positions()["base_yaw"] == pytest.approx(truth["base_yaw"] + 0.5, abs=0.03)

    # Bulk read: different addresses and lengths per servo in one instruction.
    bulk = sdk.GroupBulkRead(port, handler)
    assert bulk.addParam(1, *ct.GOAL_POSITION) and bulk.addParam(3, *ct.MODEL_NUMBER)
    assert bulk.addParam(4, *ct.PRESENT_TEMPERATURE)
    assert bulk.txRxPacket() == sdk.COMM_SUCCESS
    assert bulk.getData(1, *ct.GOAL_POSITION) == goal
    assert bulk.getData(3, *ct.MODEL_NUMBER) == XM430.model_number
    assert 20 <= bulk.getData(4, *ct.PRESENT_TEMPERATURE) <= 80


def test_corrupted_crc_and_silent_servo_are_detected_by_the_sdk(sdk_port, bus: ServoBus) -> None:
    port, handler = sdk_port
    bus.set_fault(2, "corrupt_crc_probability", 1.0)
    assert handler.ping(port, 2)[1] == sdk.COMM_RX_CORRUPT
    assert handler.ping(port, 1)[1] == sdk.COMM_SUCCESS  # the others are fine
    bus.set_fault(2, "corrupt_crc_probability", 0.0)
    bus.set_fault(3, "silent", True)
    group = sdk.GroupSyncRead(port, handler, *ct.STATE_BLOCK)
    for servo_id in range(1, 5):
        group.addParam(servo_id)
    assert group.txRxPacket() == sdk.COMM_RX_TIMEOUT
    bus.set_fault(3, "silent", False)
    assert group.txRxPacket() == sdk.COMM_SUCCESS
    with pytest.raises(ValueError, match="no servo with id 9"):
        bus.set_fault(9, "silent", True)
    with pytest.raises(ValueError, match="unknown fault"):
        bus.set_fault(1, "gremlins", True)


def test_overload_shuts_the_torque_off_until_reboot(sdk_port, bus: ServoBus) -> None:
    port, handler = sdk_port
    assert handler.write1ByteTxRx(port, 2, ct.TORQUE_ENABLE[0], 1) == (0, 0)
    bus.set_fault(2, "hardware_error", 1 << ct.OVERLOAD_BIT)
    time.sleep(0.05)
    value, result, error = handler.read1ByteTxRx(port, 2, ct.HARDWARE_ERROR_STATUS[0])
    assert result == sdk.COMM_SUCCESS and value == 1 << ct.OVERLOAD_BIT
    assert error & ct.ALERT_BIT  # the status packet's hardware alert flag
    assert ct.decode_hardware_error(value) == ["overload"]
    assert handler.read1ByteTxRx(port, 2, ct.TORQUE_ENABLE[0])[0] == 0  # Shutdown register: torque off
    assert handler.write1ByteTxRx(port, 2, ct.TORQUE_ENABLE[0], 1)[1] & 0x7F  # refused until reboot
    assert handler.reboot(port, 2) == (sdk.COMM_SUCCESS, 0)
    assert handler.read1ByteTxRx(port, 2, ct.HARDWARE_ERROR_STATUS[0])[:2] == (0, sdk.COMM_SUCCESS)
    assert handler.write1ByteTxRx(port, 2, ct.TORQUE_ENABLE[0], 1) == (0, 0)


def test_bus_watchdog_stops_the_servo_and_holds_position(sdk_port, bus: ServoBus) -> None:
    port, handler = sdk_port
    assert handler.write1ByteTxRx(port, 1, ct.TORQUE_ENABLE[0], 1) == (0, 0)
    assert handler.write1ByteTxRx(port, 1, ct.BUS_WATCHDOG[0], 5) == (0, 0)  # 100 ms
    start = handler.read4ByteTxRx(port, 1, ct.PRESENT_POSITION[0])[0]
    goal = start + round(1.5 / ct.RAD_PER_TICK)
    assert handler.write4ByteTxRx(port, 1, ct.GOAL_POSITION[0], goal) == (0, 0)
    time.sleep(0.5)  # the controller goes quiet while the servo is on its way
    moved = bus.joint_positions()["base_yaw"]
    time.sleep(0.3)
    assert bus.joint_positions()["base_yaw"] == pytest.approx(moved, abs=0.02)  # stopped, holding
    assert abs(bus.joint_velocities()["base_yaw"]) < 0.05
    assert handler.read1ByteTxRx(port, 1, ct.BUS_WATCHDOG[0])[0] == 0xFF  # watchdog error flag
    assert handler.write4ByteTxRx(port, 1, ct.GOAL_POSITION[0], goal)[1] == 7  # goals refused
    assert handler.write1ByteTxRx(port, 1, ct.BUS_WATCHDOG[0], 0) == (0, 0)  # cleared by writing 0
    assert handler.write4ByteTxRx(port, 1, ct.GOAL_POSITION[0], goal) == (0, 0)


def test_reality_gap_changes_the_step_response() -> None:
    """The default gap (heavier links, friction, backlash) gives a measurably different response."""

    def shoulder_after_step(gap: str) -> float:
        bus = ServoBus("arm", arm_servos(), gap=REALITY_GAPS[gap])
        shoulder = bus.servos[2]
        start = shoulder.measured_ticks()
        shoulder.write(ct.GOAL_POSITION[0], bytes(ct.to_le_bytes(start, 4)))
        shoulder.write(ct.TORQUE_ENABLE[0], b"\x01")
        shoulder.write(ct.GOAL_POSITION[0], bytes(ct.to_le_bytes(start - round(0.4 / ct.RAD_PER_TICK), 4)))
        now = time.monotonic()
        for _ in range(300):  # 0.6 s of simulated time, stepped as fast as possible
            bus.step(now)  # the watchdog is off: wall time does not matter
        return bus.joint_positions()["shoulder"]

    nominal, gapped = shoulder_after_step("none"), shoulder_after_step("default")
    assert abs(nominal - gapped) > 0.005


def _ping_through_sdk(server: PtyServer) -> int:
    port = sdk.PortHandler(server.path)
    assert port.openPort() and port.setBaudRate(1_000_000)
    result = PatientPacketHandler().ping(port, 1)[1]
    port.closePort()
    return result


def test_the_bus_thread_runs_at_the_configured_realtime_priority(bus: ServoBus, realtime_scheduling) -> None:
    """The emulator stands for servo hardware, which answers whatever the computer's load."""
    with PtyServer(bus, realtime_priority=60).start() as server:
        assert _ping_through_sdk(server) == sdk.COMM_SUCCESS
        assert realtime_scheduling(server._thread) == 60


@pytest.mark.usefixtures("refused_realtime_scheduling")
def test_a_refused_realtime_priority_is_logged_and_the_bus_still_answers(
    bus: ServoBus, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING), PtyServer(bus, realtime_priority=60).start() as server:
        assert _ping_through_sdk(server) == sdk.COMM_SUCCESS
    assert "cannot set SCHED_FIFO priority 60" in caplog.text
    assert "the emulated servos may answer late" in caplog.text
