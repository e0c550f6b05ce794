"""A Dynamixel X-series bus in software: Protocol 2.0 over a pseudo-terminal, servo firmware, MuJoCo physics.

Each servo id is a joint of a MuJoCo robot (``sim/<robot>.xml``) stepped in real time. The servo's firmware
is emulated at the physics rate: the position PID of the X-series (``PWM = P/128·e + I/65536·Σe + D/16·Δe``
on the encoder error in ticks, 885 = full duty), a DC-motor model (``I = I_stall·(duty − ω/ω_no_load)``)
limited by Current Limit (38) and, in current-based position mode, by Goal Current (102); current mode
applies Goal Current directly. The torque on the joint is ``k_t · I`` through the model's torque constant.

A **reality gap** (:class:`RealityGap`, named presets in :data:`REALITY_GAPS`) makes the emulated arm differ
from the nominal model the policies are trained on: link masses and inertias, joint friction and damping,
gear backlash (the encoder sits on the motor side of the play), encoder quantization, sensor noise, bus
latency. Faults (:class:`Faults`, also settable at run time with :meth:`ServoBus.set_fault`): dropped
replies, corrupted CRCs, silent servos, overload/overheating error bits (torque shutdown per the Shutdown
register 63, as the real servo), latency spikes.

Bus Watchdog (98): when a torque-enabled servo receives no valid instruction for ``N × 20 ms`` the emulator
does what the e-Manual describes: the register reads 0xFF (−1, "watchdog error"), the servo stops (our
choice of "stops": position modes hold the present position, goal position := present position, torque
stays on; current mode gets zero goal current) and refuses goal writes until the register is written 0.
Status Return Level (68), Return Delay Time (9), EEPROM write protection
while torque is on (access error) and the hardware alert bit (7) of the status error byte are emulated.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import select
import socket
import threading
import time
import tty
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import mujoco
import numpy as np

from rl_control.actor.pacing import set_realtime_priority
from rl_control.drivers.dynamixel import control_table as ct
from rl_control.drivers.dynamixel.protocol import (
    BROADCAST_ID,
    ERROR_ACCESS,
    ERROR_DATA_LENGTH,
    ERROR_DATA_LIMIT,
    ERROR_DATA_RANGE,
    ERROR_INSTRUCTION,
    ERROR_RESULT_FAIL,
    INST_BULK_READ,
    INST_PING,
    INST_READ,
    INST_REBOOT,
    INST_SYNC_READ,
    INST_SYNC_WRITE,
    INST_WRITE,
    Instruction,
    PacketParser,
    status_packet,
)

log = logging.getLogger(__name__)

PHYSICS_DT_S = 0.002  # firmware and physics update period
MAX_CATCH_UP_S = 0.1  # further behind than this (a stalled machine): skip ahead instead of replaying
FIRMWARE_VERSION = 48
READ_ONLY_FROM = ct.MOVING[0]  # Moving, Present values: read only
FAULT_NAMES = (
    "silent",
    "drop_reply_probability",
    "corrupt_crc_probability",
    "hardware_error",
    "latency_spike_s",
)


@dataclass(frozen=True)
class RealityGap:
    """How the emulated robot differs from the nominal MuJoCo model."""

    link_mass_scale: float = 1.0  # masses and inertias of every link
    friction_scale: float = 1.0  # joint dry friction (frictionloss)
    damping_scale: float = 1.0  # joint viscous damping
    backlash_rad: float = 0.0  # play between the motor (encoder) and the joint, servo side
    encoder_ticks_per_rev: int = ct.TICKS_PER_REV  # effective resolution (quantization)
    position_noise_ticks: float = 0.0  # std of the reported position
    velocity_noise_units: float = 0.0  # std of the reported velocity (0.229 rpm units)
    current_noise_units: float = 0.0  # std of the reported current
    bus_latency_s: float = 0.0  # added before every status packet (USB adapter, OS)


#: Named reality gaps. ``default`` is big enough that a policy trained on the nominal model shows it
#: (heavier links, 3x friction, backlash, noise, 0.5 ms latency); ``harsh`` is a worn, cheap arm.
REALITY_GAPS: dict[str, RealityGap] = {
    "none": RealityGap(),
    "default": RealityGap(
        link_mass_scale=1.3,
        friction_scale=3.0,
        damping_scale=2.0,
        backlash_rad=0.006,
        position_noise_ticks=1.0,
        velocity_noise_units=1.0,
        current_noise_units=2.0,
        bus_latency_s=0.0005,
    ),
    "harsh": RealityGap(
        link_mass_scale=1.6,
        friction_scale=6.0,
        damping_scale=4.0,
        backlash_rad=0.02,
        encoder_ticks_per_rev=1024,
        position_noise_ticks=3.0,
        velocity_noise_units=3.0,
        current_noise_units=5.0,
        bus_latency_s=0.002,
    ),
}


@dataclass
class Faults:
    """Faults of one servo (settable at run time)."""

    silent: bool = False  # never answers
    drop_reply_probability: float = 0.0
    corrupt_crc_probability: float = 0.0
    hardware_error: int = 0  # Hardware Error Status bits to raise (e.g. 1 << 5 overload)
    latency_spike_s: float = 0.0  # extra delay before each reply


@dataclass(frozen=True)
class EmulatedServo:
    """One servo of the emulated bus: its id, model, joint and mounting (as the driver's config says)."""

    servo_id: int
    model: ct.ServoModel
    joint: str
    calibration: ct.JointCalibration


class ServoFirmware:
    """Registers and firmware behaviour of one servo."""

    def __init__(self, spec: EmulatedServo, gap: RealityGap, rng: np.random.Generator) -> None:
        self.spec = spec
        self.gap = gap
        self.rng = rng
        self.faults = Faults()
        self.table = bytearray(ct.TABLE_SIZE)
        self.last_instruction_s = time.monotonic()
        self.watchdog_tripped = False
        self.motor_angle = 0.0  # servo-side angle seen by the encoder (after backlash)
        self.amps = 0.0
        self.servo_velocity = 0.0
        self._integral = 0.0
        self._previous_error = 0.0
        self._write(ct.MODEL_NUMBER, spec.model.model_number)
        self._write(ct.ID, spec.servo_id)
        self._write(ct.BAUD_RATE, 3)
        self._write(ct.RETURN_DELAY_TIME, 250)
        self._write(ct.TEMPERATURE_LIMIT, 80)
        self._write(ct.MAX_POSITION_LIMIT, ct.TICKS_PER_REV - 1)
        self._write(ct.SHUTDOWN, ct.DEFAULT_SHUTDOWN)
        self._write(ct.OPERATING_MODE, ct.MODE_POSITION)
        self._write(ct.CURRENT_LIMIT, spec.model.default_current_limit)
        self.reset_ram()

    # --- registers ------------------------------------------------------------------------------
    def _write(self, entry: tuple[int, int], value: int) -> None:
        address, size = entry
        self.table[address : address + size] = bytes(ct.to_le_bytes(value, size))

    def value(self, entry: tuple[int, int], *, is_signed: bool = False) -> int:
        address, size = entry
        raw = int.from_bytes(self.table[address : address + size], "little")
        return ct.signed(raw, size) if is_signed else raw

    def reset_ram(self) -> None:
        """Power-on / reboot state of the RAM area: torque off, goals at the present position."""
        self.table[ct.EEPROM_END :] = bytes(ct.TABLE_SIZE - ct.EEPROM_END)
        self._write(ct.STATUS_RETURN_LEVEL, 2)
        self._write(ct.POSITION_P_GAIN, self.spec.model.default_position_p_gain)
        self._write(ct.GOAL_PWM, ct.PWM_LIMIT_UNITS)
        self._write(ct.PRESENT_INPUT_VOLTAGE, round(self.spec.model.nominal_voltage_v * 10))
        self._write(ct.PRESENT_TEMPERATURE, 35)
        self._write(ct.GOAL_POSITION, self.measured_ticks())
        self.watchdog_tripped = False
        self.faults.hardware_error = 0
        self._integral = 0.0

    @property
    def torque_on(self) -> bool:
        return self.table[ct.TORQUE_ENABLE[0]] == 1

    @property
    def alert(self) -> bool:
        return self.table[ct.HARDWARE_ERROR_STATUS[0]] != 0

    def read(self, address: int, length: int) -> tuple[int, bytes]:
        """``(error, data)`` of a read instruction."""
        if address + length > ct.TABLE_SIZE or length == 0:
            return ERROR_DATA_RANGE, b""
        self._refresh_present()
        return 0, bytes(self.table[address : address + length])

    def write(self, address: int, data: bytes) -> int:
        """Apply a write instruction; returns the status error code (0 = done)."""
        end = address + len(data)
        if not data or end > ct.TABLE_SIZE:
            return ERROR_DATA_RANGE
        if address < ct.EEPROM_END and self.torque_on:
            return ERROR_ACCESS  # EEPROM is locked while the torque is on
        if end > READ_ONLY_FROM or address < ct.ID[0] or ct.HARDWARE_ERROR_STATUS[0] in range(address, end):
            return ERROR_ACCESS
        if self.watchdog_tripped and _overlaps(address, end, (ct.GOAL_PWM[0], ct.MOVING[0])):
            return ERROR_ACCESS
        if ct.TORQUE_ENABLE[0] in range(address, end) and data[ct.TORQUE_ENABLE[0] - address] and self.alert:
            return ERROR_RESULT_FAIL  # torque stays off after a shutdown until reboot
        if ct.GOAL_POSITION[0] in range(address, end) and not self._goal_in_limits(address, data):
            return ERROR_DATA_LIMIT
        previous_torque = self.torque_on
        self.table[address:end] = data
        if ct.BUS_WATCHDOG[0] in range(address, end) and data[ct.BUS_WATCHDOG[0] - address] == 0:
            self.watchdog_tripped = False
        if self.torque_on and not previous_torque:
            self._integral = 0.0
        return 0

    def _goal_in_limits(self, address: int, data: bytes) -> bool:
        offset = ct.GOAL_POSITION[0] - address
        if offset + 4 > len(data) or self.value(ct.OPERATING_MODE) == ct.MODE_EXTENDED_POSITION:
            return True
        goal = ct.signed(int.from_bytes(data[offset : offset + 4], "little"), 4)
        return self.value(ct.MIN_POSITION_LIMIT) <= goal <= self.value(ct.MAX_POSITION_LIMIT)

    # --- firmware -------------------------------------------------------------------------------
    def measured_ticks(self) -> int:
        """The encoder reading (motor side, quantized) plus the Homing Offset."""
        step = ct.TICKS_PER_REV // max(1, self.gap.encoder_ticks_per_rev)
        ticks = ct.CENTER_TICK + round(self.motor_angle / ct.RAD_PER_TICK)
        ticks = step * round(ticks / step) if step > 1 else ticks
        return ticks + self.value(ct.HOMING_OFFSET, is_signed=True)

    def sense(self, servo_angle: float) -> None:
        """Move the motor-side angle with the joint through the backlash band."""
        half = 0.5 * self.gap.backlash_rad
        self.motor_angle = min(max(self.motor_angle, servo_angle - half), servo_angle + half)

    def update(self, servo_velocity: float, now_s: float) -> float:
        """One firmware period: watchdog, hardware errors, control law; returns the motor current [A]."""
        self._check_watchdog(now_s)
        self._apply_hardware_error()
        if not self.torque_on:
            self.amps = 0.0
            return 0.0
        model = self.spec.model
        limit = self.value(ct.CURRENT_LIMIT) * model.current_unit_a
        mode = self.value(ct.OPERATING_MODE)
        goal_current = abs(self.value(ct.GOAL_CURRENT, is_signed=True)) * model.current_unit_a
        if mode == ct.MODE_CURRENT:
            amps = math.copysign(min(goal_current, limit), self.value(ct.GOAL_CURRENT, is_signed=True))
        else:
            duty = self._position_pid()
            amps = model.stall_current_a * (duty - servo_velocity / model.no_load_speed_rad_s)
            cap = min(limit, goal_current) if mode == ct.MODE_CURRENT_BASED_POSITION else limit
            amps = min(max(amps, -cap), cap)
        self.amps = amps
        return amps

    def _position_pid(self) -> float:
        error = float(self.value(ct.GOAL_POSITION, is_signed=True) - self.measured_ticks())
        self._integral = min(max(self._integral + error, -1e6), 1e6)
        derivative = error - self._previous_error
        self._previous_error = error
        pwm = (
            self.value(ct.POSITION_P_GAIN) / 128.0 * error
            + self.value(ct.POSITION_I_GAIN) / 65536.0 * self._integral
            + self.value(ct.POSITION_D_GAIN) / 16.0 * derivative
        )
        return min(max(pwm / ct.PWM_LIMIT_UNITS, -1.0), 1.0)

    def _check_watchdog(self, now_s: float) -> None:
        units = self.value(ct.BUS_WATCHDOG)
        if self.watchdog_tripped or units in (0, 0xFF) or not self.torque_on:
            return
        if now_s - self.last_instruction_s > units * ct.BUS_WATCHDOG_UNIT_S:
            self.watchdog_tripped = True
            self._write(ct.BUS_WATCHDOG, 0xFF)
            if self.value(ct.OPERATING_MODE) == ct.MODE_CURRENT:
                self._write(ct.GOAL_CURRENT, 0)
            else:
                self._write(ct.GOAL_POSITION, self.measured_ticks())
            log.info("servo %d: bus watchdog expired: stopped, holding position", self.spec.servo_id)

    def _apply_hardware_error(self) -> None:
        bits = self.faults.hardware_error
        if bits and self.table[ct.HARDWARE_ERROR_STATUS[0]] != bits:
            self._write(ct.HARDWARE_ERROR_STATUS, bits)
            if bits & self.value(ct.SHUTDOWN):
                self._write(ct.TORQUE_ENABLE, 0)
                log.info(
                    "servo %d: hardware error %s: torque off",
                    self.spec.servo_id,
                    ct.decode_hardware_error(bits),
                )

    def _noise(self, std: float) -> float:
        return float(self.rng.normal(0.0, std)) if std > 0 else 0.0

    def _refresh_present(self) -> None:
        gap = self.gap
        velocity = self.servo_velocity / ct.RAD_S_PER_VELOCITY_UNIT + self._noise(gap.velocity_noise_units)
        current = self.amps / self.spec.model.current_unit_a + self._noise(gap.current_noise_units)
        self._write(ct.PRESENT_POSITION, self.measured_ticks() + round(self._noise(gap.position_noise_ticks)))
        self._write(ct.PRESENT_VELOCITY, round(velocity))
        self._write(ct.PRESENT_CURRENT, round(current))
        self._write(ct.MOVING, int(abs(velocity) > 1.5))


def _overlaps(start: int, end: int, span: tuple[int, int]) -> bool:
    return start < span[1] and span[0] < end


class ArmPhysics:
    """The MuJoCo robot behind the servos: reality gap applied, actuators replaced by the servos' torques."""

    def __init__(self, robot: str, joints: Sequence[str], gap: RealityGap) -> None:
        from rl_control.envs.robot_model import load_model

        model = load_model(robot)
        model.opt.timestep = PHYSICS_DT_S
        model.actuator_gainprm[:] = 0.0  # the servos' firmware drives the joints (qfrc_applied)
        model.actuator_biasprm[:] = 0.0
        model.body_mass[1:] *= gap.link_mass_scale
        model.body_inertia[1:] *= gap.link_mass_scale
        model.dof_frictionloss[:] *= gap.friction_scale
        model.dof_damping[:] *= gap.damping_scale
        self.model = model
        self.data = mujoco.MjData(model)
        if model.nkey:
            mujoco.mj_resetDataKeyframe(model, self.data, 0)
        mujoco.mj_forward(model, self.data)
        ids = []
        for name in joints:
            joint_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
            if joint_id < 0:
                raise ValueError(
                    f"robot {robot!r} has no joint {name!r} (servo joint names must match the model)"
                )
            ids.append(joint_id)
        self.qpos_adr = np.array([model.jnt_qposadr[j] for j in ids])
        self.dof_adr = np.array([model.jnt_dofadr[j] for j in ids])

    def positions(self) -> np.ndarray:
        return self.data.qpos[self.qpos_adr]

    def velocities(self) -> np.ndarray:
        return self.data.qvel[self.dof_adr]

    def step(self, joint_torques: np.ndarray) -> None:
        self.data.qfrc_applied[self.dof_adr] = joint_torques
        mujoco.mj_step(self.model, self.data)


class ServoBus:
    """The servos of one bus and the physics behind them; answers instruction packets (thread-safe)."""

    def __init__(
        self,
        robot: str,
        servos: Sequence[EmulatedServo],
        *,
        gap: RealityGap | None = None,
        baud_rate: int = 1_000_000,
        seed: int = 0,
    ) -> None:
        self.gap = gap or RealityGap()
        self.baud_rate = baud_rate
        self.rng = np.random.default_rng(seed)
        self.physics = ArmPhysics(robot, [servo.joint for servo in servos], self.gap)
        self.servos = {servo.servo_id: ServoFirmware(servo, self.gap, self.rng) for servo in servos}
        self.lock = threading.Lock()
        self.parser = PacketParser()
        self.instructions = 0
        self._sim_time_s = 0.0
        self._wall_start_s = time.monotonic()
        self._sense()
        for firmware in self.servos.values():
            firmware.reset_ram()

    # --- physics --------------------------------------------------------------------------------
    def _sense(self) -> None:
        for firmware, angle in zip(self.servos.values(), self.physics.positions(), strict=True):
            calibration = firmware.spec.calibration
            firmware.sense(
                calibration.direction * angle * calibration.gear_ratio + calibration.zero_offset_rad
            )

    def advance_to(self, now_s: float) -> None:
        """Step the physics and the firmware until the simulated time reaches wall time ``now_s``."""
        with self.lock:
            behind = now_s - self._wall_start_s - self._sim_time_s
            if behind > MAX_CATCH_UP_S:
                self._sim_time_s += behind - MAX_CATCH_UP_S
            while self._wall_start_s + self._sim_time_s + PHYSICS_DT_S <= now_s:
                self.step(now_s)

    def step(self, now_s: float) -> None:
        """One firmware + physics period (``now_s``: wall time, for the bus watchdogs)."""
        velocities = self.physics.velocities()
        torques = np.zeros(len(self.servos))
        for index, firmware in enumerate(self.servos.values()):
            calibration = firmware.spec.calibration
            servo_velocity = calibration.direction * velocities[index] * calibration.gear_ratio
            firmware.servo_velocity = servo_velocity
            amps = firmware.update(servo_velocity, now_s)
            torque = amps * firmware.spec.model.torque_constant_nm_per_a
            torques[index] = calibration.direction * torque * calibration.gear_ratio
        self.physics.step(torques)
        self._sim_time_s += PHYSICS_DT_S
        self._sense()

    def joint_positions(self) -> dict[str, float]:
        """Present joint angles [rad] by joint name (ground truth, for tests)."""
        with self.lock:
            return {
                f.spec.joint: float(q)
                for f, q in zip(self.servos.values(), self.physics.positions(), strict=True)
            }

    def joint_velocities(self) -> dict[str, float]:
        with self.lock:
            return {
                f.spec.joint: float(v)
                for f, v in zip(self.servos.values(), self.physics.velocities(), strict=True)
            }

    # --- faults ---------------------------------------------------------------------------------
    def set_fault(self, servo_id: int, name: str, value: Any) -> None:
        """Set fault ``name`` (see :class:`Faults`) of servo ``servo_id``; ValueError naming a bad id/name."""
        if servo_id not in self.servos:
            raise ValueError(f"no servo with id {servo_id} on the emulated bus (ids {sorted(self.servos)})")
        if name not in FAULT_NAMES:
            raise ValueError(f"unknown fault {name!r}; known faults: {', '.join(FAULT_NAMES)}")
        with self.lock:
            firmware = self.servos[servo_id]
            current = getattr(firmware.faults, name)
            firmware.faults = replace(firmware.faults, **{name: type(current)(value)})

    # --- protocol -------------------------------------------------------------------------------
    def receive(self, data: bytes, now_s: float) -> list[tuple[float, bytes]]:
        """Bytes from the controller -> status packets to send, each with the time it is due."""
        self.advance_to(now_s)
        replies: list[tuple[float, bytes]] = []
        due = now_s + self.gap.bus_latency_s
        with self.lock:
            for instruction in self.parser.feed(data):
                self.instructions += 1
                for servo_id, packet in self._answer(instruction, now_s):
                    firmware = self.servos[servo_id]
                    due += firmware.value(ct.RETURN_DELAY_TIME) * ct.RETURN_DELAY_UNIT_S
                    due += firmware.faults.latency_spike_s + len(packet) * 10.0 / self.baud_rate
                    faulty = self._with_faults(firmware, packet)
                    if faulty is not None:
                        replies.append((due, faulty))
        return replies

    def _with_faults(self, firmware: ServoFirmware, packet: bytes) -> bytes | None:
        faults = firmware.faults
        if faults.silent or (
            faults.drop_reply_probability and self.rng.random() < faults.drop_reply_probability
        ):
            return None
        if faults.corrupt_crc_probability and self.rng.random() < faults.corrupt_crc_probability:
            return packet[:-1] + bytes((packet[-1] ^ 0x5A,))
        return packet

    def _targets(self, instruction: Instruction) -> list[int]:
        """Ids of the servos an instruction reaches (for the bus watchdog)."""
        if instruction.servo_id != BROADCAST_ID:
            return [instruction.servo_id] if instruction.servo_id in self.servos else []
        if instruction.instruction == INST_SYNC_READ:
            return [i for i in instruction.params[4:] if i in self.servos]
        if instruction.instruction == INST_SYNC_WRITE and len(instruction.params) >= 4:
            stride = 1 + (instruction.params[2] | instruction.params[3] << 8)
            return [i for i in instruction.params[4::stride] if i in self.servos]
        if instruction.instruction == INST_BULK_READ:
            return [i for i in instruction.params[0::5] if i in self.servos]
        return list(self.servos)

    def _answer(self, instruction: Instruction, now_s: float) -> list[tuple[int, bytes]]:
        for servo_id in self._targets(instruction):
            self.servos[servo_id].last_instruction_s = now_s
        handler = {
            INST_PING: self._ping,
            INST_READ: self._read,
            INST_WRITE: self._write,
            INST_REBOOT: self._reboot,
            INST_SYNC_READ: self._sync_read,
            INST_SYNC_WRITE: self._sync_write,
            INST_BULK_READ: self._bulk_read,
        }.get(instruction.instruction)
        if handler is None:
            if instruction.servo_id in self.servos:
                return [self._status(instruction.servo_id, ERROR_INSTRUCTION)]
            return []
        return handler(instruction)

    def _status(self, servo_id: int, error: int, params: bytes = b"") -> tuple[int, bytes]:
        alert = ct.ALERT_BIT if self.servos[servo_id].alert else 0
        return servo_id, status_packet(servo_id, error | alert, params)

    def _ping(self, instruction: Instruction) -> list[tuple[int, bytes]]:
        ids = list(self.servos) if instruction.servo_id == BROADCAST_ID else self._targets(instruction)
        replies = []
        for servo_id in ids:
            model_number = self.servos[servo_id].spec.model.model_number
            replies.append(
                self._status(servo_id, 0, bytes((model_number & 0xFF, model_number >> 8, FIRMWARE_VERSION)))
            )
        return replies

    def _read(self, instruction: Instruction) -> list[tuple[int, bytes]]:
        if instruction.servo_id not in self.servos:
            return []
        if len(instruction.params) != 4:
            return [self._status(instruction.servo_id, ERROR_DATA_LENGTH)]
        address, length = _word(instruction.params, 0), _word(instruction.params, 2)
        error, data = self.servos[instruction.servo_id].read(address, length)
        return [self._status(instruction.servo_id, error, data)]

    def _write(self, instruction: Instruction) -> list[tuple[int, bytes]]:
        if len(instruction.params) < 3:
            error_ids = self._targets(instruction) if instruction.servo_id != BROADCAST_ID else []
            return [self._status(i, ERROR_DATA_LENGTH) for i in error_ids]
        address, data = _word(instruction.params, 0), instruction.params[2:]
        replies = []
        for servo_id in self._targets(instruction):
            error = self.servos[servo_id].write(address, data)
            if (
                instruction.servo_id != BROADCAST_ID
                and self.servos[servo_id].value(ct.STATUS_RETURN_LEVEL) >= 2
            ):
                replies.append(self._status(servo_id, error))
        return replies

    def _reboot(self, instruction: Instruction) -> list[tuple[int, bytes]]:
        replies = []
        for servo_id in self._targets(instruction):
            self.servos[servo_id].reset_ram()
            if instruction.servo_id != BROADCAST_ID:
                replies.append(self._status(servo_id, 0))
        return replies

    def _sync_read(self, instruction: Instruction) -> list[tuple[int, bytes]]:
        if len(instruction.params) < 5:
            return []
        address, length = _word(instruction.params, 0), _word(instruction.params, 2)
        replies = []
        for servo_id in self._targets(instruction):
            error, data = self.servos[servo_id].read(address, length)
            replies.append(self._status(servo_id, error, data))
        return replies

    def _sync_write(self, instruction: Instruction) -> list[tuple[int, bytes]]:
        params = instruction.params
        if len(params) < 4:
            return []
        address, length = _word(params, 0), _word(params, 2)
        for offset in range(4, len(params) - length, 1 + length):
            servo_id = params[offset]
            if servo_id in self.servos:
                self.servos[servo_id].write(address, params[offset + 1 : offset + 1 + length])
        return []

    def _bulk_read(self, instruction: Instruction) -> list[tuple[int, bytes]]:
        params = instruction.params
        replies = []
        for offset in range(0, len(params) - 4, 5):
            servo_id = params[offset]
            if servo_id in self.servos:
                error, data = self.servos[servo_id].read(_word(params, offset + 1), _word(params, offset + 3))
                replies.append(self._status(servo_id, error, data))
        return replies


def _word(data: bytes, offset: int) -> int:
    return data[offset] | (data[offset + 1] << 8)


class PtyServer:
    """Serves a :class:`ServoBus` on a pseudo-terminal, optionally symlinked at ``link``.

    The unmodified ``dynamixel_sdk`` (pyserial) opens :attr:`port`. With ``control_path`` an ``AF_UNIX``
    datagram socket takes run-time fault commands as JSON: ``{"id": 2, "fault": "silent", "value": true}``.
    """

    def __init__(
        self,
        bus: ServoBus,
        *,
        link: Path | None = None,
        control_path: Path | None = None,
        realtime_priority: int = 0,
    ) -> None:
        self.bus = bus
        self.realtime_priority = realtime_priority
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no line discipline: a byte pipe like a serial line
        os.set_blocking(self._master, False)
        self.port = os.ttyname(self._slave)
        self.link = link
        if link is not None:
            link.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
            link.symlink_to(self.port)
        self._control: socket.socket | None = None
        self.control_path = control_path
        if control_path is not None:
            with contextlib.suppress(FileNotFoundError):
                control_path.unlink()
            self._control = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._control.bind(str(control_path))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending: list[tuple[float, bytes]] = []

    @property
    def path(self) -> str:
        """The device path to give the driver (the link when there is one)."""
        return str(self.link) if self.link is not None else self.port

    def serve_forever(self) -> None:
        """Answer instructions and step the physics in real time until :meth:`stop` (in the calling thread,
        with SCHED_FIFO ``realtime_priority`` when above 0 and permitted)."""
        problem = set_realtime_priority(self.realtime_priority)
        if problem:
            log.warning("%s: the emulated servos may answer late when the machine is busy", problem)
        readers: list[Any] = [self._master] + ([self._control] if self._control is not None else [])
        while not self._stop.is_set():
            now = time.monotonic()
            wait = (
                PHYSICS_DT_S if not self._pending else max(0.0, min(PHYSICS_DT_S, self._pending[0][0] - now))
            )
            readable, _, _ = select.select(readers, [], [], wait)
            now = time.monotonic()
            if self._master in readable:
                self._receive(now)
            if self._control is not None and self._control in readable:
                self._control_command()
            self.bus.advance_to(time.monotonic())
            self._send_due(time.monotonic())

    def _receive(self, now: float) -> None:
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, OSError):
            return
        self._pending.extend(self.bus.receive(data, now))
        self._pending.sort(key=lambda item: item[0])

    def _send_due(self, now: float) -> None:
        while self._pending and self._pending[0][0] <= now:
            _, packet = self._pending.pop(0)
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(self._master, packet)

    def _control_command(self) -> None:
        assert self._control is not None
        raw = self._control.recv(65536)
        try:
            command = json.loads(raw)
            self.bus.set_fault(int(command["id"]), str(command["fault"]), command["value"])
            log.info("fault set: %s", command)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignored control command %r: %s", raw[:200], exc)

    def start(self) -> PtyServer:
        """Serve from a daemon thread (in-process use: tests, benchmarks)."""
        self._thread = threading.Thread(target=self.serve_forever, name="dynamixel_emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self._control is not None:
            self._control.close()
        for path in (self.link, self.control_path):
            if path is not None:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def __enter__(self) -> PtyServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def send_fault(control_path: Path | str, servo_id: int, fault: str, value: Any) -> None:
    """Send one run-time fault command to an emulator's control socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(json.dumps({"id": servo_id, "fault": fault, "value": value}).encode(), str(control_path))


@dataclass
class EmulatorSetup:
    """Everything needed to build a :class:`ServoBus` from an experiment config."""

    robot: str
    servos: list[EmulatedServo] = field(default_factory=list)
    gap: RealityGap = field(default_factory=RealityGap)
    faults: dict[int, Faults] = field(default_factory=dict)
    baud_rate: int = 1_000_000
    seed: int = 0
    realtime_priority: int = 0  # of the bus thread when served (PtyServer)

    def build(self) -> ServoBus:
        bus = ServoBus(self.robot, self.servos, gap=self.gap, baud_rate=self.baud_rate, seed=self.seed)
        for servo_id, faults in self.faults.items():
            bus.servos[servo_id].faults = faults
        return bus


def setup_from_config(config: Any, *, reality_gap: str | None = None) -> EmulatorSetup:
    """The emulated bus of an experiment config: the task's robot, the ``driver_node`` servos (ids, models,
    joints, mounting) and ``driver_node.emulator`` (reality gap preset, faults); ``reality_gap`` overrides
    the preset."""
    from rl_control.envs import make_task

    driver = config.driver_node
    if not driver.servo_ids:
        raise ValueError(f"{config.source or 'config'}: driver_node.servo_ids is empty: nothing to emulate")
    emulator = driver.emulator
    gap_name = reality_gap or emulator.reality_gap
    if gap_name not in REALITY_GAPS:
        raise ValueError(f"unknown reality gap {gap_name!r}; known: {', '.join(REALITY_GAPS)}")
    from rl_control.drivers.dynamixel.driver import servos_from_config

    servos = [
        EmulatedServo(servo.servo_id, servo.model, servo.joint, servo.calibration)
        for servo in servos_from_config(driver)
    ]
    faults: dict[int, Faults] = {}
    for servo in servos:
        error = (ct.OVERLOAD_BIT, emulator.overload_ids), (ct.OVERHEATING_BIT, emulator.overheating_ids)
        faults[servo.servo_id] = Faults(
            silent=servo.servo_id in emulator.silent_ids,
            drop_reply_probability=emulator.drop_reply_probability,
            corrupt_crc_probability=emulator.corrupt_crc_probability,
            hardware_error=sum(1 << bit for bit, ids in error if servo.servo_id in ids),
            latency_spike_s=emulator.latency_spike_s,
        )
    return EmulatorSetup(
        robot=make_task(config.shared.task).robot,
        servos=servos,
        gap=REALITY_GAPS[gap_name],
        faults=faults,
        baud_rate=driver.baud_rate,
        seed=emulator.seed,
        realtime_priority=emulator.realtime_priority,
    )


def serve_from_config(
    config: Any, *, link: Path | None = None, control: Path | None = None, reality_gap: str | None = None
) -> int:
    """``rl-control emulate dynamixel``: serve the config's bus until SIGINT/SIGTERM; returns exit status."""
    import signal

    setup = setup_from_config(config, reality_gap=reality_gap)
    server = PtyServer(
        setup.build(), link=link, control_path=control, realtime_priority=setup.realtime_priority
    )
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    ids = [servo.servo_id for servo in setup.servos]
    gap = reality_gap or config.driver_node.emulator.reality_gap
    print(
        f"emulating Dynamixel ids {ids} ({setup.robot}, reality gap {gap!r}) on {server.path}"
        + (f" -> {server.port}" if link else "")
        + (f"; fault commands on {control}" if control else ""),
        flush=True,
    )
    try:
        server.start()
        while not stop.wait(0.2):
            pass
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
