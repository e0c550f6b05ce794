"""Test-wide settings: DDS traffic stays on loopback, in a domain id this pytest run holds alone."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from rl_control.ros.node_process import isolated_ros_domain
from rl_control.ros.probe import RosProbe

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Claimed for the whole session (a lock file per id), so concurrent runs on one machine never hear each
# other; tests that need a fresh domain claim another one inside it.
_session = ExitStack()
_session.enter_context(isolated_ros_domain())


def pytest_unconfigure(config) -> None:
    _session.close()


@pytest.fixture
def ros_domain() -> Iterator[int]:
    """A fresh domain for one test: nothing an earlier test left running can be heard.

    Request it before any fixture that starts nodes (e.g. with ``pytest.mark.usefixtures``)."""
    with isolated_ros_domain() as domain:
        yield domain


@pytest.fixture
def probe(request: pytest.FixtureRequest) -> Iterator[RosProbe]:
    """A small ROS client (own rclpy context) in the test's domain, named after the test module."""
    with RosProbe(f"{request.module.__name__.rsplit('.', 1)[-1]}_probe") as ros_probe:
        yield ros_probe
