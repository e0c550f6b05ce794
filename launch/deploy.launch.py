"""Deploy a fixed ONNX policy: actor_node (deterministic) + sim_node, or a real robot with with_sim:=false.

Usage: ros2 launch rl_control deploy.launch.py config:=/path/to/experiment.yaml
The node set comes from rl_control.graph, which 'rl-control launch --graph deploy' uses too.
"""

from rl_control.graph import launch_description


def generate_launch_description():
    return launch_description("deploy")
