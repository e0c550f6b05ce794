"""The episode-reset state machine: episode end → reset request → answer and post-reset state → new episode.

The reset itself is a service (the simulator's ``std_srvs/Trigger``); this module sees it through the small
:class:`ResetService` protocol, so it is tested without ROS. Without a service (hardware, ``--no-sim``
graphs) an episode end starts the next episode at once.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from typing import Protocol

from rl_control.actor.inputs import LatestInputs

#: seconds between attempts while the service is not available
RETRY_S = 0.5
#: seconds before an unanswered request is sent again
RESET_TIMEOUT_S = 5.0


class ResetCall(Protocol):
    """One request in flight."""

    def done(self) -> bool:
        """Whether the answer (or a failure) arrived."""
        ...

    def outcome(self) -> tuple[bool, str]:
        """``(success, message)`` once done."""
        ...


class ResetService(Protocol):
    """A reset service client (the node wraps an rclpy ``Trigger`` client)."""

    name: str

    def ready(self) -> bool:
        """Whether a server is available."""
        ...

    def request(self, on_done: Callable[[], None]) -> ResetCall:
        """Send a request; ``on_done`` is called (from any thread) when it completes."""
        ...


class ResetPhase(enum.Enum):
    """Where the reset of a finished episode stands."""

    RUNNING = "running"  # no reset under way: the episode runs
    UNAVAILABLE = "unavailable"  # the episode ended but the service was not available; retried
    REQUESTED = "requested"  # request sent, no answer yet
    AWAITING_STATE = "awaiting_state"  # the reset succeeded; waiting for the first post-reset state


class EpisodeResets:
    """Drives one reset at a time; :meth:`pending` advances it and says whether the robot is still resetting.

    ``lockstep``: the simulator publishes the new episode's first state before it answers, so any joint
    state received after the request counts; in realtime only a state received after the answer does.
    ``on_new_episode`` is called once the reset is complete.
    """

    def __init__(
        self,
        service: ResetService,
        inputs: LatestInputs,
        on_new_episode: Callable[[], None],
        *,
        lockstep: bool,
        warn: Callable[[str], None] = lambda _: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self.inputs = inputs
        self.on_new_episode = on_new_episode
        self.lockstep = lockstep
        self.warn = warn
        self.clock = clock
        self.phase = ResetPhase.RUNNING
        self.failures = 0
        self._call: ResetCall | None = None
        self._sent_at = 0.0
        self._joint_count_at_request = 0
        self._done_at: float | None = None

    def request(self, now: float) -> None:
        """The episode ended: ask for a reset (or note that the service is not available yet)."""
        self._done_at = None
        self._joint_count_at_request = self.inputs.joint_count
        self._sent_at = now
        if not self.service.ready():
            self._call = None
            self.phase = ResetPhase.UNAVAILABLE
            return
        self._call = self.service.request(self._on_done)
        self.phase = ResetPhase.REQUESTED

    def _on_done(self) -> None:
        self._done_at = self.clock()
        self.inputs.wake()

    def _retry(self, now: float, reason: str) -> None:
        self.failures += 1
        self.warn(reason)
        self.request(now)

    def pending(self, now: float) -> bool:
        """Advance the reset; True while it is under way, False once the episode runs (again)."""
        if self.phase is ResetPhase.UNAVAILABLE:
            if now - self._sent_at > RETRY_S:
                self._retry(now, f"reset service {self.service.name} not available; retrying")
            return True
        if self.phase is ResetPhase.REQUESTED:
            assert self._call is not None
            if not self._call.done():
                if now - self._sent_at > RESET_TIMEOUT_S:
                    self._retry(now, f"reset service timed out after {RESET_TIMEOUT_S:g} s; retrying")
                return True
            success, message = self._call.outcome()
            if not success:
                self._retry(now, f"reset service failed: {message}; retrying")
                return True
            self.phase = ResetPhase.AWAITING_STATE
        if self.phase is ResetPhase.AWAITING_STATE:
            if not self._post_reset_state():
                return True
            self.phase = ResetPhase.RUNNING
            self._call = None
            self.on_new_episode()
        return False

    def _post_reset_state(self) -> bool:
        if self.lockstep:
            return self.inputs.joint_count > self._joint_count_at_request
        joints = self.inputs.joints
        return joints is not None and self._done_at is not None and joints.received > self._done_at
