"""Command safety, independent of ROS: limits, non-finite rejection, stale-state watchdog, slew limit.

Every command the actor publishes goes through :class:`CommandSafety`:

* a command containing NaN/inf is never returned; the safe command replaces it;
* commands are clipped to the per-joint ``[low, high]`` limits;
* an optional slew-rate limit bounds the change between consecutive policy commands
  (``max_rate`` in command units per second, 0 = off);
* :meth:`CommandSafety.safe_command` gives the configured fallback: ``"hold"`` (position interface:
  hold the last finite measured position; velocity/effort interfaces: zero) or ``"zero"`` (all zeros,
  clipped into the limits). ``None`` means no safe command is known yet (a position-controlled robot
  whose position was never measured): the caller must publish nothing.

:class:`StaleWatchdog` tells when the newest state is older than a timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

SAFE_COMMAND_MODES = ("hold", "zero")
COMMAND_INTERFACES = ("position", "velocity", "effort")


@dataclass
class SafetyCounters:
    """How often each safety mechanism acted (monotonic counts, for diagnostics)."""

    clipped: int = 0  # commands with at least one joint clipped to its limits
    non_finite: int = 0  # commands rejected because they held NaN/inf
    rate_limited: int = 0  # commands slowed down by the slew-rate limit
    safe_commands: int = 0  # safe commands issued (stale/invalid state, no policy, ...)
    suppressed: int = 0  # ticks where nothing safe was known, so nothing was published


class CommandSafety:
    """Makes every outgoing joint command finite, within limits and (optionally) slew-limited."""

    def __init__(
        self,
        low: Sequence[float] | np.ndarray,
        high: Sequence[float] | np.ndarray,
        *,
        command_interface: str,
        safe_mode: str = "hold",
        max_rate: float | Sequence[float] | np.ndarray = 0.0,
        joint_names: Sequence[str] = (),
    ) -> None:
        self.low = np.asarray(low, dtype=np.float64).reshape(-1).copy()
        self.high = np.asarray(high, dtype=np.float64).reshape(-1).copy()
        if self.low.shape != self.high.shape:
            raise ValueError(f"command limits: low has {self.low.size} joints, high has {self.high.size}")
        if not (np.all(np.isfinite(self.low)) and np.all(np.isfinite(self.high))):
            raise ValueError(f"command limits must be finite, got low={self.low}, high={self.high}")
        if np.any(self.low > self.high):
            bad = int(np.argmax(self.low > self.high))
            raise ValueError(f"command limits: joint {bad}: low {self.low[bad]} > high {self.high[bad]}")
        if command_interface not in COMMAND_INTERFACES:
            raise ValueError(f"command_interface {command_interface!r} not in {COMMAND_INTERFACES}")
        if safe_mode not in SAFE_COMMAND_MODES:
            raise ValueError(f"safe_command {safe_mode!r} not in {SAFE_COMMAND_MODES}")
        rate = np.broadcast_to(np.asarray(max_rate, dtype=np.float64), self.low.shape).copy()
        if np.any(rate < 0) or not np.all(np.isfinite(rate)):
            raise ValueError(f"max_rate must be finite and >= 0 (0 = off), got {rate}")
        if joint_names and len(joint_names) != self.low.size:
            raise ValueError(f"{len(joint_names)} joint names for {self.low.size} command limits")
        self.size = self.low.size
        self.command_interface = command_interface
        self.safe_mode = safe_mode
        self.max_rate = rate
        self.joint_names = tuple(joint_names)
        self.counters = SafetyCounters()
        self._last_position: np.ndarray | None = None
        self._last_command: np.ndarray | None = None
        self._zero = np.clip(np.zeros(self.size), self.low, self.high)

    @property
    def last_command(self) -> np.ndarray | None:
        """The last command returned by :meth:`filter` or :meth:`safe_command` (a copy), if any."""
        return None if self._last_command is None else self._last_command.copy()

    def observe_position(self, position: np.ndarray | None) -> None:
        """Remember the measured joint positions (only finite ones) as the ``hold`` target."""
        if position is None:
            return
        position = np.asarray(position, dtype=np.float64)
        if position.shape != (self.size,):
            raise ValueError(f"position has shape {position.shape}, expected ({self.size},)")
        if self._last_position is None:
            if np.all(np.isfinite(position)):
                self._last_position = position.copy()
            return
        finite = np.isfinite(position)
        self._last_position[finite] = position[finite]

    def safe_command(self, position: np.ndarray | None = None) -> np.ndarray | None:
        """The configured fallback command, or ``None`` if none is known (then publish nothing)."""
        self.observe_position(position)
        if self.safe_mode == "zero" or self.command_interface != "position":
            command = self._zero.copy()
        elif self._last_position is not None:
            command = np.clip(self._last_position, self.low, self.high)
        else:
            self.counters.suppressed += 1
            return None
        self.counters.safe_commands += 1
        self._last_command = command
        return command.copy()

    def filter(
        self, command: np.ndarray, dt: float = 0.0, position: np.ndarray | None = None
    ) -> tuple[np.ndarray | None, bool]:
        """Make ``command`` safe; returns ``(command_to_publish, accepted)``.

        ``accepted`` is False when the command was non-finite and the safe command replaced it (which may be
        ``None``: publish nothing). ``dt`` is the time since the previous command, for the slew limit.
        """
        command = np.asarray(command, dtype=np.float64).reshape(-1)
        if command.size != self.size:
            raise ValueError(f"command has {command.size} values, expected {self.size} ({self.joint_names})")
        self.observe_position(position)
        if not np.all(np.isfinite(command)):
            self.counters.non_finite += 1
            return self.safe_command(), False
        safe = np.clip(command, self.low, self.high)
        if np.any(safe != command):
            self.counters.clipped += 1
        if self._last_command is not None and dt > 0.0 and np.any(self.max_rate > 0.0):
            step = np.where(self.max_rate > 0.0, self.max_rate * dt, np.inf)
            limited = np.clip(safe, self._last_command - step, self._last_command + step)
            if np.any(limited != safe):
                self.counters.rate_limited += 1
                safe = np.clip(limited, self.low, self.high)
        self._last_command = safe
        return safe.copy(), True


class StaleWatchdog:
    """Reports a state as stale when no update arrived for ``timeout_s`` (monotonic clock by default)."""

    def __init__(self, timeout_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if not timeout_s > 0.0:
            raise ValueError(f"state_timeout_s must be > 0, got {timeout_s}")
        self.timeout_s = float(timeout_s)
        self._clock = clock
        self._last: float | None = None
        self.stale_events = 0  # transitions from fresh to stale
        self._was_stale = True

    def feed(self, when: float | None = None) -> None:
        """Record that a fresh state arrived at ``when`` (default: now)."""
        self._last = self._clock() if when is None else when

    def age(self, now: float | None = None) -> float:
        """Seconds since the last update (inf if never fed)."""
        if self._last is None:
            return float("inf")
        return (self._clock() if now is None else now) - self._last

    def stale(self, now: float | None = None) -> bool:
        """True when no update arrived within the timeout (or never); counts fresh→stale transitions."""
        is_stale = self.age(now) > self.timeout_s
        if is_stale and not self._was_stale:
            self.stale_events += 1
        self._was_stale = is_stale
        return is_stale
