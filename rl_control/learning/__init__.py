"""ROS-free learner core: SAC/TD3 with vectorized critic ensembles, replay, checkpoints, ONNX export."""

from rl_control.learning.config import PRESET_NAMES, AgentConfig, preset_config

__all__ = ["PRESET_NAMES", "AgentConfig", "preset_config"]
