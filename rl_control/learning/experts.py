"""Scripted experts (Gymnasium ``Pendulum-v1``, the arm's ``arm_reach``, a trotting gait for
``quadruped_walk``) and demonstration recording.

Pendulum-v1 dynamics (angle 0 = upright): ``theta_dd = 3 g / (2 l) sin(theta) + 3 / (m l^2) u`` with
g = 10, m = l = 1, so with ``E = 0.5 theta_d^2 + 15 (cos(theta) - 1)`` (0 at rest upright) we get
``dE/dt = 3 u theta_d``. Far from upright the expert pumps energy toward 0 (``u = -k E theta_d``,
saturated); near upright a PD law stabilizes. It reaches the typical -150 return of trained agents.

:class:`TrotExpert` walks the ``quadruped_walk`` robot with a trot (diagonal leg pairs half a cycle apart),
shaped by the command and fed back from the observation; it is the teacher that
:mod:`rl_control.learning.distill` turns into an ONNX policy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from rl_control.transitions import FIELDS, TransitionBatch

if TYPE_CHECKING:
    from rl_control.envs.randomization import RandomizationConfig
    from rl_control.envs.tasks import ArmReach

MAX_TORQUE = 2.0
_GRAVITY_TERM = 15.0  # 3 g / (2 l)
_CAPTURE_COS = math.cos(0.6)


def pendulum_expert(obs: np.ndarray) -> np.ndarray:
    """Torque ``[1]`` in newton-metres for a Pendulum-v1 observation ``[cos, sin, theta_dot]``."""
    cos_theta, sin_theta, theta_dot = (float(v) for v in obs)
    theta = math.atan2(sin_theta, cos_theta)
    if cos_theta > _CAPTURE_COS:
        torque = -(10.0 * theta + 2.5 * theta_dot)
    else:
        energy = 0.5 * theta_dot**2 + _GRAVITY_TERM * (cos_theta - 1.0)
        torque = -2.0 * energy * theta_dot if abs(theta_dot) > 1e-3 else MAX_TORQUE
    return np.array([min(max(torque, -MAX_TORQUE), MAX_TORQUE)], np.float32)


@dataclass(frozen=True)
class TrotGait:
    """Gait constants of :class:`TrotExpert` (action units: 1 = the task's 0.25 rad offset from home).

    Found by hand on the nominal model and checked under the default domain randomization: a 3.5 Hz trot
    whose thigh trajectory leads the foot lift by ``thigh_lead`` of a cycle (the PD servos lag by about
    that much), calves lifted in swing and extended in stance for ground clearance.
    """

    frequency_hz: float = 3.5
    thigh_lead: float = 0.2  # cycles
    lift: float = 1.0  # calf flexion at mid-swing
    stance_extension: float = 0.5  # calf extension at mid-stance
    thigh_lift_coupling: float = 0.5  # thigh flexion per unit of lift
    stride_gain: float = 2.0  # stride amplitude per unit of the nominal stride for the target speed
    speed_feedback: float = 0.5  # proportional gain on the forward-speed error (the integral: 5x, clipped)
    speed_integral_limit: float = 0.3  # [m/s]
    yaw_gain: float = 2.0  # differential stride per commanded yaw rate (feed-forward)
    yaw_feedback: float = 0.3  # differential stride per yaw-rate error [1/(rad/s)]
    lateral_feedback: float = 0.5  # lateral step per lateral-speed error, on top of the command
    roll_gain: float = 3.0  # calf extension per unit of projected gravity y (roll), left vs right
    pitch_gain: float = 3.0  # calf extension per unit of projected gravity x (pitch), front vs rear


#: leg order of the task's joints (hip, thigh, calf each): FL, FR, RL, RR
_LEG_PHASE = (0.0, 0.5, 0.5, 0.0)  # trot: FL with RR, FR with RL
_LEG_SIDE = (1.0, -1.0, 1.0, -1.0)  # +1 left
_LEG_FRONT = (1.0, 1.0, -1.0, -1.0)
_FOOT_REACH_M = 0.29  # foot travel per radian of thigh rotation at the home pose
_ACTION_RAD = 0.25  # QuadrupedWalk.ACTION_SCALE


class TrotExpert:
    """A trotting gait for ``quadruped_walk`` observations (stateful: call :meth:`reset` per episode).

    Each leg follows a phase: swing (lift the calf, swing the thigh forward) then stance (extend the calf,
    sweep the thigh back). The stride length tracks the commanded forward speed (feed-forward plus PI
    feedback on the measured one), left and right strides differ for the yaw rate, the hips step
    sideways for the lateral speed, and the calves level the body from the projected gravity.
    """

    def __init__(self, gait: TrotGait | None = None, control_rate_hz: float = 50.0) -> None:
        self.gait = gait or TrotGait()
        self.dt = 1.0 / control_rate_hz
        self.phase = 0.0
        self.speed_integral = 0.0

    def reset(self) -> None:
        """Restart the gait cycle and the speed integrator (a new episode)."""
        self.phase = 0.0
        self.speed_integral = 0.0

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        gait = self.gait
        velocity, gyro, gravity, command = obs[0:3], obs[3:6], obs[6:9], obs[9:12]
        self.phase = (self.phase + gait.frequency_hz * self.dt) % 1.0
        stride_per_speed = 1.0 / (gait.frequency_hz * 4.0 * _FOOT_REACH_M * _ACTION_RAD)
        speed_error = float(command[0] - velocity[0])
        self.speed_integral = float(
            np.clip(
                self.speed_integral + 5.0 * gait.speed_feedback * speed_error * self.dt,
                -gait.speed_integral_limit,
                gait.speed_integral_limit,
            )
        )
        target_speed = float(command[0]) + gait.speed_feedback * speed_error + self.speed_integral
        stride = gait.stride_gain * target_speed * stride_per_speed
        turn = 0.34 * gait.yaw_gain * float(command[2]) * stride_per_speed + gait.yaw_feedback * float(
            command[2] - gyro[2]
        )
        lateral_speed = float(command[1]) + gait.lateral_feedback * float(command[1] - velocity[1])
        sidestep = lateral_speed * stride_per_speed
        action = np.zeros(12)
        for leg in range(4):
            phase = (self.phase + _LEG_PHASE[leg]) % 1.0
            if phase < 0.5:
                lift = gait.lift * math.sin(2.0 * math.pi * phase)
            else:
                lift = -gait.stance_extension * math.sin(2.0 * math.pi * (phase - 0.5))
            amplitude = stride - _LEG_SIDE[leg] * turn
            thigh_phase = (phase + gait.thigh_lead) % 1.0
            if thigh_phase < 0.5:  # swing: back to front along a half cosine
                sweep = math.cos(2.0 * math.pi * thigh_phase)
            else:  # stance: front to back at constant speed
                sweep = -1.0 + 4.0 * (thigh_phase - 0.5)
            level = gait.roll_gain * _LEG_SIDE[leg] * float(gravity[1]) + gait.pitch_gain * _LEG_FRONT[
                leg
            ] * float(gravity[0])
            action[3 * leg] = -sidestep * sweep
            action[3 * leg + 1] = amplitude * sweep - gait.thigh_lift_coupling * lift
            action[3 * leg + 2] = level - lift
        return np.clip(action, -1.0, 1.0).astype(np.float32)


def record_demonstrations(
    env: gym.Env, expert: Callable[[np.ndarray], np.ndarray], episodes: int, seed: int
) -> tuple[TransitionBatch, list[float]]:
    """Roll out ``expert`` (env actions) for ``episodes``; actions are stored normalized to [-1, 1]."""
    space = env.action_space
    if not isinstance(space, gym.spaces.Box):
        raise ValueError(f"demonstrations need a continuous (Box) action space, got {space}")
    low, high = space.low.astype(np.float64), space.high.astype(np.float64)
    rows: dict[str, list[Any]] = {name: [] for name in FIELDS if name != "intervention"}
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done:
            action = np.clip(expert(obs), low, high)
            next_obs, reward, terminated, truncated, _ = env.step(action.astype(space.dtype))
            rows["obs"].append(np.asarray(obs, np.float32))
            rows["action"].append((2.0 * (action - low) / (high - low) - 1.0).astype(np.float32))
            rows["reward"].append(np.float32(reward))
            rows["next_obs"].append(np.asarray(next_obs, np.float32))
            rows["terminated"].append(np.float32(terminated))
            rows["truncated"].append(np.float32(truncated))
            total += float(reward)
            done = terminated or truncated
            obs = next_obs
        returns.append(total)
    return TransitionBatch(**{name: np.stack(values) for name, values in rows.items()}), returns


def write_pendulum_demonstrations(path: Path, episodes: int = 5, seed: int = 10_000) -> list[float]:
    """Record ``episodes`` expert episodes of Pendulum-v1 into ``path`` (npz); returns their returns."""
    env = gym.make("Pendulum-v1")
    try:
        batch, returns = record_demonstrations(env, pendulum_expert, episodes, seed)
    finally:
        env.close()
    batch.to_npz(Path(path))
    return returns


def arm_reach_expert(task: ArmReach, damping: float = 0.05) -> Callable[[np.ndarray], np.ndarray]:
    """A resolved-rate controller for ``arm_reach`` from the observation alone: the damped least-squares
    joint step toward the target (numerical Jacobian of the task's forward kinematics), as a servo target
    ahead of the measured pose (bounded by the task's lead), turned into the action that moves the current
    targets (measured pose + observed lead) there. Reaches returns of about 80 (the threshold is 65)."""
    layout, n = task.observation_layout, task.action_dim
    position, error = slice(*layout["joint_position"]), slice(*layout["target_minus_end_effector"])
    lead = slice(*layout["servo_target_lead"])

    def act(obs: np.ndarray) -> np.ndarray:
        q = np.asarray(obs[position], np.float64)
        ee = task.end_effector(q)
        jacobian = np.empty((3, n))
        for joint in range(n):
            moved = q.copy()
            moved[joint] += 1e-4
            jacobian[:, joint] = (task.end_effector(moved) - ee) / 1e-4
        normal = jacobian @ jacobian.T + damping**2 * np.eye(3)
        step = jacobian.T @ np.linalg.solve(normal, np.asarray(obs[error], np.float64))
        step = np.clip(step, -task.MAX_LEAD, task.MAX_LEAD)
        return np.clip((step - obs[lead]) / task.DELTA_SCALE, -1.0, 1.0).astype(np.float32)

    return act


def write_arm_demonstrations(
    path: Path, episodes: int = 20, seed: int = 10_000, randomization: RandomizationConfig | None = None
) -> list[float]:
    """Record ``episodes`` of :func:`arm_reach_expert` on the arm (optionally randomized) into ``path``."""
    from rl_control.envs.gym_env import RobotTaskEnv
    from rl_control.envs.tasks import ArmReach

    env = RobotTaskEnv("arm_reach", randomization=randomization)
    try:
        assert isinstance(env.task, ArmReach)
        batch, returns = record_demonstrations(env, arm_reach_expert(env.task), episodes, seed)
    finally:
        env.close()
    batch.to_npz(Path(path))
    return returns
