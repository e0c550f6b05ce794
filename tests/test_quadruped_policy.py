"""The quadruped's scripted trot, its distillation into an ONNX policy, and the shipped policy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rl_control.envs.gym_env import RobotTaskEnv
from rl_control.graph import ACTOR_NODE, parameter_overrides
from rl_control.learning.distill import DistillConfig, distill
from rl_control.learning.experts import TrotExpert
from rl_control.learning.gym_train import evaluate_policy
from rl_control.paths import packaged_policy, resolve_policy_file, share_dir
from rl_control.policy.contract import contract_of
from rl_control.policy.runtime import OnnxPolicy

SHIPPED = share_dir() / "policies" / "quadruped_walk.onnx"


def test_trot_expert_walks_where_standing_still_does_not() -> None:
    env = RobotTaskEnv("quadruped_walk")
    seeds = range(1_000_000, 1_000_003)  # the same commands and start states for both
    walking = np.mean([evaluate_policy(env, TrotExpert(), 1, seed)[0] for seed in seeds])
    standing = np.mean(evaluate_policy(env, lambda obs: np.zeros(12, np.float32), len(seeds), seeds[0]))
    assert walking > 800.0 and walking > standing + 300.0, (walking, standing)


def test_distill_exports_a_verified_policy_with_the_task_contract(tmp_path: Path) -> None:
    config = DistillConfig(episodes=2, episode_steps=100, epochs=3, eval_episodes=1, hidden_sizes=[32])
    summary = distill(config, tmp_path)
    assert summary["env_steps"] == 200
    assert summary["losses"][-1] < summary["losses"][0]
    assert len(summary["nominal_returns"]) == 1 and len(summary["randomized_returns"]) == 1
    assert json.loads((tmp_path / "summary.json").read_text())["policy"] == str(tmp_path / "policy.onnx")
    policy = OnnxPolicy.from_file(tmp_path / "policy.onnx")
    contract = contract_of(policy, "policy.onnx")
    assert contract is not None and contract.task == "quadruped_walk"
    assert policy.metadata["algorithm"] == "dart_distillation"
    assert json.loads(policy.metadata["distill_config"])["episodes"] == 2
    with pytest.raises(ValueError, match="no scripted expert for task 'arm_reach'"):
        distill(DistillConfig(task="arm_reach"), tmp_path / "arm")


def test_a_shipped_policy_name_resolves_to_its_file(tmp_path: Path) -> None:
    assert packaged_policy("quadruped_walk") == SHIPPED
    assert packaged_policy("no_such_policy") is None and packaged_policy("a/b.onnx") is None
    assert resolve_policy_file("quadruped_walk") == str(SHIPPED)
    existing = tmp_path / "quadruped_walk"
    existing.write_bytes(b"")
    assert resolve_policy_file(str(existing)) == str(existing)  # a file of that name wins
    assert resolve_policy_file("runs/missing.onnx") == "runs/missing.onnx"  # config validation reports it
    overrides = parameter_overrides("deploy", ACTOR_NODE, policy_file="quadruped_walk")
    assert overrides["policy_file"] == str(SHIPPED)


@pytest.mark.slow
def test_shipped_quadruped_policy_walks_to_the_success_threshold() -> None:
    """The shipped ONNX on the nominal model, over the evaluation episodes of docs/howto_quadruped.md."""
    policy = OnnxPolicy.from_file(SHIPPED)
    contract = contract_of(policy, str(SHIPPED))
    assert contract is not None and contract.task == "quadruped_walk"
    env = RobotTaskEnv("quadruped_walk")
    returns = evaluate_policy(env, policy, 10, 1_000_000)
    assert np.mean(returns) >= env.task.success_threshold, returns
