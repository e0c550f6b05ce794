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
