"""The nodes and ``rl-control config check`` agree: what a node refuses at start, the check reports too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("rclpy")

from rl_control.cli import main
from rl_control.envs import make_task
from rl_control.learning import Learner, preset_config
from rl_control.policy.contract import PolicyContract
from rl_control.testing.node_process import NodeProcess

pytestmark = [pytest.mark.ros, pytest.mark.usefixtures("ros_domain")]

STARTUP_S = 90.0  # node start-up is slow on a loaded 2-core machine


def write_experiment(tmp_path: Path, shared: dict[str, Any], **sections: dict[str, Any]) -> Path:
    document = {"/**": {"ros__parameters": shared}}
    document.update({name: {"ros__parameters": params} for name, params in sections.items()})
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def refusal(module: str, config: Path, tmp_path: Path) -> str:
    """Start ``module`` on ``config``; it must exit 2 (configuration error). Returns its output."""
    node = NodeProcess(module, config, log_path=tmp_path / f"{module}.log").start()
    try:
        assert node.wait(STARTUP_S) == 2, node.output()
    finally:
        node.stop()
    return node.output()


def test_learner_node_and_config_check_refuse_the_same_run_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    Learner.create_or_resume(run_dir, 3, 1, preset_config("droq", device="cpu"))  # a droq run's run.json
    config = write_experiment(
        tmp_path, {"task": "pendulum_swingup", "run_dir": str(run_dir)}, learner_node={"preset": "redq"}
    )
    assert main(["config", "check", str(config)]) == 2
    reported = capsys.readouterr().err
    refused = refusal("learner_node", config, tmp_path)
    for text in ("agent config conflicts with the stored run", "num_critics: run has 2, requested 10"):
        assert text in reported and text in refused


def test_actor_node_and_config_check_refuse_a_policy_whose_contract_disagrees(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task = make_task("arm_reach")
    contract = PolicyContract.for_task(task, controller="sim_arm_controller")
    learner = Learner.create_or_resume(
        tmp_path / "trained",
        task.observation_dim,
        task.action_dim,
        preset_config("sac", hidden_sizes=[8], device="cpu"),
        metadata=contract.to_metadata(),
    )
    policy = tmp_path / "policy.onnx"
    learner.export_onnx(policy, stochastic=False)
    shared = {"task": "arm_reach", "controller": "arm_controller", "mode": "deploy", "run_dir": str(tmp_path)}
    config = write_experiment(tmp_path, shared, actor_node={"policy_file": str(policy), "reset_service": ""})
    assert main(["config", "check", str(config)]) == 2
    reported = capsys.readouterr().err
    refused = refusal("actor_node", config, tmp_path)
    text = "policy contract field 'controller': the policy was trained with 'sim_arm_controller'"
    assert text in reported and text in refused
