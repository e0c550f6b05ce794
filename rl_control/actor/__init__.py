"""The actor's control logic without ROS: state mapping, pacing, episodes, UTD throttle, policy swaps."""
