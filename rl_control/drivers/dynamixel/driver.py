"""The Dynamixel driver's bus logic (no ROS): start-up checks, bus cycle, retries, faults, safe behaviour.

All bus traffic goes through ROBOTIS's ``dynamixel_sdk`` (PortHandler, PacketHandler, GroupSyncRead,
GroupSyncWrite). One cycle is one sync read of the contiguous block 126..135 (present current, velocity,
position) of every servo and one sync write of the goals (goal position, or goal current in current mode);
the hardware error status (70) is read by a second sync read at a lower rate. A failed read is retried
within the cycle's deadline, counted, and never stops the loop; ``failures_before_error`` consecutive failed
cycles put the driver in the fault state, where it commands the safe behaviour (hold the last measured
position / zero current) until reads succeed again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rl_control.actor.pacing import set_realtime_priority
from rl_control.drivers.dynamixel import control_table as ct

log = logging.getLogger(__name__)

PORT_HINTS = (
    "check that the adapter (U2D2/FTDI) is plugged in and the path is right (ls /dev/serial/by-id/); that "
    "you may open it (sudo usermod -aG dialout $USER, then log in again, or the udev rule in "
    "docs/howto_real_robot.md); and set the FTDI latency_timer to 1 ms "
    "(echo 1 | sudo tee /sys/bus/usb-serial/devices/ttyUSB0/latency_timer)"
)
PING_ATTEMPTS = 3
READ_SHARE_OF_CYCLE = 0.8  # the sync read may use this share of the cycle period, retries included
MIN_ATTEMPT_MS = 2.0  # an attempt waits at least the wire time plus this (USB adapter latency, scheduling)
READ_SLICE_S = 0.001  # LowCpuPortHandler: longest blocking read
LATENCY_SAMPLES = 2000
#: The low-rate status read: Hardware Error Status (70) to Bus Watchdog (98), one sync read.
STATUS_BLOCK = (ct.HARDWARE_ERROR_STATUS[0], ct.BUS_WATCHDOG[0] + 1 - ct.HARDWARE_ERROR_STATUS[0])
WATCHDOG_OFFSET = ct.BUS_WATCHDOG[0] - ct.HARDWARE_ERROR_STATUS[0]
FAULT_LOG_PERIOD_S = 5.0


class DriverStartupError(OSError):
    """The bus or a servo cannot be brought up; the message names the port or the servo ids."""


def low_cpu_port_handler(port: str) -> Any:
    """A ``dynamixel_sdk.PortHandler`` whose reads block up to ``READ_SLICE_S`` instead of returning at once.

    The SDK polls the serial port with a zero timeout while it waits for a status packet: a busy loop that
    takes a whole core, which on a small robot computer starves the other nodes (and, in tests, the
    emulator). With a short read timeout the wait sleeps in the kernel; the protocol is still the SDK's.
    """
    import dynamixel_sdk as sdk

    class LowCpuPortHandler(sdk.PortHandler):
        def setupPort(self, cflag_baud: int) -> bool:  # noqa: N802 - the SDK's name
            opened = bool(super().setupPort(cflag_baud))
            self.ser.timeout = READ_SLICE_S
            return opened

    return LowCpuPortHandler(port)


@dataclass(frozen=True)
class ServoConfig:
    """One servo as the driver uses it."""

    servo_id: int
    joint: str
    model: ct.ServoModel
    mode: int  # control_table.MODE_*
    calibration: ct.JointCalibration
    position_min_rad: float
    position_max_rad: float
    current_limit: int  # Current Limit (38) in the model's units
    position_p_gain: int | None = None

    @property
    def takes_current(self) -> bool:
        return self.mode == ct.MODE_CURRENT


@dataclass(frozen=True)
class BusSettings:
    """Bus-level settings (from the ``driver_node`` config section)."""

    port: str
    baud_rate: int = 1_000_000
    state_rate_hz: float = 200.0
    error_check_rate_hz: float = 5.0
    command_timeout_s: float = 0.5
    return_delay_us: int = 0
    bus_watchdog_ms: int = 100
    retries: int = 2
    failures_before_error: int = 5
    realtime_priority: int = 0  # SCHED_FIFO priority of the DriverLoop thread (0: normal scheduling)


def servos_from_config(
    cfg: Any, joint_low: Sequence[float] | np.ndarray = (), joint_high: Sequence[float] | np.ndarray = ()
) -> list[ServoConfig]:
    """The :class:`ServoConfig` list of a ``DriverNodeConfig``; position limits default to the joint range."""
    count = len(cfg.servo_ids)

    def per_servo(values: Sequence[Any], default: Any) -> list[Any]:
        return list(values) if values else [default] * count

    modes = per_servo(cfg.operating_modes, "position")
    offsets = per_servo(cfg.zero_offsets_rad, 0.0)
    directions = per_servo(cfg.directions, 1)
    ratios = per_servo(cfg.gear_ratios, 1.0)
    lows = list(cfg.position_min_rad) or (list(joint_low) or [-np.pi] * count)
    highs = list(cfg.position_max_rad) or (list(joint_high) or [np.pi] * count)
    gains = per_servo(cfg.position_p_gains, None)
    servos = []
    for index, servo_id in enumerate(cfg.servo_ids):
        model = ct.MODELS[cfg.models[index]]
        limit = (
            round(cfg.current_limits_a[index] / model.current_unit_a)
            if cfg.current_limits_a
            else model.default_current_limit
        )
        servos.append(
            ServoConfig(
                servo_id=servo_id,
                joint=cfg.servo_joints[index],
                model=model,
                mode=ct.OPERATING_MODES[modes[index]],
                calibration=ct.JointCalibration(model, offsets[index], directions[index], ratios[index]),
                position_min_rad=float(lows[index]),
                position_max_rad=float(highs[index]),
                current_limit=limit,
                position_p_gain=gains[index],
            )
        )
    return servos


def settings_from_config(cfg: Any) -> BusSettings:
    """The :class:`BusSettings` of a ``DriverNodeConfig``."""
    return BusSettings(
        port=cfg.port,
        baud_rate=cfg.baud_rate,
        state_rate_hz=cfg.state_rate_hz,
        error_check_rate_hz=cfg.error_check_rate_hz,
        command_timeout_s=cfg.command_timeout_s,
        return_delay_us=cfg.return_delay_us,
        bus_watchdog_ms=cfg.bus_watchdog_ms,
        retries=cfg.retries,
        failures_before_error=cfg.failures_before_error,
        realtime_priority=cfg.realtime_priority,
    )


@dataclass
class JointReading:
    """One sync read converted to SI units, in servo order."""

    position: np.ndarray  # rad
    velocity: np.ndarray  # rad/s
    effort: np.ndarray  # N m
    read_latency_s: float
    time_s: float  # monotonic time of the reply


@dataclass
class ServoHealth:
    """What the driver knows about one servo's condition."""

    hardware_error: int = 0
    responding: bool = True
    torque_on: bool = False
    watchdog_trips: int = 0  # times the servo's Bus Watchdog fired (the driver re-arms it)


@dataclass
class BusCounters:
    """Failure and traffic counters of the bus (for diagnostics and the benchmark)."""

    cycles: int = 0
    read_failures: int = 0
    write_failures: int = 0
    retries: int = 0
    consecutive_failures: int = 0
    last_error: str = ""
    #: recent sync read durations (request to last reply, retries included)
    read_latencies_s: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    #: recent command latencies: command received (set_command) to its sync write sent
    command_latencies_s: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))

    def p99_ms(self, samples: deque[float]) -> float:
        """99th percentile of recent latency samples in ms (NaN before the first sample)."""
        return float(np.percentile(np.asarray(samples), 99) * 1e3) if samples else float("nan")


class DynamixelBus:
    """The servos on one port, through ``dynamixel_sdk``. Thread-safe (one lock around every transaction)."""

    def __init__(self, settings: BusSettings, servos: Sequence[ServoConfig]) -> None:
        import dynamixel_sdk as sdk

        if not servos:
            raise DriverStartupError("no servos configured (driver_node.servo_ids is empty)")
        self.sdk = sdk
        self.settings = settings
        self.servos = list(servos)
        self.ids = [servo.servo_id for servo in servos]
        self.port = low_cpu_port_handler(settings.port)
        self.packet = sdk.PacketHandler(2.0)
        self.lock = threading.RLock()
        self.counters = BusCounters()
        self.health = {servo.servo_id: ServoHealth() for servo in servos}
        self._state_read = sdk.GroupSyncRead(self.port, self.packet, *ct.STATE_BLOCK)
        self._error_read = sdk.GroupSyncRead(self.port, self.packet, *STATUS_BLOCK)
        for servo_id in self.ids:
            self._state_read.addParam(servo_id)
            self._error_read.addParam(servo_id)
        self._position_write = sdk.GroupSyncWrite(self.port, self.packet, *ct.GOAL_POSITION)
        self._current_write = sdk.GroupSyncWrite(self.port, self.packet, *ct.GOAL_CURRENT)
        self.is_open = False
        reply_bytes = (11 + ct.STATE_BLOCK[1]) * len(self.ids)
        self._min_attempt_ms = reply_bytes * 10_000.0 / settings.baud_rate + MIN_ATTEMPT_MS

    def _complete(self, group: Any, length: int) -> bool:
        """Whether every servo's data in a sync read group has the requested length."""
        return all(len(group.data_dict[servo_id]) == length for servo_id in self.ids)

    # --- start-up --------------------------------------------------------------------------------
    def open(self) -> None:
        """Open the port at the configured baud rate (DriverStartupError naming the port and the fixes)."""
        port = self.settings.port
        try:
            opened = self.port.openPort() and self.port.setBaudRate(self.settings.baud_rate)
        except Exception as exc:  # pyserial raises SerialException (an OSError) with errno details
            raise DriverStartupError(f"cannot open serial port {port}: {exc}; {PORT_HINTS}") from None
        if not opened:
            raise DriverStartupError(
                f"cannot open serial port {port} at {self.settings.baud_rate} baud; {PORT_HINTS}"
            )
        self.is_open = True

    def check_servos(self) -> None:
        """Ping every id and compare model numbers (DriverStartupError naming missing ids / wrong models)."""
        missing, wrong = [], []
        for servo in self.servos:
            model_number = self._ping(servo.servo_id)
            if model_number is None:
                missing.append(servo.servo_id)
            elif model_number != servo.model.model_number:
                found = ct.MODELS_BY_NUMBER.get(model_number)
                wrong.append(
                    f"id {servo.servo_id} is a {found.name if found else f'model number {model_number}'}, "
                    f"configured as {servo.model.name}"
                )
        problems = []
        if missing:
            problems.append(
                f"servo ids {missing} do not answer on {self.settings.port} at {self.settings.baud_rate} "
                f"baud (found {sorted(set(self.ids) - set(missing))}); check the ids, the baud rate, power "
                "and cabling"
            )
        if wrong:
            problems.append("model mismatch: " + "; ".join(wrong))
        if problems:
            raise DriverStartupError("; ".join(problems))

    def _ping(self, servo_id: int) -> int | None:
        with self.lock:
            for _ in range(PING_ATTEMPTS):
                model_number, result, _error = self.packet.ping(self.port, servo_id)
                if result == self.sdk.COMM_SUCCESS:
                    return int(model_number)
        return None

    def configure(self) -> None:
        """Torque off, then write operating mode, limits and return delay (EEPROM). RAM settings (gains,
        goal current) are written at each torque on: a reboot resets them."""
        self.set_torque(False)
        for servo in self.servos:
            low, high = sorted(
                (
                    servo.calibration.position_ticks(servo.position_min_rad),
                    servo.calibration.position_ticks(servo.position_max_rad),
                )
            )
            self._write(servo.servo_id, ct.OPERATING_MODE, servo.mode)
            self._write(servo.servo_id, ct.RETURN_DELAY_TIME, self.settings.return_delay_us // 2)
            self._write(servo.servo_id, ct.CURRENT_LIMIT, servo.current_limit)
            self._write(servo.servo_id, ct.MIN_POSITION_LIMIT, max(0, low))
            self._write(servo.servo_id, ct.MAX_POSITION_LIMIT, min(ct.TICKS_PER_REV - 1, high))
            self._write(servo.servo_id, ct.BUS_WATCHDOG, 0)  # also clears a tripped watchdog

    def _write(self, servo_id: int, entry: tuple[int, int], value: int) -> None:
        """One acknowledged write, retried; DriverStartupError naming the servo and register on failure."""
        address, size = entry
        writer = {
            1: self.packet.write1ByteTxRx,
            2: self.packet.write2ByteTxRx,
            4: self.packet.write4ByteTxRx,
        }[size]
        data = ct.unsigned(int(value), size)
        detail = ""
        with self.lock:
            for _ in range(1 + self.settings.retries):
                result, error = writer(self.port, servo_id, address, data)
                if result == self.sdk.COMM_SUCCESS and not error & 0x7F:
                    return
                detail = self._describe(result, error)
        raise DriverStartupError(
            f"servo id {servo_id}: writing {value} to address {address} failed: {detail}"
        )

    def _describe(self, result: int, error: int) -> str:
        if result != self.sdk.COMM_SUCCESS:
            return str(self.packet.getTxRxResult(result))
        return str(self.packet.getRxPacketError(error))

    def set_torque(self, enabled: bool, servo_ids: Sequence[int] | None = None) -> None:
        """Torque on/off. Before torque on, the goal is set to the present position (no jump) and the bus
        watchdog armed; after torque off the watchdog is disarmed."""
        for servo_id in self.ids if servo_ids is None else servo_ids:
            if enabled:
                self._write_ram_settings(self._servo(servo_id))
                present = self._read_register(servo_id, ct.PRESENT_POSITION)
                self._write(servo_id, ct.GOAL_POSITION, self._within_limits(self._servo(servo_id), present))
                self._write(servo_id, ct.TORQUE_ENABLE, 1)
                self._write(servo_id, ct.BUS_WATCHDOG, round(self.settings.bus_watchdog_ms / 20))
            else:
                self._write(servo_id, ct.TORQUE_ENABLE, 0)
            self.health[servo_id].torque_on = enabled

    def _servo(self, servo_id: int) -> ServoConfig:
        return next(servo for servo in self.servos if servo.servo_id == servo_id)

    def _write_ram_settings(self, servo: ServoConfig) -> None:
        """Bus watchdog cleared, position P gain and (current-based position mode) goal current."""
        self._write(servo.servo_id, ct.BUS_WATCHDOG, 0)
        if servo.position_p_gain is not None:
            self._write(servo.servo_id, ct.POSITION_P_GAIN, servo.position_p_gain)
        if servo.mode == ct.MODE_CURRENT_BASED_POSITION:
            self._write(servo.servo_id, ct.GOAL_CURRENT, servo.current_limit)

    @staticmethod
    def _within_limits(servo: ServoConfig, ticks: int) -> int:
        """``ticks`` clamped to the servo's position limits (a joint resting past its limit holds at it)."""
        low, high = sorted(
            (
                servo.calibration.position_ticks(servo.position_min_rad),
                servo.calibration.position_ticks(servo.position_max_rad),
            )
        )
        return min(max(ticks, low), high)

    def _read_register(self, servo_id: int, entry: tuple[int, int]) -> int:
        address, size = entry
        with self.lock:
            for _ in range(1 + self.settings.retries):
                data, result, _error = self.packet.readTxRx(self.port, servo_id, address, size)
                if result == self.sdk.COMM_SUCCESS:
                    return ct.signed(int.from_bytes(bytes(data), "little"), size)
        raise DriverStartupError(f"servo id {servo_id}: reading address {address} failed")

    def reboot(self, servo_id: int) -> str:
        """Reboot one servo (clears its hardware error; torque comes back off). Returns '' or an error."""
        if servo_id not in self.health:
            return f"servo id {servo_id} is not on this bus (ids {self.ids})"
        with self.lock:
            result, error = self.packet.reboot(self.port, servo_id)
        if result != self.sdk.COMM_SUCCESS:
            return f"servo id {servo_id}: reboot failed: {self._describe(result, error)}"
        self.health[servo_id] = ServoHealth()
        return ""

    # --- the cycle -------------------------------------------------------------------------------
    def read_state(self, deadline_s: float) -> JointReading | None:
        """One sync read of 126..135, retried until ``deadline_s`` (monotonic); None if all attempts fail."""
        started = time.monotonic()
        attempts = 1 + self.settings.retries
        for attempt in range(attempts):
            remaining_ms = (deadline_s - time.monotonic()) * 1e3
            if attempt > 0 and remaining_ms <= 0.2:
                break  # the first attempt is always made, even when the cycle started late
            with self.lock:
                result = self._state_read.txPacket()
                if result == self.sdk.COMM_SUCCESS:
                    self.port.setPacketTimeoutMillis(
                        max(self._min_attempt_ms, remaining_ms / (attempts - attempt))
                    )
                    result = self._state_read.rxPacket()
                if result == self.sdk.COMM_SUCCESS and not self._complete(
                    self._state_read, ct.STATE_BLOCK[1]
                ):
                    result = self.sdk.COMM_RX_CORRUPT  # a late reply of an earlier request was taken
            if result == self.sdk.COMM_SUCCESS:
                done = time.monotonic()
                self.counters.read_latencies_s.append(done - started)
                return self._decode_state(done - started, done)
            self.counters.retries += attempt < attempts - 1
            self.counters.last_error = f"sync read: {self.packet.getTxRxResult(result)}"
        self.counters.read_failures += 1
        return None

    def _decode_state(self, latency_s: float, now_s: float) -> JointReading:
        count = len(self.servos)
        position, velocity, effort = np.empty(count), np.empty(count), np.empty(count)
        for index, servo in enumerate(self.servos):
            get = self._state_read.getData
            current = ct.signed(get(servo.servo_id, *ct.PRESENT_CURRENT), ct.PRESENT_CURRENT[1])
            speed = ct.signed(get(servo.servo_id, *ct.PRESENT_VELOCITY), ct.PRESENT_VELOCITY[1])
            ticks = ct.signed(get(servo.servo_id, *ct.PRESENT_POSITION), ct.PRESENT_POSITION[1])
            position[index] = servo.calibration.position_rad(ticks)
            velocity[index] = servo.calibration.velocity_rad_s(speed)
            effort[index] = servo.calibration.effort_nm(current)
        return JointReading(position, velocity, effort, latency_s, now_s)

    def write_goals(self, goals: np.ndarray) -> bool:
        """One sync write per goal register in use: joint positions [rad] for position-mode servos, joint
        torques [N m] for current-mode servos (servo order), clamped to the configured limits."""
        self._position_write.clearParam()
        self._current_write.clearParam()
        for servo, goal in zip(self.servos, goals, strict=True):
            if servo.takes_current:
                units = servo.calibration.current_units(float(goal))
                units = max(-servo.current_limit, min(servo.current_limit, units))
                self._current_write.addParam(servo.servo_id, ct.to_le_bytes(units, 2))
            else:
                clamped = min(max(float(goal), servo.position_min_rad), servo.position_max_rad)
                ticks = servo.calibration.position_ticks(clamped)
                self._position_write.addParam(servo.servo_id, ct.to_le_bytes(ticks, 4))
        ok = True
        with self.lock:
            for group in (self._position_write, self._current_write):
                if group.data_dict and group.txPacket() != self.sdk.COMM_SUCCESS:
                    ok = False
        if not ok:
            self.counters.write_failures += 1
            self.counters.last_error = "sync write failed"
        return ok

    def read_hardware_errors(self) -> None:
        """Hardware Error Status and Bus Watchdog of every servo (one sync read of 70..98; per-servo reads
        find a silent one). A servo whose error bits are in its Shutdown mask has turned its torque off (as
        the real servo); a fired Bus Watchdog (a stalled host) is counted and re-armed while the torque is on.
        """
        with self.lock:
            result = self._error_read.txRxPacket()
            if result == self.sdk.COMM_SUCCESS and self._complete(self._error_read, STATUS_BLOCK[1]):
                blocks: dict[int, bytes | None] = {i: bytes(self._error_read.data_dict[i]) for i in self.ids}
            else:
                blocks = {i: self._read_status_block(i) for i in self.ids}
        for servo_id, block in blocks.items():
            health = self.health[servo_id]
            health.responding = block is not None
            if block is None:
                continue
            health.hardware_error = block[0]
            if health.hardware_error & ct.DEFAULT_SHUTDOWN:
                health.torque_on = False
            if block[WATCHDOG_OFFSET] == 0xFF and health.torque_on:
                health.watchdog_trips += 1
                log.warning("servo id %d: bus watchdog fired (the driver stalled); re-arming it", servo_id)
                with contextlib.suppress(DriverStartupError):
                    self._write_ram_settings(self._servo(servo_id))  # clears the watchdog error first
                    self._write(servo_id, ct.BUS_WATCHDOG, round(self.settings.bus_watchdog_ms / 20))

    def _read_status_block(self, servo_id: int) -> bytes | None:
        data, result, _error = self.packet.readTxRx(self.port, servo_id, *STATUS_BLOCK)
        return bytes(data) if result == self.sdk.COMM_SUCCESS and len(data) == STATUS_BLOCK[1] else None

    def close(self) -> None:
        """Torque off (best effort: a dead bus must not prevent closing) and close the port."""
        if not self.is_open:
            return
        for servo_id in self.ids:
            with self.lock:
                for _ in range(1 + self.settings.retries):
                    result, _error = self.packet.write1ByteTxRx(self.port, servo_id, ct.TORQUE_ENABLE[0], 0)
                    if result == self.sdk.COMM_SUCCESS:
                        break
            self.health[servo_id].torque_on = False
        with self.lock:
            self.port.closePort()
        self.is_open = False


#: The move home (:meth:`DriverLoop.move_home`, the episode reset) takes at most this long (the actor gives
#: a reset 5 s), then has ``HOME_SETTLE_S`` to settle.
HOME_MAX_MOVE_S = 3.0
HOME_SETTLE_S = 1.0


class DriverLoop:
    """The driver's cycle at ``state_rate_hz`` in a thread: read, publish, write goals, check errors.

    ``publish(reading)`` is called after every successful read. Commands (servo order, SI units) come through
    :meth:`set_command`; they are applied only while enabled (:meth:`enable`). The safe behaviour (hold the
    last measured position, zero current) is commanded on command timeout and after
    ``failures_before_error`` consecutive failed cycles.
    """

    def __init__(
        self,
        bus: DynamixelBus,
        publish: Callable[[JointReading], None],
        on_fatal: Callable[[str], None] | None = None,
    ) -> None:
        self.bus = bus
        self._publish = publish
        self._on_fatal = on_fatal
        self._settings = bus.settings
        self._period_s = 1.0 / self._settings.state_rate_hz
        self._error_period_s = 1.0 / self._settings.error_check_rate_hz
        self._lock = threading.Lock()
        self._command: np.ndarray | None = None
        self._command_time_s = 0.0
        self._command_written = True
        self._hold: np.ndarray | None = None
        self._enabled = False
        self.last_reading: JointReading | None = None
        self.in_fault = False
        self.faults = 0  # times the fault state was entered
        self._faults_logged = 0
        self._last_fault_log_s = -float("inf")
        self.overruns = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.fatal_error: str | None = None

    def set_command(self, goals: np.ndarray, now_s: float | None = None) -> None:
        """A new command (finite, servo order, SI units)."""
        with self._lock:
            self._command = np.array(goals, dtype=np.float64)
            self._command_time_s = time.monotonic() if now_s is None else now_s
            self._command_written = False

    def enable(self, enabled: bool) -> None:
        """Apply commands (True) or stop writing goals (False: torque off); enabling needs a new command."""
        with self._lock:
            self._enabled = enabled
            self._command = None
            self._hold = None

    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def timed_out(self) -> bool:
        """True while a command was given and none came within ``command_timeout_s`` (safe goals apply)."""
        with self._lock:
            return self._command is not None and not self._command_fresh()

    def _command_fresh(self) -> bool:
        return (
            self._command is not None
            and time.monotonic() - self._command_time_s <= self._settings.command_timeout_s
        )

    def move_home(
        self, home: np.ndarray, position_mode: np.ndarray, speed_rad_s: float, tolerance_rad: float
    ) -> str:
        """Move the position-mode servos to ``home`` (servo order) at ``speed_rad_s``, the others at zero
        current; "" once every position-mode joint is within ``tolerance_rad``, else why not.

        Blocks the caller (the bus loop keeps running): the move takes at most ``HOME_MAX_MOVE_S``, then
        the arm has ``HOME_SETTLE_S`` to come within the tolerance."""
        reading = self.last_reading
        if not self.enabled or reading is None:
            return "the driver is not active"
        start = reading.position.copy()
        distance = float(np.max(np.abs(home - start)[position_mode], initial=0.0))
        duration = min(HOME_MAX_MOVE_S, max(0.2, distance / speed_rad_s))
        began = time.monotonic()
        error = float("inf")
        while (elapsed := time.monotonic() - began) < duration + HOME_SETTLE_S:
            fraction = min(1.0, elapsed / duration)
            self.set_command(np.where(position_mode, start + fraction * (home - start), 0.0))
            reading = self.last_reading
            assert reading is not None  # never reset to None once set
            error = float(np.max(np.abs(reading.position - home)[position_mode], initial=0.0))
            if fraction >= 1.0 and error < tolerance_rad:
                return ""
            time.sleep(self._period_s)
        return (
            f"home pose not reached: {error:.3f} rad away after {duration + HOME_SETTLE_S:g} s "
            f"(tolerance {tolerance_rad:g} rad)"
        )

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="dynamixel_bus", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None

    def _run(self) -> None:
        problem = set_realtime_priority(self._settings.realtime_priority)
        if problem:
            log.warning("%s: the bus thread runs at normal priority", problem)
        try:
            self._loop()
        except Exception as exc:  # surfaced by the node: the process exits non-zero
            log.exception("driver loop failed")
            self.fatal_error = f"driver loop failed: {exc!r}"
            if self._on_fatal is not None:
                self._on_fatal(self.fatal_error)

    def _loop(self) -> None:
        next_cycle = time.monotonic()
        next_error_check = next_cycle
        while not self._stop.is_set():
            deadline = next_cycle + self._period_s
            self.cycle(next_cycle + READ_SHARE_OF_CYCLE * self._period_s)
            now = time.monotonic()
            if now >= next_error_check:
                self.bus.read_hardware_errors()
                next_error_check = now + self._error_period_s
            next_cycle = deadline
            delay = next_cycle - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            elif delay < -5 * self._period_s:
                self.overruns += 1
                next_cycle = time.monotonic()

    def cycle(self, read_deadline_s: float) -> None:
        """One bus cycle: sync read (retried until the deadline), publish, sync write of the goals."""
        counters = self.bus.counters
        counters.cycles += 1
        reading = self.bus.read_state(read_deadline_s)
        if reading is None:
            counters.consecutive_failures += 1
            if counters.consecutive_failures >= self._settings.failures_before_error and not self.in_fault:
                self.in_fault = True
                self.faults += 1
                self._log_fault(counters)
        else:
            counters.consecutive_failures = 0
            self.in_fault = False
            self.last_reading = reading
            self._publish(reading)
        goals = self._goals(reading)
        if goals is not None and self.bus.write_goals(goals):
            self._note_written(goals)

    def _note_written(self, goals: np.ndarray) -> None:
        """Record the command latency of a command's first sync write."""
        with self._lock:
            if goals is self._command and not self._command_written:
                self.bus.counters.command_latencies_s.append(time.monotonic() - self._command_time_s)
                self._command_written = True

    def _log_fault(self, counters: BusCounters) -> None:
        """Log entering the fault state, at most once per ``FAULT_LOG_PERIOD_S`` (with a count)."""
        now = time.monotonic()
        if now - self._last_fault_log_s < FAULT_LOG_PERIOD_S:
            return
        since = self.faults - self._faults_logged
        self._last_fault_log_s, self._faults_logged = now, self.faults
        log.error(
            "%d consecutive failed bus cycles (%s): holding position until reads succeed "
            "(fault state entered %d time(s) since the last message)",
            counters.consecutive_failures,
            counters.last_error,
            since,
        )

    def _goals(self, reading: JointReading | None) -> np.ndarray | None:
        """The goals to write this cycle: the command, or the safe behaviour (None: write nothing)."""
        with self._lock:
            if not self._enabled:
                return None
            if self._command_fresh() and not self.in_fault:
                self._hold = None
                return self._command
            if self._hold is None and self.last_reading is not None:
                self._hold = self.safe_goals(self.last_reading)
            return self._hold

    def safe_goals(self, reading: JointReading) -> np.ndarray:
        """Hold the measured position (position modes) and zero torque (current mode)."""
        return np.array(
            [
                0.0 if servo.takes_current else position
                for servo, position in zip(self.bus.servos, reading.position, strict=True)
            ]
        )
