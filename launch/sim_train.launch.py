"""Train in simulation: sim_node (MuJoCo) + actor_node (ONNX policy) + learner_node (online SAC/TD3).

Usage: ros2 launch rl_control sim_train.launch.py config:=/path/to/experiment.yaml
The node set comes from rl_control.graph, which 'rl-control launch --graph sim_train' uses too.
"""

from rl_control.graph import launch_description


def generate_launch_description():
    return launch_description("sim_train")
