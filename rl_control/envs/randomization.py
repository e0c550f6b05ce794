"""Domain-randomization settings (the ``sim_node.randomization`` config section).

Every range is a ``[low, high]`` pair sampled uniformly once per episode (at ``MujocoSimulator.reset``);
a pair with ``low == high`` fixes the value. Scales multiply the nominal value of the MJCF model, so
``[1.0, 1.0]`` leaves that quantity untouched. Observation noise is drawn every control step.
Default ranges follow legged_gym (Rudin et al. 2022) and MuJoCo Playground (Zakka et al. 2025); see
``docs/simulation.md`` for the sources of each one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

from rl_control.config.errors import FieldError


def _check_range(key: str, value: list[float], low_bound: float, high_bound: float) -> None:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise FieldError(key, f"expected a [low, high] pair, got {value!r}")
    low, high = (float(v) for v in value)
    if not (math.isfinite(low) and math.isfinite(high)):
        raise FieldError(key, f"range must be finite, got [{low}, {high}]")
    if low > high:
        raise FieldError(key, f"low {low:g} > high {high:g}")
    if low < low_bound or high > high_bound:
        raise FieldError(
            key, f"range [{low:g}, {high:g}] outside the allowed [{low_bound:g}, {high_bound:g}]"
        )


@dataclass
class ObservationNoiseConfig:
    """Standard deviation of zero-mean Gaussian noise added to each measured channel, every control step."""

    position: float = field(
        default=0.01, metadata={"help": "joint position noise std [rad or m]", "min": 0.0}
    )
    velocity: float = field(
        default=0.5, metadata={"help": "joint velocity noise std [rad/s or m/s]", "min": 0.0}
    )
    effort: float = field(default=0.0, metadata={"help": "joint effort noise std [N·m or N]", "min": 0.0})
    imu_orientation: float = field(
        default=0.03, metadata={"help": "IMU orientation noise std [rad, small rotation]", "min": 0.0}
    )
    imu_angular_velocity: float = field(default=0.1, metadata={"help": "gyro noise std [rad/s]", "min": 0.0})
    imu_linear_acceleration: float = field(
        default=0.1, metadata={"help": "accelerometer noise std [m/s²]", "min": 0.0}
    )
    base_linear_velocity: float = field(
        default=0.05, metadata={"help": "odometry linear velocity noise std [m/s]", "min": 0.0}
    )

    def __post_init__(self) -> None:
        for f in fields(self):
            value = float(getattr(self, f.name))
            if not math.isfinite(value) or value < 0.0:
                raise FieldError(f.name, f"noise std must be finite and >= 0, got {value!r}")
            setattr(self, f.name, value)


@dataclass
class RandomizationConfig:
    """Per-episode domain randomization of the simulated robot (sim side only; never seen by the actor).

    Range fields are ``[low, high]`` pairs; their ``min``/``max`` metadata bound both ends.
    """

    enabled: bool = field(
        default=False, metadata={"help": "master switch: false simulates the nominal model"}
    )
    friction: list[float] = field(
        default_factory=lambda: [0.4, 1.25],
        metadata={
            "help": "sliding friction coefficient of every geom (absolute) [low, high]",
            "min": 0.0,
            "max": 10.0,
        },
    )
    mass_scale: list[float] = field(
        default_factory=lambda: [0.9, 1.1],
        metadata={"help": "scale of every body mass and inertia [low, high]", "min": 0.01, "max": 100.0},
    )
    added_mass: list[float] = field(
        default_factory=lambda: [-1.0, 1.0],
        metadata={
            "help": "mass added to the robot's base (first) body [kg] [low, high]",
            "min": -100.0,
            "max": 100.0,
        },
    )
    com_offset: list[float] = field(
        default_factory=lambda: [-0.05, 0.05],
        metadata={
            "help": "offset of the base body's centre of mass, per axis [m] [low, high]",
            "min": -1.0,
            "max": 1.0,
        },
    )
    damping_scale: list[float] = field(
        default_factory=lambda: [0.8, 1.2],
        metadata={"help": "scale of joint damping [low, high]", "min": 0.0, "max": 100.0},
    )
    armature_scale: list[float] = field(
        default_factory=lambda: [1.0, 1.05],
        metadata={"help": "scale of joint armature [low, high]", "min": 0.0, "max": 100.0},
    )
    frictionloss_scale: list[float] = field(
        default_factory=lambda: [0.9, 1.1],
        metadata={"help": "scale of joint dry friction [low, high]", "min": 0.0, "max": 100.0},
    )
    kp_scale: list[float] = field(
        default_factory=lambda: [0.9, 1.1],
        metadata={"help": "scale of position-servo stiffness kp [low, high]", "min": 0.01, "max": 100.0},
    )
    kd_scale: list[float] = field(
        default_factory=lambda: [0.9, 1.1],
        metadata={"help": "scale of position-servo damping kd [low, high]", "min": 0.0, "max": 100.0},
    )
    motor_strength: list[float] = field(
        default_factory=lambda: [0.9, 1.1],
        metadata={
            "help": "scale of the torque/force every motor delivers (and its limit) [low, high]",
            "min": 0.01,
            "max": 100.0,
        },
    )
    action_latency_s: list[float] = field(
        default_factory=lambda: [0.0, 0.03],
        metadata={
            "help": "delay between a command and its effect, physics-step resolution [s] [low, high]",
            "min": 0.0,
            "max": 1.0,
        },
    )
    observation_delay_s: list[float] = field(
        default_factory=lambda: [0.0, 0.02],
        metadata={
            "help": "age of the reported state, whole control steps [s] [low, high]",
            "min": 0.0,
            "max": 1.0,
        },
    )
    observation_noise: ObservationNoiseConfig = field(
        default_factory=ObservationNoiseConfig, metadata={"help": "per-channel measurement noise"}
    )
    push_interval_s: list[float] = field(
        default_factory=lambda: [10.0, 15.0],
        metadata={"help": "time between external pushes [s] [low, high]", "min": 0.01, "max": 3600.0},
    )
    push_velocity: float = field(
        default=1.0,
        metadata={
            "help": "max velocity kick of a push: base xy [m/s] (floating base) or joints [rad/s]; 0 = off",
            "min": 0.0,
            "max": 10.0,
        },
    )
    initial_position_noise: float = field(
        default=0.05,
        metadata={
            "help": "extra uniform noise on the initial joint positions [rad or m]",
            "min": 0.0,
            "max": 3.2,
        },
    )
    initial_velocity_noise: float = field(
        default=0.1,
        metadata={
            "help": "extra uniform noise on the initial joint velocities [rad/s]",
            "min": 0.0,
            "max": 10.0,
        },
    )

    def __post_init__(self) -> None:
        for f in fields(self):
            meta = f.metadata
            value = getattr(self, f.name)
            if f.type == "list[float]":
                _check_range(f.name, value, meta["min"], meta["max"])
                setattr(self, f.name, [float(v) for v in value])
            elif f.type == "float":
                number = float(value)
                if not math.isfinite(number) or number < meta["min"] or number > meta["max"]:
                    raise FieldError(
                        f.name, f"{value!r} outside the allowed [{meta['min']:g}, {meta['max']:g}]"
                    )
                setattr(self, f.name, number)
        if isinstance(self.observation_noise, dict):
            self.observation_noise = ObservationNoiseConfig(**self.observation_noise)
