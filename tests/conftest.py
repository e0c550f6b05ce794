"""Test-wide settings: keep DDS traffic on loopback, in a domain of this run's own."""

from __future__ import annotations

import os

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
# One DDS domain per pytest process, so concurrent runs on one machine never talk to each other.
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
os.environ.setdefault("OMP_NUM_THREADS", "1")
