"""Test-wide settings: DDS traffic stays on loopback, in a domain id this pytest run holds alone."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from rl_control.testing.node_process import isolated_ros_domain

if TYPE_CHECKING:  # rclpy loads only in tests that use the probe: core tests run without the ROS wheels
    from rl_control.faults import ScenarioResult
    from rl_control.testing.probe import RosProbe

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Claimed for the whole session (a lock file per id), so concurrent runs on one machine never hear each
# other; tests that need a fresh domain claim another one inside it.
_session = ExitStack()
_session.enter_context(isolated_ros_domain())


def pytest_unconfigure(config) -> None:
    _session.close()


@pytest.fixture
def realtime_scheduling() -> Callable[[threading.Thread | None], int]:
    """The SCHED_FIFO priority of a running thread (0: another policy); skips the test where this process
    may not use SCHED_FIFO (needs root, CAP_SYS_NICE or an rtprio limit): the refusal path is tested
    separately, with the refusal simulated."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except PermissionError:
        pytest.skip("SCHED_FIFO is not permitted here")
    os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))

    def fifo_priority(thread: threading.Thread | None) -> int:
        assert thread is not None and thread.native_id is not None, "the thread is not running"
        if os.sched_getscheduler(thread.native_id) != os.SCHED_FIFO:
            return 0
        return os.sched_getparam(thread.native_id).sched_priority

    return fifo_priority


@pytest.fixture
def refused_realtime_scheduling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every request for a scheduling policy fails as it does without the privilege."""

    def refuse(*_: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)


@pytest.fixture
def ros_domain() -> Iterator[int]:
    """A fresh domain for one test: nothing an earlier test left running can be heard.

    Request it before any fixture that starts nodes (e.g. with ``pytest.mark.usefixtures``)."""
    with isolated_ros_domain() as domain:
        yield domain


@pytest.fixture
def probe(request: pytest.FixtureRequest) -> Iterator[RosProbe]:
    """A small ROS client (own rclpy context) in the test's domain, named after the test module."""
    from rl_control.testing.probe import RosProbe

    with RosProbe(f"{request.module.__name__.rsplit('.', 1)[-1]}_probe") as ros_probe:
        yield ros_probe


@pytest.fixture
def held_scenario(tmp_path: Path, probe: RosProbe) -> Callable[[str], ScenarioResult]:
    """Run a registered fault scenario (``rl-control bench faults``) in this test's domain and directory;
    fails the test with the scenario's figure unless the scenario held. Returns its result."""
    from rl_control.faults import ScenarioContext, load_scenarios

    def run(name: str) -> ScenarioResult:
        result = load_scenarios()[name](ScenarioContext(tmp_path, probe))
        assert result.held, result.figure
        return result

    return run
