"""ROS-free simulation core: MuJoCo robots, tasks, domain randomization and gymnasium environments.

Importing this package registers the gymnasium ids ``rl_control/PendulumSwingup-v0``,
``rl_control/CartpoleSwingup-v0``, ``rl_control/ArmReach-v0`` and ``rl_control/QuadrupedWalk-v0``.
"""

from rl_control.envs.gym_env import ENV_IDS, RobotTaskEnv, make_vector_env, register_envs
from rl_control.envs.randomization import ObservationNoiseConfig, RandomizationConfig
from rl_control.envs.simulator import MujocoSimulator
from rl_control.envs.state import RobotState
from rl_control.envs.tasks import DEFAULT_TASK, TASK_NAMES, Task, make_task

register_envs()

__all__ = [
    "DEFAULT_TASK",
    "ENV_IDS",
    "TASK_NAMES",
    "MujocoSimulator",
    "ObservationNoiseConfig",
    "RandomizationConfig",
    "RobotState",
    "RobotTaskEnv",
    "Task",
    "make_task",
    "make_vector_env",
    "register_envs",
]
