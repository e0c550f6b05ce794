"""What the nodes would refuse at start, checked without starting them (``rl-control config check``).

Each check calls the function the node itself runs at start, so the command and the nodes cannot disagree:

- learner_node: :func:`rl_control.learning.learner.check_run_directory` (a run directory created for other
  dimensions or an incompatible agent config, or holding checkpoints with ``resume: false``) and, for a
  new run with ``start_from``, :func:`rl_control.learning.learner.check_start_run`;
- actor_node (``policy_file`` set): :func:`rl_control.actor.policy_swap.check_policy` (dimensions, joints,
  a test inference) and the policy contract (:func:`rl_control.policy.contract.contract_check_for`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rl_control.config.schema import ExperimentConfig


def learner_start_problem(config: ExperimentConfig) -> str | None:
    """Why learner_node would exit at start with this :class:`ExperimentConfig`, or ``None``."""
    from rl_control.envs.tasks import make_task
    from rl_control.learning.checkpoint import CheckpointError, RunDirectory
    from rl_control.learning.learner import check_run_directory, check_start_run

    task = make_task(config.shared.task)
    learner = config.learner_node
    try:
        check_run_directory(
            Path(config.shared.run_dir),
            task.observation_dim,
            task.action_dim,
            learner.agent,
            resume=learner.resume,
        )
    except (ValueError, FileExistsError) as error:
        return f"learner_node: run_dir {config.shared.run_dir}: {error}"
    if learner.start_from and not RunDirectory(Path(config.shared.run_dir)).manifests():
        try:
            check_start_run(Path(learner.start_from), task.observation_dim, task.action_dim, learner.agent)
        except (ValueError, CheckpointError) as error:
            return f"learner_node: start_from {learner.start_from}: {error}"
    return None


def actor_start_problem(config: ExperimentConfig) -> str | None:
    """Why actor_node would refuse its ``policy_file`` with this :class:`ExperimentConfig`, or ``None``."""
    from rl_control.actor.policy_swap import PolicyRejectedError, check_policy
    from rl_control.envs.tasks import make_task
    from rl_control.policy.contract import ContractError, contract_check_for
    from rl_control.policy.runtime import InvalidPolicyError, OnnxPolicy

    policy_file = config.actor_node.policy_file
    if not policy_file:
        return None
    task = make_task(config.shared.task)
    try:
        policy = OnnxPolicy.from_file(policy_file)
        check_policy(policy, task, task.joint_names)
        contract_check_for(config.shared, task)(policy)
    except (InvalidPolicyError, PolicyRejectedError, ContractError) as error:
        return f"actor_node: policy_file {policy_file}: {error}"
    return None


def start_problems(config: ExperimentConfig) -> list[str]:
    """Every reason a node of this experiment would refuse to start (empty when all would start)."""
    return [problem for problem in (learner_start_problem(config), actor_start_problem(config)) if problem]
