"""Robot state from ROS messages: joint states mapped by name, IMU and odometry to task-frame arrays.

Joint order on the wire is never assumed. :class:`JointStateMapper` maps a ``sensor_msgs/JointState`` to
the task's joint order by name (extra joints are ignored; missing or duplicate joints raise
:class:`StateMappingError`, which the node counts in ``state_errors``),
caching the index map per distinct name list so the per-message cost is one fancy-index per field.
This module only reads message attributes, so it works without a running ROS context.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rl_control.envs.state import RobotState


class StateMappingError(ValueError):
    """A state message cannot be mapped to the task's joints (missing joints, bad array lengths)."""


@dataclass(frozen=True)
class JointSample:
    """One joint state mapped to the task's joint order, with its stamps."""

    position: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray
    stamp: float  # header stamp, seconds (the sender's clock)
    received: float  # local monotonic receive time, seconds


@dataclass(frozen=True)
class ImuSample:
    """IMU orientation quaternion (w, x, y, z), angular velocity and linear acceleration (body frame)."""

    orientation: np.ndarray
    angular_velocity: np.ndarray
    linear_acceleration: np.ndarray
    stamp: float
    received: float


@dataclass(frozen=True)
class OdomSample:
    """Base linear velocity in the body frame (``nav_msgs/Odometry`` twist)."""

    linear_velocity: np.ndarray
    stamp: float
    received: float


def stamp_seconds(header: object) -> float:
    """A ``std_msgs/Header`` stamp as float seconds."""
    stamp = header.stamp  # type: ignore[attr-defined]
    return stamp.sec + stamp.nanosec * 1e-9


class JointStateMapper:
    """Maps ``sensor_msgs/JointState`` messages to the task's joint order by joint name."""

    def __init__(self, joint_names: Sequence[str], topic: str = "/joint_states") -> None:
        if not joint_names:
            raise ValueError("JointStateMapper needs at least one joint name")
        self.joint_names = tuple(joint_names)
        self.topic = topic
        self._cache_key: tuple[str, ...] | None = None
        self._cache_index: np.ndarray | None = None

    def _index(self, names: Sequence[str]) -> np.ndarray:
        key = tuple(names)
        if key != self._cache_key:
            if len(set(key)) != len(key):
                duplicates = sorted(name for name, count in Counter(key).items() if count > 1)
                raise StateMappingError(f"{self.topic}: duplicate joint names {duplicates} in one message")
            where = {name: i for i, name in enumerate(key)}
            missing = [name for name in self.joint_names if name not in where]
            if missing:
                raise StateMappingError(
                    f"{self.topic}: missing joints {missing} (message has {list(key)}, "
                    f"task needs {list(self.joint_names)})"
                )
            self._cache_index = np.array([where[name] for name in self.joint_names], dtype=np.intp)
            self._cache_key = key
        assert self._cache_index is not None
        return self._cache_index

    def _field(self, values: Sequence[float], count: int, index: np.ndarray, field: str) -> np.ndarray:
        if len(values) == 0:
            if field == "position":
                raise StateMappingError(f"{self.topic}: message has names but no positions")
            return np.full(index.size, np.nan)  # absent field: NaN, so an observation using it is rejected
        if len(values) != count:
            raise StateMappingError(f"{self.topic}: {count} names but {len(values)} {field} values")
        return np.asarray(values, dtype=np.float64)[index]

    def map(self, msg: object, received: float) -> JointSample:
        """Map one JointState message; raises :class:`StateMappingError` with the topic and the problem."""
        names = msg.name  # type: ignore[attr-defined]
        index = self._index(names)
        count = len(names)
        return JointSample(
            position=self._field(msg.position, count, index, "position"),  # type: ignore[attr-defined]
            velocity=self._field(msg.velocity, count, index, "velocity"),  # type: ignore[attr-defined]
            effort=self._field(msg.effort, count, index, "effort"),  # type: ignore[attr-defined]
            stamp=stamp_seconds(msg.header),  # type: ignore[attr-defined]
            received=received,
        )


def imu_sample(msg: object, received: float) -> ImuSample:
    """Convert ``sensor_msgs/Imu`` (quaternion x, y, z, w) to an :class:`ImuSample` (w, x, y, z)."""
    q = msg.orientation  # type: ignore[attr-defined]
    w = msg.angular_velocity  # type: ignore[attr-defined]
    a = msg.linear_acceleration  # type: ignore[attr-defined]
    return ImuSample(
        orientation=np.array([q.w, q.x, q.y, q.z]),
        angular_velocity=np.array([w.x, w.y, w.z]),
        linear_acceleration=np.array([a.x, a.y, a.z]),
        stamp=stamp_seconds(msg.header),  # type: ignore[attr-defined]
        received=received,
    )


def odom_sample(msg: object, received: float) -> OdomSample:
    """Convert ``nav_msgs/Odometry`` (twist in the child, i.e. body, frame) to an :class:`OdomSample`."""
    v = msg.twist.twist.linear  # type: ignore[attr-defined]
    stamp = stamp_seconds(msg.header)  # type: ignore[attr-defined]
    return OdomSample(linear_velocity=np.array([v.x, v.y, v.z]), stamp=stamp, received=received)


def robot_state(
    joints: JointSample, imu: ImuSample | None = None, odom: OdomSample | None = None
) -> RobotState:
    """Assemble the :class:`RobotState` a task observes from the latest samples."""
    return RobotState(
        position=joints.position,
        velocity=joints.velocity,
        effort=joints.effort,
        imu_orientation=None if imu is None else imu.orientation,
        imu_angular_velocity=None if imu is None else imu.angular_velocity,
        imu_linear_acceleration=None if imu is None else imu.linear_acceleration,
        base_linear_velocity=None if odom is None else odom.linear_velocity,
        stamp=joints.stamp,
    )
