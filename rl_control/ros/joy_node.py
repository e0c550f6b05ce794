"""joy_node: a joystick (``sensor_msgs/Joy``) as the actor's deadman and human intervention.

Each Joy message is mapped by :class:`rl_control.teleop.JoyMapping` (the ``joy_node`` section of the
experiment file) and republished on the actor's existing inputs: ``std_msgs/Bool`` on
``/rl_control/enable`` (every message: the deadman state) and, while the operator overrides the policy,
``std_msgs/Float64MultiArray`` on ``/rl_control/intervention`` (normalized actions in command joint order).
Joystick drivers repeat the last sample at a fixed rate (``joy_node``'s ``autorepeat_rate``), so a released
or unplugged joystick stops refreshing the deadman and the actor's ``state_timeout_s`` disables the robot.
"""

from __future__ import annotations

from typing import Any

from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Joy
from std_msgs.msg import Bool, Float64MultiArray

from rl_control.envs.tasks import make_task
from rl_control.ros.node_utils import OK, WARN, DiagnosticsPublisher, Status, ThrottledLog, run_node
from rl_control.teleop import JoyMapping

NODE_NAME = "joy_node"
#: the actor's inputs (rl_control/ros/actor_node.py subscribes to the same names with the same QoS)
ENABLE_TOPIC = "/rl_control/enable"
INTERVENTION_TOPIC = "/rl_control/intervention"
INTERACTION_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
JOY_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


class JoyNode:
    """The joystick adapter behind the ``joy_node`` ROS node."""

    def __init__(self, node: Node, config: Any) -> None:
        shared, joy = config.shared, config.joy_node
        command_joints = list(shared.joint_names) or list(make_task(shared.task).joint_names)
        if len(joy.axes) != len(command_joints):
            raise ValueError(
                f"joy_node.axes maps {len(joy.axes)} axes; the command has {len(command_joints)} joints "
                f"({', '.join(command_joints)}): map one axis per joint"
            )
        self.mapping = JoyMapping(
            joy.axes, joy.scales(), joy.deadman_button, joy.intervention_button, joy.deadzone
        )
        self.joy_topic = joy.joy_topic
        self.messages = 0
        self.interventions = 0
        self.bad_messages = 0
        self.enabled = False
        self.fatal_error: str | None = None
        self._warn = ThrottledLog(node.get_logger().warning)
        self._enable_pub = node.create_publisher(Bool, ENABLE_TOPIC, INTERACTION_QOS)
        self._intervention_pub = node.create_publisher(Float64MultiArray, INTERVENTION_TOPIC, INTERACTION_QOS)
        node.create_subscription(Joy, joy.joy_topic, self._on_joy, JOY_QOS)
        self._diagnostics = DiagnosticsPublisher(node, self._status)

    def _on_joy(self, msg: Joy) -> None:
        self.messages += 1
        try:
            command = self.mapping.map(msg.axes, msg.buttons)
        except ValueError as exc:
            self.bad_messages += 1
            self.enabled = False
            self._enable_pub.publish(Bool(data=False))
            self._warn(f"{self.joy_topic}: {exc}; deadman released")
            return
        self.enabled = command.enable
        self._enable_pub.publish(Bool(data=command.enable))
        if command.intervention is not None:
            self.interventions += 1
            self._intervention_pub.publish(Float64MultiArray(data=command.intervention.tolist()))

    def _status(self) -> Status:
        values = {
            "joy_messages": self.messages,
            "intervention_messages": self.interventions,
            "bad_joy_messages": self.bad_messages,
            "deadman_held": self.enabled,
        }
        if self.messages == 0:
            return Status(WARN, f"no {self.joy_topic} received yet", values)
        return Status(OK, "deadman held" if self.enabled else "deadman released", values)

    def shutdown(self) -> None:
        """Release the deadman on the way out."""
        self._enable_pub.publish(Bool(data=False))


def build_joy_node(node: Node, config: Any) -> JoyNode:
    """The ``run_node`` application factory."""
    return JoyNode(node, config)


def main(args: list[str] | None = None) -> int:
    """Entry point of ``joy_node`` (``python -m rl_control.ros.joy_node --ros-args --params-file X``)."""
    return run_node(NODE_NAME, build_joy_node, args)


if __name__ == "__main__":
    raise SystemExit(main())
