"""Test-wide settings: DDS traffic stays on loopback, in a domain id this pytest run holds alone."""

from __future__ import annotations

import os
from contextlib import ExitStack

from rl_control.ros.node_process import isolated_ros_domain

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Claimed for the whole session (a lock file per id), so concurrent runs on one machine never hear each
# other; tests that need a fresh domain claim another one inside it.
_session = ExitStack()
_session.enter_context(isolated_ros_domain())


def pytest_unconfigure(config) -> None:
    _session.close()
