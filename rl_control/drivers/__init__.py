"""Robot hardware drivers: bus logic without ROS (the ROS nodes in rl_control.ros are thin adapters)."""
