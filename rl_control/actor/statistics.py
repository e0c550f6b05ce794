"""Rolling statistics of the actor's control thread (tick errors, latencies, inference times)."""

from __future__ import annotations

import time

import numpy as np


class RollingStats:
    """Fixed-size ring buffer of recent samples; percentiles are computed on demand (any thread)."""

    def __init__(self, capacity: int = 2048) -> None:
        self._values = np.zeros(capacity)
        self._count = 0
        self.total = 0

    @property
    def capacity(self) -> int:
        """How many samples are kept."""
        return int(self._values.size)

    def add(self, value: float) -> None:
        """Record one sample (cheap: one array store)."""
        self._values[self._count % self._values.size] = value
        self._count += 1
        self.total += 1

    def values(self) -> np.ndarray:
        """A copy of the samples currently held (at most ``capacity``)."""
        return self._values[: min(self._count, self._values.size)].copy()

    def recent(self, count: int) -> np.ndarray:
        """A copy of the newest ``count`` samples (fewer if fewer are held)."""
        held = min(self._count, self._values.size)
        count = min(count, held)
        end = self._count % self._values.size if self._count > self._values.size else held
        if count <= end:
            return self._values[end - count : end].copy()
        return np.concatenate((self._values[self._values.size - (count - end) :], self._values[:end]))

    def percentiles(self, qs: tuple[float, ...] = (50.0, 99.0), window: int = 1024) -> tuple[float, ...]:
        """Percentiles of the newest ``window`` samples (NaN when empty).

        The window bounds the cost: the computation holds the GIL (a sort in C), so a large one would delay
        the control thread (sorting 30k samples takes milliseconds on a loaded machine).
        """
        values = self.recent(window)
        if values.size == 0:
            return tuple(float("nan") for _ in qs)
        return tuple(float(v) for v in np.percentile(values, qs))

    def clear(self) -> None:
        """Forget all samples."""
        self._count = 0


class LoopStatistics:
    """The control loop's timing figures, written by the control thread and read by any thread.

    * ``tick_error_us``: lateness of each clock-paced tick (wake time - deadline);
    * ``interval_error_us``: ``|interval between consecutive clock-paced ticks - period|``;
    * ``latency_us``: observation → command, from the receive time of a new joint state to the publish of
      the first command computed from it;
    * ``ticks``: control slots served (an episode end may run the tick logic twice in one slot).
    """

    def __init__(self, capacity: int = 32768) -> None:
        self.tick_error_us = RollingStats(capacity)
        self.interval_error_us = RollingStats(capacity)
        self.latency_us = RollingStats(capacity)
        self.ticks = 0
        self._window_ticks = 0
        self._window_start = time.monotonic()
        self._previous_tick: float | None = None
        self._latency_stamp: object = None

    def record_paced_tick(self, deadline: float, now: float, period_s: float) -> None:
        """A tick woken by the clock at ``now`` for ``deadline``."""
        self.tick_error_us.add((now - deadline) * 1e6)
        if self._previous_tick is not None:
            self.interval_error_us.add(abs(now - self._previous_tick - period_s) * 1e6)
        self._previous_tick = now

    def record_tick(self) -> None:
        """One control slot served."""
        self.ticks += 1
        self._window_ticks += 1

    def record_command(self, state: object, received: float, now: float) -> None:
        """A command was published at ``now``; the first one computed from each new ``state`` is timed."""
        if state is not self._latency_stamp:
            self._latency_stamp = state
            self.latency_us.add((now - received) * 1e6)

    def achieved_rate_hz(self, now: float) -> float:
        """Ticks per second since the previous call (or since construction): the diagnostics window."""
        start, ticks = self._window_start, self._window_ticks
        self._window_start, self._window_ticks = now, 0
        return ticks / max(now - start, 1e-9)

    def clear(self) -> None:
        """Forget every sample (start a measurement window)."""
        for stats in (self.tick_error_us, self.interval_error_us, self.latency_us):
            stats.clear()
        self._previous_tick = None
