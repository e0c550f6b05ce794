"""Absolute-deadline pacing and thread scheduling for the actor's control thread (no ROS needed).

A plain rclpy timer wakes up through the executor, so its tick error is at the mercy of the executor's
other work and of the OS sleep granularity (ms-scale p99). :class:`DeadlineClock` instead keeps absolute
deadlines ``t0 + k * period`` (no drift), sleeps until shortly before the deadline and spin-waits the rest.
The spin margin adapts to the sleep overshoot actually observed on this machine.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from collections.abc import Callable

import numpy as np

from rl_control.actor.statistics import RollingStats

#: Bound on how long another Python thread can hold the GIL before the control thread gets it back.
GIL_SWITCH_INTERVAL_S = 2e-5


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


def tune_process_for_control() -> None:
    """Process settings for a Python control loop (idempotent; called once everything is imported).

    * GIL switch interval 20 µs (default 5 ms): bounds how long another thread keeps the GIL from the
      control thread;
    * ``gc.freeze()``: the objects alive after start-up (onnxruntime, rclpy, ...) move to the permanent
      generation, so a full collection no longer walks them (unfrozen, one walk stalled the control thread
      0.2 s on the 2-core dev machine: the collector runs with the GIL held).
    """
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    gc.collect()
    gc.freeze()
