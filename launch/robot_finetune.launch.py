"""Fine-tune on a real robot: actor_node + learner_node against the robot's ros2_control topics.

Usage: ros2 launch rl_control robot_finetune.launch.py config:=/path/to/experiment.yaml
The node set comes from rl_control.graph, which 'rl-control launch --graph robot_finetune' uses too.
"""

from rl_control.graph import launch_description


def generate_launch_description():
    return launch_description("robot_finetune")
