"""ROS-free learner core: SAC/TD3 with vectorized critic ensembles, replay, checkpoints, ONNX export."""

from rl_control.learning.checkpoint import CheckpointError
from rl_control.learning.config import PRESET_NAMES, AgentConfig, preset_config
from rl_control.learning.learner import Learner
from rl_control.learning.onnx_policy import ExportError, InvalidPolicyError, OnnxPolicy
from rl_control.learning.replay import (
    DemonstrationError,
    TransitionBatch,
    load_demonstrations,
    save_demonstrations,
)

__all__ = [
    "PRESET_NAMES",
    "AgentConfig",
    "CheckpointError",
    "DemonstrationError",
    "ExportError",
    "InvalidPolicyError",
    "Learner",
    "OnnxPolicy",
    "TransitionBatch",
    "load_demonstrations",
    "preset_config",
    "save_demonstrations",
]
