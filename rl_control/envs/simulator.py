"""The robot in MuJoCo behind the same interface as the hardware: commands in, measured state out.

No task logic lives here beyond applying a reset state. Domain randomization (model parameters sampled per
episode, action latency, observation noise and delay, pushes) happens here, so everything the sim node
publishes already carries it. Model fields are changed in place and restored from a pristine copy before
every reset; derived constants are recomputed with ``mj_setConst`` (MuJoCo's documented way after editing
masses, inertias or armature).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from functools import cache

import mujoco
import numpy as np

from rl_control.envs.randomization import RandomizationConfig
from rl_control.envs.robot_model import load_model, robot_spec
from rl_control.envs.state import RobotState

log = logging.getLogger(__name__)

# Model fields the randomization edits; those ``mj_setConst`` derives from them are found by probing.
_RANDOMIZED_FIELDS = (
    "geom_friction",
    "body_mass",
    "body_inertia",
    "body_ipos",
    "dof_damping",
    "dof_armature",
    "dof_frictionloss",
    "actuator_gainprm",
    "actuator_biasprm",
    "actuator_forcerange",
)
_STAT_FIELDS = ("meaninertia", "meanmass", "meansize", "extent", "center")
_NOISE_BLOCK = 64  # control steps of observation noise drawn per generator call
_MIN_MASS_FRACTION = 0.1  # added mass never takes a body below 10 % of its nominal mass


def _as_index(indices: np.ndarray) -> slice | np.ndarray:
    """A slice when ``indices`` are consecutive (a view, no gather), else the index array itself."""
    indices = np.asarray(indices, dtype=np.intp)
    if indices.size == 0:
        return slice(0, 0)
    if np.array_equal(indices, np.arange(indices[0], indices[0] + indices.size)):
        return slice(int(indices[0]), int(indices[0]) + indices.size)
    return indices


def _model_arrays(model: mujoco.MjModel) -> dict[str, np.ndarray]:
    arrays = {}
    for name in dir(model):
        if not name.startswith("_"):
            value = getattr(model, name)
            if isinstance(value, np.ndarray):
                arrays[name] = value
    return arrays


@cache
def _fields_to_restore(robot: str) -> tuple[str, ...]:
    """The randomized model fields plus every field ``mj_setConst`` derives from them (probed once)."""
    probe = load_model(robot)
    before = {name: value.copy() for name, value in _model_arrays(probe).items()}
    for name in _RANDOMIZED_FIELDS:
        getattr(probe, name)[...] *= 1.37
    probe.body_ipos[...] += 0.01
    mujoco.mj_setConst(probe, mujoco.MjData(probe))
    derived = [
        name for name, value in _model_arrays(probe).items() if not np.array_equal(value, before[name])
    ]
    return tuple(sorted(set(derived) | set(_RANDOMIZED_FIELDS)))


class MujocoSimulator:
    """One robot in MuJoCo stepping at the control rate with ``decimation`` physics steps per control step."""

    def __init__(
        self,
        robot: str,
        *,
        control_rate_hz: float,
        randomization: RandomizationConfig | None = None,
        seed: int = 0,
        fit_physics_step: bool = False,
    ) -> None:
        """``fit_physics_step``: when the control period is not a multiple of the model's physics step,
        shorten the step to the largest one dividing the period (e.g. 1 ms for 1 kHz control of a 5 ms
        model) instead of raising; sim_node uses it to serve fast control rates."""
        self.robot = robot
        self.spec = robot_spec(robot)
        self.model = load_model(robot)
        self.data = mujoco.MjData(self.model)
        # Views into MjData, cached: each attribute access on MjData builds a new array object.
        self._data_ctrl = self.data.ctrl
        self._data_qpos = self.data.qpos
        self._data_qvel = self.data.qvel
        self._data_qfrc_actuator = self.data.qfrc_actuator
        self._data_sensordata = self.data.sensordata
        self._nominal = load_model(robot)
        self.randomization = randomization if randomization is not None else RandomizationConfig()
        self.joint_names = self.spec.joint_names
        self.command_interface = self.spec.command_interface
        self.physics_dt = float(self.model.opt.timestep)
        if not (math.isfinite(control_rate_hz) and control_rate_hz > 0):
            raise ValueError(f"{robot}: control_rate_hz must be > 0, got {control_rate_hz}")
        period = 1.0 / control_rate_hz
        if fit_physics_step:
            steps = math.ceil(period / self.physics_dt - 1e-9)
            if abs(steps * self.physics_dt - period) > 1e-9 + 1e-6 * period:
                self.physics_dt = period / steps
                self.model.opt.timestep = self._nominal.opt.timestep = self.physics_dt
        self.decimation = max(1, round(period / self.physics_dt))
        if abs(self.decimation * self.physics_dt - period) > 1e-9 + 1e-6 * period:
            raise ValueError(
                f"{robot}: control period {period:.6g} s is not a multiple of the physics step "
                f"{self.physics_dt:g} s; pick a control rate dividing {1.0 / self.physics_dt:g} Hz"
            )
        self.control_dt = self.decimation * self.physics_dt
        self._rng = np.random.default_rng(seed)

        n = len(self.joint_names)
        self._n = n
        self._qpos_adr = np.asarray(self.spec.qpos_adr, dtype=np.intp)
        self._dof_adr = np.asarray(self.spec.dof_adr, dtype=np.intp)
        act = np.asarray(self.spec.actuator_of_joint)
        self._actuated_joints = np.flatnonzero(act >= 0)
        self._actuator_ids = act[self._actuated_joints].astype(np.intp)
        self._command_low = np.array(self.spec.command_low)
        self._command_high = np.array(self.spec.command_high)
        self._ctrl = np.zeros(self.model.nu)
        self._command_shape = (n,)
        self._identity_actuation = bool(np.array_equal(self._actuator_ids, np.arange(n)))

        # Sensors: IMU (orientation, gyro, accelerometer) and simulated odometry, when the model has them.
        self._imu_slices: dict[str, slice] = {}
        for key, sensor in (
            ("imu_orientation", "imu_quat"),
            ("imu_angular_velocity", "imu_gyro"),
            ("imu_linear_acceleration", "imu_acc"),
            ("base_linear_velocity", "base_vel"),
        ):
            sensor_id = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_SENSOR, sensor)
            if sensor_id >= 0:
                adr, dim = int(self.model.sensor_adr[sensor_id]), int(self.model.sensor_dim[sensor_id])
                self._imu_slices[key] = slice(adr, adr + dim)

        # Flat measurement vector: [position n | velocity n | effort n | imu/odometry channels | stamp].
        layout: dict[str, slice] = {
            "position": slice(0, n),
            "velocity": slice(n, 2 * n),
            "effort": slice(2 * n, 3 * n),
        }
        offset = 3 * n
        for key, sensor_slice in self._imu_slices.items():
            dim = sensor_slice.stop - sensor_slice.start
            layout[key] = slice(offset, offset + dim)
            offset += dim
        self._layout = layout
        self._position_slice, self._velocity_slice, self._effort_slice = (
            layout["position"],
            layout["velocity"],
            layout["effort"],
        )
        self._optional_slices = tuple(
            layout.get(key)
            for key in (
                "imu_orientation",
                "imu_angular_velocity",
                "imu_linear_acceleration",
                "base_linear_velocity",
            )
        )
        self._quat_slice = layout.get("imu_orientation")
        self._stamp_index = offset
        self._measure_dim = offset + 1
        sensor_src = [np.arange(s.start, s.stop) for s in self._imu_slices.values()]
        self._qpos_index = _as_index(self._qpos_adr)
        self._dof_index = _as_index(self._dof_adr)
        self._sensor_index = _as_index(np.concatenate(sensor_src) if sensor_src else np.zeros(0, np.intp))
        self._stamp_buffer = np.zeros(1)
        self._noise_std = np.zeros(self._measure_dim)
        self._noise_block = np.zeros((0, self._measure_dim))
        self._noise_row = _NOISE_BLOCK
        self._noise_active = False
        self._history: deque[np.ndarray] = deque()
        self._delay_steps = 0
        self._latency_steps = 0
        self._pending: deque[tuple[int, np.ndarray]] = deque()
        self._physics_step = 0
        self._next_push_time = math.inf
        self.randomization_info: dict[str, float | list[float]] = {}
        self._snapshot_nominal()
        self._last_state = self.reset()

    # ------------------------------------------------------------------ public API
    @property
    def time(self) -> float:
        """Simulated time [s] since the last reset."""
        return float(self.data.time)

    def seed(self, seed: int) -> None:
        """Restart the simulator's random stream (randomization, noise, pushes)."""
        self._rng = np.random.default_rng(seed)

    def reset(self, qpos: np.ndarray | None = None, qvel: np.ndarray | None = None) -> RobotState:
        """Start an episode from full MuJoCo ``qpos``/``qvel`` (default: the home keyframe, at rest).

        Restores the nominal model, then (if enabled) samples this episode's randomization.
        """
        self._restore_nominal()
        self.randomization_info = {}
        cfg = self.randomization
        if cfg.enabled:
            self._randomize_model(cfg)
        model, data = self.model, self.data
        mujoco.mj_resetData(model, data)
        data.qpos[:] = self.spec.home_qpos if qpos is None else self._checked("qpos", qpos, model.nq)
        data.qvel[:] = 0.0 if qvel is None else self._checked("qvel", qvel, model.nv)
        if cfg.enabled and cfg.initial_position_noise > 0:
            q = data.qpos[self._qpos_adr] + self._rng.uniform(-1, 1, self._n) * cfg.initial_position_noise
            data.qpos[self._qpos_adr] = np.clip(q, self.spec.joint_low, self.spec.joint_high)
        if cfg.enabled and cfg.initial_velocity_noise > 0:
            data.qvel[self._dof_adr] += self._rng.uniform(-1, 1, self._n) * cfg.initial_velocity_noise
        self._ctrl[:] = 0.0
        if self.command_interface == "position":
            hold = np.clip(data.qpos[self._qpos_adr], self._command_low, self._command_high)
            self._ctrl[self._actuator_ids] = hold[self._actuated_joints]
        data.ctrl[:] = self._ctrl
        mujoco.mj_forward(model, data)
        self._physics_step = 0
        self._pending.clear()
        self._setup_per_step_randomization(cfg)
        self._last_state = self._measure_state()
        return self._last_state

    def apply_command(self, command: np.ndarray, *, checked: bool = False) -> None:
        """Set the joint command (joint order), held until the next one; takes effect after the latency.

        Position commands are targets of the PD servos (computed at the physics rate by MuJoCo); effort
        commands are torques/forces. Values are clipped to the actuator limits; passive joints are ignored.
        ``checked=True`` skips validation and clipping: only for commands straight from ``Task.command``
        (float64, right shape, finite, within the limits), as the in-process gym env does.
        """
        if checked:
            clipped = command
        else:
            command = np.asarray(command, dtype=np.float64)
            if command.shape != self._command_shape:
                raise ValueError(
                    f"{self.robot}: command must have shape ({self._n},) for joints {self.joint_names}, "
                    f"got {command.shape}"
                )
            if not math.isfinite(command.dot(command)):  # one reduction catches NaN, ±inf, absurd values
                raise ValueError(
                    f"{self.robot}: command has non-finite (or absurdly large) values: {command}"
                )
            clipped = np.minimum(np.maximum(command, self._command_low), self._command_high)
        ctrl = self._ctrl
        if self._identity_actuation:
            ctrl[:] = clipped
        else:
            ctrl[self._actuator_ids] = clipped[self._actuated_joints]
        if self._latency_steps == 0:
            self._data_ctrl[:] = ctrl
        else:
            self._pending.append((self._physics_step + self._latency_steps, ctrl.copy()))

    def step(self) -> RobotState:
        """Advance one control period (``decimation`` physics steps) and return the measured state.

        Every returned state owns fresh arrays: later steps never modify a state already handed out.
        """
        model, data = self.model, self.data
        target = self._physics_step + self.decimation
        pending = self._pending
        while pending and pending[0][0] < target:
            due, ctrl = pending.popleft()
            if due > self._physics_step:
                mujoco.mj_step(model, data, due - self._physics_step)
                self._physics_step = due
            self._data_ctrl[:] = ctrl
        if target > self._physics_step:
            mujoco.mj_step(model, data, target - self._physics_step)
        self._physics_step = target
        if data.time >= self._next_push_time:
            self._push()
        self._last_state = self._measure_state()
        return self._last_state

    def state(self) -> RobotState:
        """The most recent measured state (what the robot's topics carry now)."""
        return self._last_state

    # ------------------------------------------------------------------ measurement
    def _measure_state(self) -> RobotState:
        m = self._gather()
        if self._noise_active:
            if self._noise_row == _NOISE_BLOCK:
                # Draw noise for many steps at once (one generator call instead of one per step).
                self._noise_block = self._rng.standard_normal((_NOISE_BLOCK, self._measure_dim))
                self._noise_block *= self._noise_std
                self._noise_row = 0
            m += self._noise_block[self._noise_row]
            self._noise_row += 1
            quat = self._quat_slice
            if quat is not None:
                q = m[quat]
                q *= 1.0 / math.sqrt(q.dot(q))
        if self._delay_steps:
            self._history.append(m)
            m = self._history.popleft()
        quat, gyro, acc, vel = self._optional_slices
        return RobotState(
            m[self._position_slice],
            m[self._velocity_slice],
            m[self._effort_slice],
            None if quat is None else m[quat],
            None if gyro is None else m[gyro],
            None if acc is None else m[acc],
            None if vel is None else m[vel],
            float(m[self._stamp_index]),
        )

    # ------------------------------------------------------------------ randomization
    def _snapshot_nominal(self) -> None:
        self._restore_fields = _fields_to_restore(self.robot)

    def _restore_nominal(self) -> None:
        model, nominal = self.model, self._nominal
        for name in self._restore_fields:
            np.copyto(getattr(model, name), getattr(nominal, name))
        for name in _STAT_FIELDS:
            value = getattr(nominal.stat, name)
            setattr(model.stat, name, value.copy() if isinstance(value, np.ndarray) else value)

    def _randomize_model(self, cfg: RandomizationConfig) -> None:
        model, rng, info = self.model, self._rng, self.randomization_info

        def uniform(bounds: list[float]) -> float:
            return float(rng.uniform(bounds[0], bounds[1]))

        def uniforms(bounds: list[float], size: int) -> np.ndarray:
            return rng.uniform(bounds[0], bounds[1], size)

        friction = uniform(cfg.friction)
        model.geom_friction[:, 0] = friction
        info["friction"] = friction

        n_bodies = model.nbody - 1  # body 0 is the world
        mass_scale = uniforms(cfg.mass_scale, n_bodies)
        model.body_mass[1:] *= mass_scale
        model.body_inertia[1:] *= mass_scale[:, None]
        base = 1
        added = uniform(cfg.added_mass)
        base_mass = model.body_mass[base]
        new_mass = max(base_mass + added, _MIN_MASS_FRACTION * self._nominal.body_mass[base])
        model.body_inertia[base] *= new_mass / base_mass
        model.body_mass[base] = new_mass
        com_offset = uniforms(cfg.com_offset, 3)
        model.body_ipos[base] += com_offset
        info["mass_scale"] = mass_scale.tolist()
        info["added_mass"] = float(new_mass - base_mass)
        info["com_offset"] = com_offset.tolist()

        joint_dofs = self._dof_adr
        for key, field_name in (
            ("damping_scale", "dof_damping"),
            ("armature_scale", "dof_armature"),
            ("frictionloss_scale", "dof_frictionloss"),
        ):
            scale = uniforms(getattr(cfg, key), self._n)
            getattr(model, field_name)[joint_dofs] *= scale
            info[key] = scale.tolist()

        nu = model.nu
        strength = uniforms(cfg.motor_strength, nu)
        if self.command_interface == "position":
            kp = uniforms(cfg.kp_scale, nu) * strength
            kd = uniforms(cfg.kd_scale, nu) * strength
            model.actuator_gainprm[:, 0] *= kp
            model.actuator_biasprm[:, 1] *= kp
            model.actuator_biasprm[:, 2] *= kd
            info["kp_scale"] = (kp / strength).tolist()
            info["kd_scale"] = (kd / strength).tolist()
        else:
            model.actuator_gainprm[:, 0] *= strength
        model.actuator_forcerange *= strength[:, None]
        info["motor_strength"] = strength.tolist()
        mujoco.mj_setConst(model, self.data)
        log.debug("%s: episode randomization %s", self.robot, info)

    def _setup_per_step_randomization(self, cfg: RandomizationConfig) -> None:
        info, rng = self.randomization_info, self._rng
        self._latency_steps = 0
        self._delay_steps = 0
        self._noise_active = False
        self._next_push_time = math.inf
        self._history.clear()
        if not cfg.enabled:
            return
        latency_low, latency_high = cfg.action_latency_s
        delay_low, delay_high = cfg.observation_delay_s
        self._latency_steps = round(rng.uniform(latency_low, latency_high) / self.physics_dt)
        self._delay_steps = round(rng.uniform(delay_low, delay_high) / self.control_dt)
        info["action_latency_s"] = self._latency_steps * self.physics_dt
        info["observation_delay_s"] = self._delay_steps * self.control_dt
        noise = cfg.observation_noise
        std = self._noise_std
        std[:] = 0.0
        std[self._layout["position"]] = noise.position
        std[self._layout["velocity"]] = noise.velocity
        std[self._layout["effort"]] = noise.effort
        for key in ("imu_angular_velocity", "imu_linear_acceleration", "base_linear_velocity"):
            if key in self._layout:
                std[self._layout[key]] = getattr(noise, key)
        if "imu_orientation" in self._layout:
            quat = self._layout["imu_orientation"]
            std[quat.start + 1 : quat.stop] = 0.5 * noise.imu_orientation  # small rotation: q ≈ (1, δθ/2)
        self._noise_active = bool(np.any(std > 0))
        self._noise_row = _NOISE_BLOCK
        if cfg.push_velocity > 0:
            self._next_push_time = float(rng.uniform(cfg.push_interval_s[0], cfg.push_interval_s[1]))
        info["push_count"] = 0.0
        if self._delay_steps:
            # Until the delay has elapsed the robot reports its initial state.
            initial = self._gather()
            for _ in range(self._delay_steps):
                self._history.append(initial.copy())

    def _gather(self) -> np.ndarray:
        """A new flat, noise-free measurement of the current physics state (one copy from MjData)."""
        self._stamp_buffer[0] = self.data.time
        return np.concatenate(
            (
                self._data_qpos[self._qpos_index],
                self._data_qvel[self._dof_index],
                self._data_qfrc_actuator[self._dof_index],
                self._data_sensordata[self._sensor_index],
                self._stamp_buffer,
            )
        )

    def _push(self) -> None:
        cfg, rng, data = self.randomization, self._rng, self.data
        if self.spec.floating_base:
            data.qvel[0:2] += rng.uniform(-cfg.push_velocity, cfg.push_velocity, 2)
        else:
            data.qvel[self._dof_adr] += rng.uniform(-cfg.push_velocity, cfg.push_velocity, self._n)
        pushes = self.randomization_info.get("push_count", 0.0)
        self.randomization_info["push_count"] = (pushes if isinstance(pushes, float) else 0.0) + 1.0
        self._next_push_time = data.time + float(rng.uniform(cfg.push_interval_s[0], cfg.push_interval_s[1]))

    @staticmethod
    def _checked(name: str, value: np.ndarray, size: int) -> np.ndarray:
        value = np.asarray(value, dtype=np.float64)
        if value.shape != (size,):
            raise ValueError(f"reset {name} must have shape ({size},), got {value.shape}")
        if not np.all(np.isfinite(value)):
            raise ValueError(f"reset {name} contains non-finite values")
        return value
