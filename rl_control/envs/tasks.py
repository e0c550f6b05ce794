"""Tasks: observation, action mapping, reward, termination and reset distribution of each robot.

A task only uses what a real robot measures (a :class:`RobotState` built from its topics), so the same
object runs in the in-process gym env, behind the sim node, and on hardware. How the actor drives it::

    task = make_task("pendulum_swingup")
    task.reset(rng)                        # episode start: samples goals / commands, clears the last action
    obs = task.observation(state)          # every control tick
    cmd = task.command(policy(obs), state) # action in [-1, 1] -> joint command (also records the action)
    reward = task.reward(obs, action, next_obs); done = task.terminated(next_obs)

``initial_state`` is the sim side's reset distribution (full MuJoCo qpos/qvel); no task uses privileged
simulator quantities in its observation or reward.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache

import mujoco
import numpy as np

from rl_control.envs.robot_model import RobotSpec, load_model, robot_spec
from rl_control.envs.state import RobotState


class Task:
    """Base class; subclasses set the attributes in ``__init__`` and override the hooks."""

    name: str
    robot: str
    joint_names: tuple[str, ...]
    command_interface: str
    command_low: np.ndarray
    command_high: np.ndarray
    observation_dim: int
    action_dim: int
    control_rate_hz: float
    episode_steps: int
    success_threshold: float
    needs_imu: bool = False
    needs_odometry: bool = False

    def __init__(
        self,
        name: str,
        robot: str,
        *,
        control_rate_hz: float,
        episode_steps: int,
        success_threshold: float,
        observation_dim: int,
    ) -> None:
        self.spec: RobotSpec = robot_spec(robot)
        self.name = name
        self.robot = robot
        self.joint_names = self.spec.joint_names
        self.command_interface = self.spec.command_interface
        self.command_low = np.array(self.spec.command_low, dtype=np.float64)
        self.command_high = np.array(self.spec.command_high, dtype=np.float64)
        self.actuated = np.flatnonzero(np.asarray(self.spec.actuator_of_joint) >= 0)
        self.action_dim = len(self.actuated)
        self._action_shape = (self.action_dim,)
        self.observation_dim = observation_dim
        self.control_rate_hz = float(control_rate_hz)
        self.episode_steps = int(episode_steps)
        self.success_threshold = float(success_threshold)
        self._obs = np.zeros(observation_dim, dtype=np.float32)
        #: Named slices of the observation, ``name -> (start, stop)``, covering it in order.
        self.observation_layout: dict[str, tuple[int, int]] = {}

    def _set_observation_layout(self, *parts: tuple[str, int]) -> None:
        """Declare the observation as consecutive named parts ``(name, size)``; they must fill it."""
        start = 0
        for name, size in parts:
            self.observation_layout[name] = (start, start + size)
            start += size
        if start != self.observation_dim:
            raise ValueError(
                f"{self.name}: observation layout covers {start} of {self.observation_dim} values"
            )

    def action_scaling(self) -> dict[str, object]:
        """How an action in [-1, 1] becomes a command: mapping kind, its constants and the command units.

        Default (effort interface): ``command = low + (action + 1) / 2 * (high - low)`` per actuated joint.
        """
        return {
            "kind": "range",
            "low": self.command_low[self.actuated].tolist(),
            "high": self.command_high[self.actuated].tolist(),
            "units": [self.command_units()[i] for i in self.actuated],
        }

    def command_units(self) -> list[str]:
        """Command unit of each joint (joint order): rad or m (position), N·m or N (effort)."""
        angular = {"position": "rad", "effort": "N·m"}[self.command_interface]
        linear = {"position": "m", "effort": "N"}[self.command_interface]
        return [angular if hinge else linear for hinge in joint_is_hinge(self.robot)]

    # ----------------------------------------------------------------- episode and reset distribution
    def reset(self, rng: np.random.Generator) -> None:
        """Start an episode on the actor side (sample goals/commands, forget the last action)."""

    def initial_state(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Sample the full MuJoCo (qpos, qvel) an episode starts from (sim side). Default: the home pose."""
        return np.array(self.spec.home_qpos, dtype=np.float64), np.zeros(self.spec.nv)

    # ----------------------------------------------------------------- per tick
    def observation(self, state: RobotState) -> np.ndarray:
        """float32 [observation_dim] from measured quantities only."""
        raise NotImplementedError

    def check_action(self, action: np.ndarray) -> np.ndarray:
        """Validate an action (shape, finiteness) and clip it to [-1, 1] (float64 copy)."""
        action = np.array(action, dtype=np.float64)
        if action.shape != self._action_shape:
            raise ValueError(f"{self.name}: action must have shape ({self.action_dim},), got {action.shape}")
        if not math.isfinite(action.dot(action)):  # one reduction catches NaN, ±inf (and absurd magnitudes)
            raise ValueError(f"{self.name}: action contains non-finite (or absurdly large) values: {action}")
        np.minimum(action, 1.0, out=action)
        return np.maximum(action, -1.0, out=action)

    def command(self, action: np.ndarray, state: RobotState) -> np.ndarray:
        """Map an action in [-1, 1] to a joint command (float64, joint order), clipped to the limits.

        Default: effort interface, -1 -> command_low, +1 -> command_high; passive joints get 0.
        """
        action = self.check_action(action)
        low, high = self.command_low[self.actuated], self.command_high[self.actuated]
        command = np.zeros(len(self.joint_names))
        command[self.actuated] = np.clip(0.5 * (high + low) + 0.5 * (high - low) * action, low, high)
        return command

    def reward(self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> float:
        """Reward of the transition, computed from observations and the action only."""
        raise NotImplementedError

    def terminated(self, obs: np.ndarray) -> bool:
        """True when the episode must end early (failure); time limits are not terminations."""
        return False

    def safe_command(self, state: RobotState) -> np.ndarray:
        """A command that does no harm: hold the measured position (position iface) or zero effort.

        Raises ``ValueError`` when a position robot's measured position is non-finite (nothing to hold).
        """
        if self.command_interface == "position":
            position = np.asarray(state.position, dtype=np.float64)
            if position.shape != self.command_low.shape or not np.isfinite(position).all():
                raise ValueError(f"{self.name}: cannot hold position, measured position is {position}")
            return np.clip(position, self.command_low, self.command_high)
        return np.zeros(len(self.joint_names))


class PendulumSwingup(Task):
    """Swing a torque-limited rod (max 2 N·m vs 4.9 N·m of gravity) upright and balance it.

    Observation ``[cos θ, sin θ, θ̇]`` (θ = 0 upright). Reward
    ``-(θ² + 0.1 θ̇² + 0.001 τ²) / π²``: 0 upright at rest, -1 hanging at rest.
    """

    def __init__(
        self, name: str = "pendulum_swingup", *, episode_steps: int = 200, success_threshold: float = -60.0
    ) -> None:
        super().__init__(
            name,
            "pendulum",
            control_rate_hz=50.0,
            episode_steps=episode_steps,
            success_threshold=success_threshold,
            observation_dim=3,
        )
        self._set_observation_layout(("cos_angle", 1), ("sin_angle", 1), ("angular_velocity", 1))

    def initial_state(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return np.array([rng.uniform(-math.pi, math.pi)]), np.array([rng.uniform(-1.0, 1.0)])

    def observation(self, state: RobotState) -> np.ndarray:
        theta, obs = float(state.position[0]), self._obs
        obs[0], obs[1], obs[2] = math.cos(theta), math.sin(theta), state.velocity[0]
        return obs.copy()

    def reward(self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> float:
        theta = math.atan2(float(obs[1]), float(obs[0]))
        torque = float(np.clip(action[0], -1.0, 1.0)) * float(self.command_high[0])
        cost = theta * theta + 0.1 * float(obs[2]) ** 2 + 0.001 * torque * torque
        return -cost / (math.pi * math.pi)


class PendulumBalance(PendulumSwingup):
    """Keep the same pendulum upright from a small tilt (|θ| ≤ 0.3 rad): the fastest task to learn.

    Same robot, observation and reward as :class:`PendulumSwingup`; 100-step episodes (2 s). Doing nothing
    lets the rod fall (return about -45); balancing keeps it near 0. For smoke tests of a whole graph and
    a first check of a new set-up before the harder swing-up.
    """

    def __init__(self) -> None:
        super().__init__("pendulum_balance", episode_steps=100, success_threshold=-3.0)

    def initial_state(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return np.array([rng.uniform(-0.3, 0.3)]), np.array([rng.uniform(-0.3, 0.3)])


def _tolerance(x: float, margin: float, value_at_margin: float = 0.1) -> float:
    """Smooth bump: 1 at 0, ``value_at_margin`` at |x| = margin (Gaussian)."""
    scale = math.sqrt(-math.log(value_at_margin)) / margin
    return math.exp(-((x * scale) ** 2))


class CartpoleSwingup(Task):
    """Swing a pole on a force-limited cart upright and keep the cart centred.

    Observation ``[x, cos θ, sin θ, ẋ, θ̇]`` (θ = 0 upright). Reward in [0, 1]: the product of
    upright ``(1 + cos θ)/2``, centred, small-control and small-angular-velocity factors.
    """

    def __init__(self) -> None:
        super().__init__(
            "cartpole_swingup",
            "cartpole",
            control_rate_hz=50.0,
            episode_steps=500,
            success_threshold=350.0,
            observation_dim=5,
        )
        self._set_observation_layout(
            ("cart_position", 1),
            ("cos_pole_angle", 1),
            ("sin_pole_angle", 1),
            ("cart_velocity", 1),
            ("pole_angular_velocity", 1),
        )

    def initial_state(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        qpos = np.array([rng.uniform(-0.1, 0.1), math.pi + rng.uniform(-0.05, 0.05)])
        return qpos, rng.uniform(-0.01, 0.01, size=2)

    def observation(self, state: RobotState) -> np.ndarray:
        obs = self._obs
        theta = float(state.position[1])
        obs[0], obs[1], obs[2] = state.position[0], math.cos(theta), math.sin(theta)
        obs[3], obs[4] = state.velocity[0], state.velocity[1]
        return obs.copy()

    def reward(self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> float:
        upright = 0.5 * (1.0 + float(next_obs[1]))
        centred = 0.5 * (1.0 + _tolerance(float(next_obs[0]), margin=2.0))
        u = float(np.clip(action[0], -1.0, 1.0))
        small_control = (4.0 + (1.0 - u * u)) / 5.0
        small_velocity = 0.5 * (1.0 + _tolerance(float(next_obs[4]), margin=5.0))
        return upright * centred * small_control * small_velocity


class ArmReach(Task):
    """Move the end effector of a 4-joint servo arm to a random target in its workspace.

    Action = joint position deltas on the servo targets: ``target += 0.1 rad × action`` (the first command
    of an episode starts from the measured position; the target never leads the measured position by more
    than 0.3 rad), so a zero action holds the pose and motion per tick is bounded (safe on hardware).
    The episode's target position and the servo targets live in the task: call ``reset()`` per episode.
    Observation ``[q (4), q̇ (4), ee (3), target (3), target - ee (3), servo target - q (4)]``; the
    end-effector position comes from forward kinematics of the measured joint positions. The last part is
    the lead of the servo targets this task last commanded over the measured position (zero before the
    first command of an episode): the targets accumulate the actions, so without it the observation
    would not say where the servos are heading (an actor always knows its own last command).
    Reward ``1 - tanh(d / 0.1) - 0.01 |a|²`` with d the end-effector distance to the target [m].
    """

    DELTA_SCALE = 0.1
    MAX_LEAD = 0.3  # rad: the servo target stays within this of the measured position
    TARGET_RADIUS = (0.15, 0.35)  # m from the shoulder

    def __init__(self) -> None:
        super().__init__(
            "arm_reach",
            "arm",
            control_rate_hz=50.0,
            episode_steps=100,
            success_threshold=65.0,
            observation_dim=21,
        )
        self._fk_model = load_model("arm")
        self._fk_data = mujoco.MjData(self._fk_model)
        self._ee_site = mujoco.mj_name2id(self._fk_model, mujoco.mjtObj.mjOBJ_SITE, "ee")
        self._shoulder = self._fk_model.body("upper_arm").pos + self._fk_model.body("turret").pos
        self._qpos_adr = np.array(self.spec.qpos_adr)
        self.target = np.zeros(3)
        self._servo_target: np.ndarray | None = None
        n = self.action_dim
        self._set_observation_layout(
            ("joint_position", n),
            ("joint_velocity", n),
            ("end_effector", 3),
            ("target", 3),
            ("target_minus_end_effector", 3),
            ("servo_target_lead", n),
        )

    def action_scaling(self) -> dict[str, object]:
        """Position deltas: ``target += DELTA_SCALE * action``, within ``MAX_LEAD`` of the measurement."""
        return {
            "kind": "position_delta",
            "scale": self.DELTA_SCALE,
            "max_lead": self.MAX_LEAD,
            "low": self.command_low.tolist(),
            "high": self.command_high.tolist(),
            "units": self.command_units(),
        }

    def reset(self, rng: np.random.Generator) -> None:
        self._servo_target = None
        radius = rng.uniform(*self.TARGET_RADIUS)
        azimuth = rng.uniform(-math.pi * 0.75, math.pi * 0.75)
        elevation = rng.uniform(-0.2, 0.9)
        direction = np.array(
            [
                math.cos(elevation) * math.cos(azimuth),
                math.cos(elevation) * math.sin(azimuth),
                math.sin(elevation),
            ]
        )
        self.target = self._shoulder + radius * direction

    def end_effector(self, joint_positions: np.ndarray) -> np.ndarray:
        """World position of the end-effector site for the given joint positions (forward kinematics)."""
        self._fk_data.qpos[self._qpos_adr] = joint_positions
        mujoco.mj_kinematics(self._fk_model, self._fk_data)
        return self._fk_data.site_xpos[self._ee_site].copy()

    def initial_state(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        qpos = np.array(self.spec.home_qpos, dtype=np.float64)
        qpos[self._qpos_adr] += rng.uniform(-0.1, 0.1, size=self.action_dim)
        return qpos, np.zeros(self.spec.nv)

    def observation(self, state: RobotState) -> np.ndarray:
        obs, n = self._obs, self.action_dim
        ee = self.end_effector(state.position)
        obs[:n] = state.position
        obs[n : 2 * n] = state.velocity
        obs[2 * n : 2 * n + 3] = ee
        obs[2 * n + 3 : 2 * n + 6] = self.target
        obs[2 * n + 6 : 2 * n + 9] = self.target - ee
        if self._servo_target is None:
            obs[2 * n + 9 :] = 0.0
        else:
            obs[2 * n + 9 :] = self._servo_target - state.position
        return obs.copy()

    def distance(self, obs: np.ndarray) -> float:
        """End-effector distance to the target [m] from an observation."""
        n = self.action_dim
        return float(np.linalg.norm(obs[2 * n + 6 : 2 * n + 9]))

    def command(self, action: np.ndarray, state: RobotState) -> np.ndarray:
        action = self.check_action(action)
        position = np.asarray(state.position, dtype=np.float64)
        base = position if self._servo_target is None else self._servo_target
        target = base + self.DELTA_SCALE * action
        # Never let the target run away from the measured pose (no wind-up against an obstacle).
        target = np.clip(target, position - self.MAX_LEAD, position + self.MAX_LEAD)
        self._servo_target = np.clip(target, self.command_low, self.command_high)
        return self._servo_target.copy()

    def reward(self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> float:
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        return 1.0 - math.tanh(self.distance(next_obs) / 0.1) - 0.01 * float(a @ a)


@cache
def joint_is_hinge(robot: str) -> tuple[bool, ...]:
    """Per joint of ``robot`` (joint order): True for a hinge (angular), False for a slide (linear)."""
    model = load_model(robot)
    ids = [
        mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name) for name in robot_spec(robot).joint_names
    ]
    return tuple(bool(model.jnt_type[i] == mujoco.mjtJoint.mjJNT_HINGE) for i in ids)


def projected_gravity(quat_wxyz: np.ndarray) -> np.ndarray:
    """Unit gravity direction in the body frame from the body orientation (w, x, y, z), world <- body."""
    w, x, y, z = quat_wxyz.tolist()
    norm2 = w * w + x * x + y * y + z * z
    if not norm2 > 0.0:
        raise ValueError(f"IMU orientation quaternion is zero or non-finite: {quat_wxyz}")
    s = 2.0 / norm2
    # -(third row of the rotation matrix), i.e. R^T (0, 0, -1)
    return np.array([-s * (x * z - w * y), -s * (y * z + w * x), -(1.0 - s * (x * x + y * y))])


class QuadrupedWalk(Task):
    """Track a commanded base velocity (vx, vy, yaw rate) with a 12-DoF PD-servoed quadruped.

    Action: ``target = home pose + 0.25 rad × action`` per joint. Observation (48):
    ``[base lin. vel. (3, odometry), gyro (3), projected gravity (3, IMU), command (3),
    q - q_home (12), q̇ (12), last action (12)]``. Terminates when the body tilts past 60°.
    """

    ACTION_SCALE = 0.25
    COMMAND_LOW = np.array([0.2, -0.2, -0.5])
    COMMAND_HIGH = np.array([1.0, 0.2, 0.5])
    TRACKING_SIGMA2 = 0.1  # [m²/s²]: standing still scores ~0.25 per step on average, perfect tracking ~1.5
    needs_imu = True
    needs_odometry = True

    def __init__(self) -> None:
        super().__init__(
            "quadruped_walk",
            "quadruped",
            control_rate_hz=50.0,
            episode_steps=1000,
            success_threshold=900.0,
            observation_dim=48,
        )
        self._qpos_adr = np.array(self.spec.qpos_adr)
        self.default_position = np.array(self.spec.home_qpos)[self._qpos_adr]
        self.velocity_command = np.zeros(3)
        self.last_action = np.zeros(self.action_dim)
        # Targets need clamping only if home ± ACTION_SCALE leaves the servo range.
        self._clamp_targets = bool(
            np.any(self.default_position - self.ACTION_SCALE < self.command_low)
            or np.any(self.default_position + self.ACTION_SCALE > self.command_high)
        )
        n = self.action_dim
        self._set_observation_layout(
            ("base_linear_velocity", 3),
            ("angular_velocity", 3),
            ("projected_gravity", 3),
            ("velocity_command", 3),
            ("joint_position_offset", n),
            ("joint_velocity", n),
            ("last_action", n),
        )

    def action_scaling(self) -> dict[str, object]:
        """Offsets from the home pose: ``target = default_position + ACTION_SCALE * action``."""
        return {
            "kind": "position_offset",
            "scale": self.ACTION_SCALE,
            "offset": self.default_position.tolist(),
            "low": self.command_low.tolist(),
            "high": self.command_high.tolist(),
            "units": self.command_units(),
        }

    def set_velocity_command(self, vx: float, vy: float, yaw_rate: float) -> None:
        """Set the tracked command (teleop); clipped to the trained range."""
        self.velocity_command = np.clip([vx, vy, yaw_rate], self.COMMAND_LOW, self.COMMAND_HIGH)

    def reset(self, rng: np.random.Generator) -> None:
        self.velocity_command = rng.uniform(self.COMMAND_LOW, self.COMMAND_HIGH)
        self.last_action = np.zeros(self.action_dim)

    def initial_state(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        qpos = np.array(self.spec.home_qpos, dtype=np.float64)
        qpos[self._qpos_adr] += rng.uniform(-0.1, 0.1, size=self.action_dim)
        yaw = rng.uniform(-math.pi, math.pi)
        qpos[3:7] = [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]
        return qpos, np.zeros(self.spec.nv)

    def observation(self, state: RobotState) -> np.ndarray:
        if state.imu_orientation is None or state.imu_angular_velocity is None:
            raise ValueError(f"{self.name}: the observation needs the IMU (orientation and angular velocity)")
        if state.base_linear_velocity is None:
            raise ValueError(f"{self.name}: the observation needs odometry (base_linear_velocity)")
        parts = (
            state.base_linear_velocity,
            state.imu_angular_velocity,
            projected_gravity(state.imu_orientation),
            self.velocity_command,
            state.position - self.default_position,
            state.velocity,
            self.last_action,
        )
        return np.concatenate(parts, dtype=np.float32)

    def command(self, action: np.ndarray, state: RobotState) -> np.ndarray:
        action = self.check_action(action)
        self.last_action = action
        target = self.ACTION_SCALE * action
        target += self.default_position
        if self._clamp_targets:
            np.minimum(target, self.command_high, out=target)
            np.maximum(target, self.command_low, out=target)
        return target

    def reward(self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> float:
        vx, vy, vz, wx, wy, wz, gx, gy, _, cx, cy, cyaw = next_obs[0:12].tolist()
        action_rate = next_obs[36:48] - obs[36:48]  # next_obs carries the (clipped) action just taken
        lin_err = (cx - vx) ** 2 + (cy - vy) ** 2
        yaw_err = (cyaw - wz) ** 2
        sigma2 = self.TRACKING_SIGMA2
        return (
            math.exp(-lin_err / sigma2)
            + 0.5 * math.exp(-yaw_err / sigma2)
            - 2.0 * vz * vz
            - 0.05 * (wx * wx + wy * wy)
            - 1.0 * (gx * gx + gy * gy)
            - 0.01 * float(action_rate.dot(action_rate))
        )

    def terminated(self, obs: np.ndarray) -> bool:
        return bool(obs[8] > -0.5)  # gravity's body-z component: -1 upright, > -0.5 tilted past 60°


_TASKS: dict[str, Callable[[], Task]] = {
    "pendulum_swingup": PendulumSwingup,
    "pendulum_balance": PendulumBalance,
    "cartpole_swingup": CartpoleSwingup,
    "arm_reach": ArmReach,
    "quadruped_walk": QuadrupedWalk,
}
TASK_NAMES: tuple[str, ...] = tuple(_TASKS)
DEFAULT_TASK = "pendulum_swingup"


def make_task(name: str, *, control_rate_hz: float | None = None) -> Task:
    """Create a fresh task instance by name (one of :data:`TASK_NAMES`).

    ``control_rate_hz`` (the experiment's ``control_rate_hz``) replaces the task's default rate, so the task,
    the simulator, the actor and the evaluation all run at the configured one.
    """
    try:
        factory = _TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; available: {', '.join(TASK_NAMES)}") from None
    task = factory()
    if control_rate_hz is not None:
        if not (math.isfinite(control_rate_hz) and control_rate_hz > 0.0):
            raise ValueError(
                f"task {name!r}: control_rate_hz must be a finite number > 0, got {control_rate_hz}"
            )
        task.control_rate_hz = float(control_rate_hz)
    return task
