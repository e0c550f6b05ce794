"""The hand-off box between the actor's executor thread and its control thread.

The executor thread's subscription callbacks store the newest sample of each input by reference (one
attribute assignment: atomic under the GIL) with its local receive time and wake the control thread; the
control thread reads whatever is newest when it ticks and never waits on a lock. This is the role
ros2_controllers' realtime buffer plays between a topic callback and ``update()``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from rl_control.actor.state_mapping import ImuSample, JointSample, OdomSample, robot_state
from rl_control.envs.state import RobotState
from rl_control.safety import StaleWatchdog

JOINTS, IMU, ODOM = "joint_states", "imu", "odom"


@dataclass(frozen=True)
class Stamped:
    """A value with its local monotonic receive time."""

    value: Any
    received: float


class LatestInputs:
    """Newest joint state, IMU, odometry, deadman, human intervention and velocity command, each with its
    receive time.

    Written by the executor thread (``put_*``), read by the control thread. ``arrived`` is set on every
    input so a pacer waiting for new state wakes up; one :class:`StaleWatchdog` per state input the task
    observes is fed with the receive times.
    """

    def __init__(
        self, state_timeout_s: float, *, needs_imu: bool = False, needs_odometry: bool = False
    ) -> None:
        self.state_timeout_s = float(state_timeout_s)
        self.joints: JointSample | None = None
        self.imu: ImuSample | None = None
        self.odom: OdomSample | None = None
        self.enable: Stamped | None = None
        self.intervention: Stamped | None = None
        self.velocity_command: Stamped | None = None  # (vx, vy, yaw_rate) from cmd_vel
        self.joint_count = 0  # joint states received (mapped): a new one since a tick means new state
        self.arrived = threading.Event()
        self.watchdogs = {JOINTS: StaleWatchdog(self.state_timeout_s)}
        if needs_imu:
            self.watchdogs[IMU] = StaleWatchdog(self.state_timeout_s)
        if needs_odometry:
            self.watchdogs[ODOM] = StaleWatchdog(self.state_timeout_s)

    def set_state_timeout(self, timeout_s: float) -> None:
        """Change the stale-state timeout of every watchdog (a run-time parameter change)."""
        self.state_timeout_s = float(timeout_s)
        for watchdog in self.watchdogs.values():
            watchdog.timeout_s = self.state_timeout_s

    def put_joints(self, sample: JointSample) -> None:
        """A new joint state (already mapped to the task's joint order)."""
        self.joints = sample
        self.joint_count += 1
        self.watchdogs[JOINTS].feed(sample.received)
        self.arrived.set()

    def put_imu(self, sample: ImuSample) -> None:
        """A new IMU sample."""
        self.imu = sample
        if IMU in self.watchdogs:
            self.watchdogs[IMU].feed(sample.received)
        self.arrived.set()

    def put_odom(self, sample: OdomSample) -> None:
        """A new odometry sample."""
        self.odom = sample
        if ODOM in self.watchdogs:
            self.watchdogs[ODOM].feed(sample.received)
        self.arrived.set()

    def put_enable(self, enabled: bool, received: float) -> None:
        """The deadman's latest value."""
        self.enable = Stamped(enabled, received)

    def put_intervention(self, action: Any, received: float) -> None:
        """A human action in [-1, 1] (task joint order) that overrides the policy while fresh."""
        self.intervention = Stamped(action, received)

    def put_velocity_command(self, command: tuple[float, float, float], received: float) -> None:
        """A finite base-velocity command ``(vx, vy, yaw_rate)`` (see ``actor.velocity_command``)."""
        self.velocity_command = Stamped(command, received)

    def wake(self) -> None:
        """Wake a control thread waiting for input (e.g. learner progress that may end a throttle pause)."""
        self.arrived.set()

    def fresh(self, sample: Stamped | None, now: float) -> bool:
        """Whether ``sample`` arrived within ``state_timeout_s`` of ``now``."""
        return sample is not None and now - sample.received <= self.state_timeout_s

    def stale(self, now: float) -> bool:
        """True when any observed state input is older than the timeout (each watchdog counts its events)."""
        stale = False
        for watchdog in self.watchdogs.values():  # evaluate all: each counts its own stale events
            stale = watchdog.stale(now) or stale
        return stale

    @property
    def stale_events(self) -> int:
        """Fresh→stale transitions over all observed state inputs."""
        return sum(watchdog.stale_events for watchdog in self.watchdogs.values())

    def state(self, joints: JointSample | None) -> RobotState | None:
        """The robot state a task observes, from ``joints`` and the newest IMU/odometry."""
        return None if joints is None else robot_state(joints, self.imu, self.odom)

    def sensors_match(self, joints: JointSample) -> bool:
        """Lockstep: the IMU and odometry the task needs carry the joint state's stamp."""
        imu, odom = self.imu, self.odom
        if IMU in self.watchdogs and (imu is None or imu.stamp != joints.stamp):
            return False
        return not (ODOM in self.watchdogs and (odom is None or odom.stamp != joints.stamp))
