"""ROS-free learner core: SAC/TD3 with vectorized critic ensembles, replay, checkpoints, ONNX export."""

from rl_control.learning.checkpoint import CheckpointError
from rl_control.learning.config import PRESET_NAMES, AgentConfig, preset_config
from rl_control.learning.gym_train import (
    ActionScaler,
    evaluate_policy,
    export_run,
    make_env_factory,
    train_gym,
)
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
    "ActionScaler",
    "AgentConfig",
    "CheckpointError",
    "DemonstrationError",
    "ExportError",
    "InvalidPolicyError",
    "Learner",
    "OnnxPolicy",
    "TransitionBatch",
    "evaluate_policy",
    "export_run",
    "load_demonstrations",
    "make_env_factory",
    "preset_config",
    "save_demonstrations",
    "train_gym",
]
