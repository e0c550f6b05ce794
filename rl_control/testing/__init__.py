"""Test and benchmark tooling: child node processes with isolated ROS domains, an in-process ROS probe."""
