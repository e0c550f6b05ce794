"""ROS-free simulation core: MuJoCo robots, tasks, domain randomization and gymnasium environments."""

from rl_control.envs.randomization import ObservationNoiseConfig, RandomizationConfig
from rl_control.envs.state import RobotState
from rl_control.envs.tasks import DEFAULT_TASK, TASK_NAMES, Task, make_task

__all__ = [
    "DEFAULT_TASK",
    "TASK_NAMES",
    "ObservationNoiseConfig",
    "RandomizationConfig",
    "RobotState",
    "Task",
    "make_task",
]
