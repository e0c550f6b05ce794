"""What a robot's topics carry, in the task's joint order: the one state type of sim and hardware."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class RobotState:
    """Measured robot state at time ``stamp``; arrays are float64 in the task's joint order.

    Optional fields are ``None`` when the robot has no such sensor (IMU, odometry).
    """

    position: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray
    imu_orientation: np.ndarray | None = None  # quaternion (w, x, y, z), world <- body
    imu_angular_velocity: np.ndarray | None = None  # rad/s, body frame
    imu_linear_acceleration: np.ndarray | None = None  # m/s², body frame (specific force, +g at rest)
    base_linear_velocity: np.ndarray | None = None  # m/s, body frame (odometry twist)
    stamp: float = 0.0  # seconds

    def copy(self) -> RobotState:
        """Deep copy (arrays copied), so a stored state is never changed by a later step."""

        def dup(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a.copy()

        return RobotState(
            position=self.position.copy(),
            velocity=self.velocity.copy(),
            effort=self.effort.copy(),
            imu_orientation=dup(self.imu_orientation),
            imu_angular_velocity=dup(self.imu_angular_velocity),
            imu_linear_acceleration=dup(self.imu_linear_acceleration),
            base_linear_velocity=dup(self.base_linear_velocity),
            stamp=self.stamp,
        )
