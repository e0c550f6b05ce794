"""Dynamixel X-series servos on Protocol 2.0: control table, driver bus logic, bus emulator (no rclpy)."""
