"""Base-velocity commands from a teleop source (``geometry_msgs/Twist`` on ``cmd_vel``), without ROS.

A task that tracks a commanded base velocity (``QuadrupedWalk``) exposes ``set_velocity_command(vx, vy,
yaw_rate)`` (body frame, clipped to the trained range). Each control tick :meth:`VelocityCommandInput.update`
applies the newest command if it is fresh (younger than ``cmd_vel_timeout_s``). Without a fresh one:

* ``stop_when_stale`` (deploy: the ROS convention, as ros2_controllers' ``cmd_vel_timeout``): the robot
  stops; the tick sends the safe command (hold the measured joint positions), as a released deadman does;
* otherwise (training): the task keeps its command, the last fresh one or the one sampled for the episode,
  so an unattended training run learns over the whole command range.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

from rl_control.actor.inputs import LatestInputs, Stamped

VelocityCommand = tuple[float, float, float]


@runtime_checkable
class VelocityCommandTask(Protocol):
    """A task tracking a commanded base velocity."""

    def set_velocity_command(self, vx: float, vy: float, yaw_rate: float) -> None:
        """Track ``vx``, ``vy`` [m/s] and ``yaw_rate`` [rad/s] (body frame), clipped to the trained range."""


def tracks_velocity_command(task: object) -> bool:
    """Whether ``task`` follows velocity commands (the actor then subscribes to ``cmd_vel``)."""
    return isinstance(task, VelocityCommandTask)


def twist_command(linear_x: float, linear_y: float, angular_z: float) -> VelocityCommand:
    """The ``(vx, vy, yaw_rate)`` of a Twist; ValueError naming the field when one is not finite."""
    values = {"linear.x": linear_x, "linear.y": linear_y, "angular.z": angular_z}
    for name, value in values.items():
        if not math.isfinite(value):
            raise ValueError(f"Twist {name} is {value}: velocity commands must be finite")
    return float(linear_x), float(linear_y), float(angular_z)


class VelocityCommandInput:
    """Hands the newest velocity command to the task each tick and says whether the robot may move."""

    def __init__(self, task: VelocityCommandTask, timeout_s: float, *, stop_when_stale: bool) -> None:
        if not (math.isfinite(timeout_s) and timeout_s > 0.0):
            raise ValueError(f"cmd_vel_timeout_s must be a finite number > 0, got {timeout_s}")
        self.task = task
        self.timeout_s = float(timeout_s)
        self.stop_when_stale = stop_when_stale
        self.stops = 0  # ticks stopped for want of a fresh command

    def update(self, inputs: LatestInputs, now: float) -> bool:
        """Apply a fresh command to the task; False when the robot must stop (no fresh one, deploy)."""
        sample: Stamped | None = inputs.velocity_command
        if sample is not None and now - sample.received <= self.timeout_s:
            self.task.set_velocity_command(*sample.value)
            return True
        if self.stop_when_stale:
            self.stops += 1
            return False
        return True
