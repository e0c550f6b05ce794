"""Absolute-deadline pacing and rolling statistics for the actor's control thread (no ROS needed).

A plain rclpy timer wakes up through the executor, so its tick error is at the mercy of the executor's
other work and of the OS sleep granularity (ms-scale p99). :class:`DeadlineClock` instead keeps absolute
deadlines ``t0 + k * period`` (no drift), sleeps until shortly before the deadline and spin-waits the rest.
The spin margin adapts to the sleep overshoot actually observed on this machine.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import numpy as np


class RollingStats:
    """Fixed-size ring buffer of recent samples; percentiles are computed on demand (any thread)."""

    def __init__(self, capacity: int = 2048) -> None:
        self._values = np.zeros(capacity)
        self._count = 0
        self.total = 0

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


class DeadlineClock:
    """Wakes a thread at absolute deadlines ``start + k * period`` with sub-100 µs error on an idle core.

    ``wait()`` sleeps until ``margin`` before the deadline, then busy-waits. The margin tracks the 99th
    percentile of recent sleep overshoots (clamped to ``[min_margin_s, max_margin_s]``). A deadline passed by
    more than one period counts as missed and the schedule skips ahead (no burst of catch-up ticks).
    """

    def __init__(
        self,
        period_s: float,
        *,
        min_margin_s: float = 1e-4,
        max_margin_s: float = 2e-3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not period_s > 0.0:
            raise ValueError(f"period must be > 0, got {period_s}")
        self.period_s = period_s
        self.min_margin_s = min_margin_s
        self.max_margin_s = max_margin_s
        self.margin_s = min(max(3e-4, min_margin_s), max_margin_s)
        self._clock = clock
        self._next: float | None = None
        self._overshoot = RollingStats(256)
        self.misses = 0
        self.ticks = 0

    def start(self, now: float | None = None) -> None:
        """Anchor the schedule: the first deadline is one period after ``now``."""
        self._next = (self._clock() if now is None else now) + self.period_s

    def wait(self, stop: threading.Event | None = None) -> tuple[float, float]:
        """Block until the next deadline; returns ``(deadline, wake_time)``.

        Returns early (with ``wake_time < deadline``) only if ``stop`` gets set while sleeping.
        """
        if self._next is None:
            self.start()
        assert self._next is not None
        deadline = self._next
        clock = self._clock
        remaining = deadline - clock() - self.margin_s
        if remaining > 0.0:
            planned_wake = deadline - self.margin_s
            if stop is not None:
                if stop.wait(remaining):
                    return deadline, clock()
            else:
                time.sleep(remaining)
            self._overshoot.add(clock() - planned_wake)
        now = clock()
        while now < deadline:
            now = clock()
        self.ticks += 1
        late = now - deadline
        if late > self.period_s:
            skipped = int(late // self.period_s)
            self.misses += skipped
            self._next = deadline + (skipped + 1) * self.period_s
        else:
            self._next = deadline + self.period_s
        if self.ticks % 128 == 0:
            self._adapt_margin()
        return deadline, now

    def _adapt_margin(self) -> None:
        (p99,) = self._overshoot.percentiles((99.0,))
        if np.isfinite(p99):
            self.margin_s = min(max(p99 + 5e-5, self.min_margin_s), self.max_margin_s)


def set_realtime_priority(priority: int) -> str:
    """Give the calling thread SCHED_FIFO ``priority`` (Linux); returns "" on success, else the reason."""
    if priority <= 0:
        return ""
    if not hasattr(os, "sched_setscheduler"):
        return "SCHED_FIFO is not available on this platform"
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except (OSError, ValueError) as exc:
        return f"cannot set SCHED_FIFO priority {priority}: {exc} (needs CAP_SYS_NICE or an rtprio limit)"
    return ""


def raise_ordinary_threads(priority: int = 1) -> int:
    """Give every SCHED_OTHER thread of this process SCHED_FIFO ``priority`` (Linux); returns how many.

    Meant for the DDS threads: they hold locks the control thread's ``publish`` needs, and an ordinary
    thread preempted by other processes while holding one stalls a real-time caller for a whole time slice
    (priority inversion). Threads that refuse are skipped.
    """
    if priority <= 0 or not hasattr(os, "sched_setscheduler"):
        return 0
    raised = 0
    for entry in os.listdir("/proc/self/task"):
        tid = int(entry)
        try:
            if os.sched_getscheduler(tid) == os.SCHED_OTHER:
                os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(priority))
                raised += 1
        except OSError:  # thread exited meanwhile, or no permission
            continue
    return raised
