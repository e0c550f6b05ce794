"""ROS-free learner core: SAC/TD3 with vectorized critic ensembles, replay, checkpoints, ONNX export.

The names below load their module on first use (PEP 562), so ``from rl_control.learning import Learner`` does
not pull in gymnasium or rich, and importing a submodule does not pull in torch where it is not needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    from rl_control.learning.onnx_policy import ExportError
    from rl_control.learning.replay import DemonstrationError, load_demonstrations
    from rl_control.policy.runtime import InvalidPolicyError, OnnxPolicy
    from rl_control.transitions import TransitionBatch

#: public name -> the module that defines it
_MODULES = {
    "CheckpointError": "rl_control.learning.checkpoint",
    "PRESET_NAMES": "rl_control.learning.config",
    "AgentConfig": "rl_control.learning.config",
    "preset_config": "rl_control.learning.config",
    "ActionScaler": "rl_control.learning.gym_train",
    "evaluate_policy": "rl_control.learning.gym_train",
    "export_run": "rl_control.learning.gym_train",
    "make_env_factory": "rl_control.learning.gym_train",
    "train_gym": "rl_control.learning.gym_train",
    "Learner": "rl_control.learning.learner",
    "ExportError": "rl_control.learning.onnx_policy",
    "DemonstrationError": "rl_control.learning.replay",
    "TransitionBatch": "rl_control.transitions",
    "load_demonstrations": "rl_control.learning.replay",
    "InvalidPolicyError": "rl_control.policy.runtime",
    "OnnxPolicy": "rl_control.policy.runtime",
}

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
    "train_gym",
]


def __getattr__(name: str) -> Any:
    """Import the module defining ``name`` on first access."""
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
