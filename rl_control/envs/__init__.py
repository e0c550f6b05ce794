"""ROS-free simulation core: MuJoCo robots, tasks, domain randomization and gymnasium environments.

Importing :mod:`rl_control.envs.gym_env` (or any of its names from this package) registers the gymnasium ids
``rl_control/PendulumSwingup-v0``, ``rl_control/CartpoleSwingup-v0``, ``rl_control/ArmReach-v0`` and
``rl_control/QuadrupedWalk-v0``. Those names load on first use (PEP 562): the actor process needs the
tasks and MuJoCo, not gymnasium.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from rl_control.envs.randomization import ObservationNoiseConfig, RandomizationConfig
from rl_control.envs.simulator import MujocoSimulator
from rl_control.envs.state import RobotState
from rl_control.envs.tasks import DEFAULT_TASK, TASK_NAMES, Task, make_task

if TYPE_CHECKING:
    from rl_control.envs.gym_env import ENV_IDS, RobotTaskEnv, make_vector_env, register_envs

_GYM_NAMES = ("ENV_IDS", "RobotTaskEnv", "make_vector_env", "register_envs")

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


def __getattr__(name: str) -> Any:
    """Import :mod:`rl_control.envs.gym_env` (gymnasium) on first access to one of its names."""
    if name not in _GYM_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module("rl_control.envs.gym_env"), name)
