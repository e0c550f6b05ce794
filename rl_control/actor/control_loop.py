"""The actor's control loop: one pacer per mode drives :class:`ActorCore` ticks and publishes the commands.

Pacing modes (``actor_node.pacing``):

* ``realtime``: the loop's own :class:`DeadlineClock` at ``control_rate_hz`` (a robot that streams state on
  its own schedule; stale state gives the safe command);
* ``lockstep``: one tick per new joint-state stamp (a lockstep simulator that waits for each command); the
  update-to-data throttle may pause it;
* ``triggered``: one tick as soon as a new joint state arrives, in the thread that received it
  (:meth:`ControlLoop.on_state`; ros2_control's read → update → write in one thread), so a command follows
  its state without a thread hand-off or a clock slot; the control thread is the watchdog: with no new
  state for :data:`WATCHDOG_PERIODS` periods it ticks on the clock (and the stale check sends the safe
  command once the state is older than ``state_timeout_s``).
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from rl_control.actor.core import ActorCore, TickResult
from rl_control.actor.episodes import EpisodeResets
from rl_control.actor.inputs import LatestInputs
from rl_control.actor.pacing import DeadlineClock
from rl_control.actor.policy_guard import PolicyTickGuard
from rl_control.actor.state_mapping import JointSample
from rl_control.actor.statistics import LoopStatistics
from rl_control.actor.throttle import UtdThrottle
from rl_control.actor.velocity_command import VelocityCommandInput

logger = logging.getLogger(__name__)

#: triggered pacing: periods without a new joint state before the watchdog ticks on the clock
WATCHDOG_PERIODS = 2.0
#: lockstep: how long one wait for new state lasts before the stop flag is checked again
LOCKSTEP_WAIT_S = 0.1


class Pacing(enum.Enum):
    """What makes the control loop tick."""

    REALTIME = "realtime"
    LOCKSTEP = "lockstep"
    TRIGGERED = "triggered"


class ControlLoop:
    """Ticks :class:`ActorCore` under one pacing mode and hands each command to ``publish_command``.

    :meth:`run` is the control thread's body; :meth:`tick` is one control step at time ``now`` (``run``
    calls it; a caller pacing the loop itself, e.g. an rclpy timer, may call it instead of ``run``).
    ``resets`` is None when episodes restart without a reset service; ``guard`` (the policy authority's
    probe ring and rollback) wraps every core tick when given; ``velocity`` (tasks tracking a base-velocity
    command) applies the newest ``cmd_vel`` to the task before every tick and may stop the robot.
    """

    def __init__(
        self,
        core: ActorCore,
        inputs: LatestInputs,
        publish_command: Callable[[np.ndarray], None],
        *,
        pacing: Pacing,
        rate_hz: float,
        throttle: UtdThrottle,
        resets: EpisodeResets | None = None,
        require_enable: bool = False,
        guard: PolicyTickGuard | None = None,
        velocity: VelocityCommandInput | None = None,
        stats: LoopStatistics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not rate_hz > 0.0:
            raise ValueError(f"control_rate_hz must be > 0, got {rate_hz}")
        self.core = core
        self.inputs = inputs
        self.publish_command = publish_command
        self.pacing = pacing
        self.period_s = 1.0 / rate_hz
        self.throttle = throttle
        self.resets = resets
        self.require_enable = require_enable
        self.core_tick = core.tick if guard is None else guard.tick
        self.velocity = velocity
        self.stats = stats or LoopStatistics()
        self.clock = clock
        self.deadline_clock = DeadlineClock(self.period_s, clock=clock)
        self.watchdog_ticks = 0  # triggered: ticks the watchdog made without new state
        self.fatal_error: str | None = None
        self._tick_lock = threading.Lock()  # triggered: state-driven ticks and the watchdog's never overlap

    @property
    def lockstep(self) -> bool:
        """Whether the loop acts once per new joint-state stamp."""
        return self.pacing is Pacing.LOCKSTEP

    # ------------------------------------------------------------------ pacers
    def run(self, stop: threading.Event) -> None:
        """Tick until ``stop`` is set; a crash is recorded in ``fatal_error`` after a last safe command."""
        try:
            if self.pacing is Pacing.REALTIME:
                self._run_realtime(stop)
            elif self.pacing is Pacing.LOCKSTEP:
                self._run_lockstep(stop)
            else:
                self._run_triggered(stop)
        except Exception as exc:
            logger.exception("actor control loop crashed; sending the safe command")
            self.fatal_error = f"control loop crashed: {type(exc).__name__}: {exc}"
            self.send_safe()

    def _run_realtime(self, stop: threading.Event) -> None:
        clock = self.deadline_clock
        clock.start()
        while not stop.is_set():
            deadline, now = clock.wait(stop)
            if stop.is_set():
                break
            self.stats.record_paced_tick(deadline, now, clock.period_s)
            self.tick(now)

    def _run_lockstep(self, stop: threading.Event) -> None:
        inputs = self.inputs
        last_stamp: float | None = None
        while not stop.is_set():
            inputs.arrived.wait(LOCKSTEP_WAIT_S)
            inputs.arrived.clear()
            now = self.clock()
            if self.resets is not None and self.resets.pending(now):
                continue
            joints = inputs.joints
            if joints is None or joints.stamp == last_stamp:
                continue  # nothing new, or an idle re-publication of a state already acted on
            if not inputs.sensors_match(joints):
                continue  # the IMU/odometry of this step has not arrived yet
            if self._pause_for_learner():
                continue
            last_stamp = joints.stamp
            self.tick(now)

    def on_state(self, now: float) -> None:
        """A new joint state is in the hand-off box (called by the thread that received it).

        Triggered pacing ticks here at once; the other modes leave the tick to the control thread. A crash
        is handled as in :meth:`run` (safe command, ``fatal_error``)."""
        if self.pacing is not Pacing.TRIGGERED or self.fatal_error is not None:
            return
        try:
            with self._tick_lock:
                self.tick(now)
        except Exception as exc:
            logger.exception("actor tick crashed; sending the safe command")
            self.fatal_error = f"control loop crashed: {type(exc).__name__}: {exc}"
            self.send_safe()

    def _run_triggered(self, stop: threading.Event) -> None:
        inputs = self.inputs
        watchdog_s = WATCHDOG_PERIODS * self.period_s
        last_count = inputs.joint_count
        watchdog_at = self.clock() + watchdog_s
        while not stop.wait(max(watchdog_at - self.clock(), 0.0)) and self.fatal_error is None:
            count, joints = inputs.joint_count, inputs.joints
            if count != last_count and joints is not None:  # states arrive: the next check follows the newest
                last_count = count
                watchdog_at = joints.received + watchdog_s
                if watchdog_at > self.clock():
                    continue
            now = self.clock()
            with self._tick_lock:
                self.watchdog_ticks += 1
                self.tick(now)
            watchdog_at = now + self.period_s

    def _pause_for_learner(self) -> bool:
        pending = self.core.transitions.rows
        if not self.throttle.should_pause(pending):
            return False
        if pending:
            self.core.transitions.flush()  # the learner cannot catch up on transitions it never got
        return True

    # ------------------------------------------------------------------ one step
    def tick(self, now: float) -> None:
        """One control step at ``now``: observe, act (or send the safe command), publish."""
        self.stats.record_tick()
        inputs, core = self.inputs, self.core
        joints = inputs.joints
        stale = False  # lockstep: the simulation waits for this command, its state cannot be old
        if not self.lockstep:
            if self.resets is not None and self.resets.pending(now):
                # keep commanding the robot while the reset is under way
                self._publish(core.safe(inputs.state(joints)), joints)
                return
            stale = inputs.stale(now)
        state = inputs.state(joints)
        enabled = True
        if self.require_enable:
            enable = inputs.enable
            enabled = enable is not None and bool(enable.value) and inputs.fresh(enable, now)
        velocity = self.velocity
        if velocity is not None and not velocity.update(inputs, now):
            enabled = False  # no fresh cmd_vel in deploy: the robot stops
        intervention = inputs.intervention
        human = intervention.value if intervention is not None and inputs.fresh(intervention, now) else None
        result = self.core_tick(state, stale=stale, enabled=enabled, intervention=human)
        if result.episode_done:
            if self.resets is not None:
                self.resets.request(now)
                if not self.lockstep:
                    self._publish(core.safe(state), joints)
                return
            core.begin_episode()
            if velocity is not None:
                velocity.update(inputs, now)  # the reset sampled a command: a fresh cmd_vel still rules
            result = self.core_tick(state, stale=stale, enabled=enabled, intervention=human)
        self._publish(result, joints)

    def _publish(self, result: TickResult, joints: JointSample | None) -> None:
        if result.command is None:
            return
        self.publish_command(result.command)
        if joints is not None:
            self.stats.record_command(joints, joints.received, self.clock())

    def send_safe(self) -> None:
        """Publish the safe command for the newest state (shutdown, crash)."""
        joints = self.inputs.joints
        result = self.core.safe(self.inputs.state(joints))
        if result.command is not None:
            self.publish_command(result.command)
