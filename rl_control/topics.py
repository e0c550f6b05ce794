"""Topic names of the graph (ROS-free, so tools that only read bags or configs can name them).

A robot's topics are relative names: a node started in a namespace (``-r __ns:=/robot1``,
``rl-control launch --namespace``) uses ``/robot1/joint_states``, ``/robot1/<controller>/commands`` and so on,
so a namespace moves a whole robot. The learner's topics (transitions, policy, progress) are relative too: a
whole graph in a namespace has its own learner; in a multi-robot graph each robot's actor is remapped to the
learner's topics in the graph's namespace (see :mod:`rl_control.graph`). ``/clock`` and ``/diagnostics``
keep the absolute names every ROS tool expects (a multi-robot graph remaps each robot's ``/clock``).
"""

JOINT_STATES_TOPIC = "joint_states"
IMU_TOPIC = "imu"
ODOM_TOPIC = "odom"
CLOCK_TOPIC = "/clock"
DIAGNOSTICS_TOPIC = "/diagnostics"
TRANSITIONS_TOPIC = "rl_control/transitions"
POLICY_TOPIC = "rl_control/policy"
LEARNER_PROGRESS_TOPIC = "rl_control/learner_progress"
#: geometry_msgs/Twist base-velocity commands (the ROS convention), for tasks tracking a velocity command
CMD_VEL_TOPIC = "cmd_vel"
#: The learner's topics: shared by every robot of a graph.
LEARNER_TOPICS = (TRANSITIONS_TOPIC, POLICY_TOPIC, LEARNER_PROGRESS_TOPIC)


def in_namespace(name: str, namespace: str = "/") -> str:
    """The absolute name of topic or service ``name`` for a node in ``namespace`` (absolute names stay)."""
    if name.startswith("/"):
        return name
    return f"{namespace.rstrip('/')}/{name}"
