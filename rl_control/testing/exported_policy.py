"""A real exported rl_control policy with a known constant action, built through the export path (torch)."""

from __future__ import annotations

import json
import math

import torch

from rl_control.envs.tasks import Task
from rl_control.learning.networks import Actor, RunningNormalizer
from rl_control.learning.onnx_policy import build_actor_graph
from rl_control.policy.runtime import FORMAT


def constant_exported_policy(
    obs_dim: int, act_dim: int, action: float, *, version: int = 1, joints: list[str] | None = None
) -> bytes:
    """ONNX bytes of a stochastic rl_control actor whose action is ``action`` for every observation
    (its standard deviation clamped to the minimum: the exploration noise is negligible)."""
    actor = Actor(obs_dim, act_dim, [8], stochastic=True)
    with torch.no_grad():
        actor.mean_head.weight.zero_()
        actor.mean_head.bias.fill_(math.atanh(action))
        assert actor.log_std_head is not None
        actor.log_std_head.weight.zero_()
        actor.log_std_head.bias.fill_(-20.0)
    metadata = {
        "format": FORMAT,
        "obs_dim": str(obs_dim),
        "act_dim": str(act_dim),
        "policy_version": str(version),
        "stochastic": "true",
        "joint_names": json.dumps(joints or []),
    }
    model = build_actor_graph(
        actor, RunningNormalizer(obs_dim, False), stochastic=True, exploration_noise=0.1, metadata=metadata
    )
    return model.SerializeToString()


def constant_task_policy(task: Task, action: float) -> bytes:
    """:func:`constant_exported_policy` with ``task``'s observation and action sizes and joint names."""
    return constant_exported_policy(
        task.observation_dim, task.action_dim, action, joints=list(task.joint_names)
    )
