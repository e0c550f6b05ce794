"""The X-series control table entries the driver and the emulator use, model constants, unit conversions.

Addresses, sizes and units are those of the ROBOTIS e-Manual for the X-series (Protocol 2.0). Positions are
4096 ticks per revolution with tick 2048 at the middle of the range (0 rad here); velocities are 0.229 rpm
per unit; currents are in the model's current unit (2.69 mA on XM430/XH430, 1 mA on XL330).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# --- EEPROM (writable only with torque off) ---------------------------------------------------------
MODEL_NUMBER = (0, 2)
ID = (7, 1)
BAUD_RATE = (8, 1)
RETURN_DELAY_TIME = (9, 1)  # 2 us per unit
OPERATING_MODE = (11, 1)
HOMING_OFFSET = (20, 4)
TEMPERATURE_LIMIT = (31, 1)
CURRENT_LIMIT = (38, 2)
MAX_POSITION_LIMIT = (48, 4)
MIN_POSITION_LIMIT = (52, 4)
SHUTDOWN = (63, 1)
EEPROM_END = 64  # addresses below this are EEPROM

# --- RAM --------------------------------------------------------------------------------------------
TORQUE_ENABLE = (64, 1)
LED = (65, 1)
STATUS_RETURN_LEVEL = (68, 1)
HARDWARE_ERROR_STATUS = (70, 1)
POSITION_D_GAIN = (80, 2)
POSITION_I_GAIN = (82, 2)
POSITION_P_GAIN = (84, 2)
BUS_WATCHDOG = (98, 1)  # 20 ms per unit, 0 = off
GOAL_PWM = (100, 2)
GOAL_CURRENT = (102, 2)
GOAL_VELOCITY = (104, 4)
GOAL_POSITION = (116, 4)
MOVING = (122, 1)
PRESENT_CURRENT = (126, 2)
PRESENT_VELOCITY = (128, 4)
PRESENT_POSITION = (132, 4)
PRESENT_INPUT_VOLTAGE = (144, 2)
PRESENT_TEMPERATURE = (146, 1)
TABLE_SIZE = 147

#: The one contiguous block the driver reads each cycle: present current, velocity and position.
STATE_BLOCK = (PRESENT_CURRENT[0], PRESENT_CURRENT[1] + PRESENT_VELOCITY[1] + PRESENT_POSITION[1])

# --- operating modes (address 11) -------------------------------------------------------------------
MODE_CURRENT = 0
MODE_VELOCITY = 1
MODE_POSITION = 3
MODE_EXTENDED_POSITION = 4
MODE_CURRENT_BASED_POSITION = 5
MODE_PWM = 16
#: Operating modes the driver supports, by their config name.
OPERATING_MODES = {
    "position": MODE_POSITION,
    "current_based_position": MODE_CURRENT_BASED_POSITION,
    "current": MODE_CURRENT,
}

# --- hardware error status bits (address 70) --------------------------------------------------------
HARDWARE_ERROR_BITS = {
    0: "input voltage error",
    2: "overheating",
    3: "motor encoder error",
    4: "electrical shock",
    5: "overload",
}
OVERHEATING_BIT = 2
OVERLOAD_BIT = 5
#: Shutdown register default: overload, electrical shock and overheating turn the torque off.
DEFAULT_SHUTDOWN = (1 << 5) | (1 << 4) | (1 << 2)
#: Status packet error byte: bit 7 is the hardware alert flag; the low 7 bits the result code.
ALERT_BIT = 0x80
STATUS_ERRORS = {
    1: "result fail",
    2: "instruction error",
    3: "CRC error",
    4: "data range error",
    5: "data length error",
    6: "data limit error",
    7: "access error",
}

TICKS_PER_REV = 4096
CENTER_TICK = 2048
RAD_PER_TICK = 2.0 * math.pi / TICKS_PER_REV
RPM_PER_VELOCITY_UNIT = 0.229
RAD_S_PER_VELOCITY_UNIT = RPM_PER_VELOCITY_UNIT * 2.0 * math.pi / 60.0
PWM_LIMIT_UNITS = 885  # 100 % duty
BUS_WATCHDOG_UNIT_S = 0.020
RETURN_DELAY_UNIT_S = 2e-6


@dataclass(frozen=True)
class ServoModel:
    """Constants of one X-series model (e-Manual; torque constant = stall torque / stall current)."""

    name: str
    model_number: int
    current_unit_a: float
    torque_constant_nm_per_a: float
    stall_current_a: float
    no_load_speed_rad_s: float
    default_current_limit: int
    default_position_p_gain: int
    nominal_voltage_v: float

    @property
    def stall_torque_nm(self) -> float:
        return self.torque_constant_nm_per_a * self.stall_current_a


MODELS: dict[str, ServoModel] = {
    model.name: model
    for model in (
        # 4.1 N m at 2.3 A, 46 rpm no load (12 V)
        ServoModel("XM430-W350", 1020, 2.69e-3, 4.1 / 2.3, 2.3, 46 * math.tau / 60, 1193, 800, 12.0),
        # 3.4 N m at 1.3 A, 46 rpm no load (12 V)
        ServoModel("XH430-W350", 1010, 2.69e-3, 3.4 / 1.3, 1.3, 46 * math.tau / 60, 648, 900, 12.0),
        # 0.52 N m at 1.47 A, 104 rpm no load (5 V)
        ServoModel("XL330-M288", 1200, 1.0e-3, 0.52 / 1.47, 1.47, 104 * math.tau / 60, 1750, 400, 5.0),
    )
}
MODELS_BY_NUMBER = {model.model_number: model for model in MODELS.values()}


def signed(value: int, size: int) -> int:
    """Two's-complement interpretation of an unsigned register value of ``size`` bytes."""
    bits = 8 * size
    return value - (1 << bits) if value >= 1 << (bits - 1) else value


def unsigned(value: int, size: int) -> int:
    """The register bytes' unsigned value for a signed integer of ``size`` bytes."""
    return value & ((1 << (8 * size)) - 1)


def to_le_bytes(value: int, size: int) -> list[int]:
    """Little-endian bytes of a (possibly negative) register value."""
    return list(unsigned(int(value), size).to_bytes(size, "little"))


def decode_hardware_error(status: int) -> list[str]:
    """Names of the hardware error bits set in a Hardware Error Status value."""
    return [name for bit, name in HARDWARE_ERROR_BITS.items() if status & (1 << bit)]


@dataclass(frozen=True)
class JointCalibration:
    """How one servo's register values map to its joint's SI values.

    ``joint = direction * (servo_angle - zero_offset) / gear_ratio``, ``servo_angle`` measured from tick 2048.
    """

    model: ServoModel
    zero_offset_rad: float = 0.0
    direction: int = 1
    gear_ratio: float = 1.0

    def position_rad(self, ticks: int) -> float:
        servo = (ticks - CENTER_TICK) * RAD_PER_TICK
        return self.direction * (servo - self.zero_offset_rad) / self.gear_ratio

    def position_ticks(self, joint_rad: float) -> int:
        servo = self.direction * joint_rad * self.gear_ratio + self.zero_offset_rad
        return CENTER_TICK + round(servo / RAD_PER_TICK)

    def velocity_rad_s(self, units: int) -> float:
        return self.direction * units * RAD_S_PER_VELOCITY_UNIT / self.gear_ratio

    def effort_nm(self, current_units: int) -> float:
        """Joint torque from the present current through the model's torque constant and the gear ratio."""
        amps = current_units * self.model.current_unit_a
        return self.direction * amps * self.model.torque_constant_nm_per_a * self.gear_ratio

    def current_units(self, joint_torque_nm: float) -> int:
        amps = self.direction * joint_torque_nm / (self.model.torque_constant_nm_per_a * self.gear_ratio)
        return round(amps / self.model.current_unit_a)
