"""The policy contract: in ONNX metadata, checked against a deployment, used by eval and config check."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from rl_control.cli import main
from rl_control.config.schema import SharedConfig
from rl_control.envs import TASK_NAMES, RandomizationConfig, make_task
from rl_control.learning import Learner, OnnxPolicy, preset_config
from rl_control.policy.contract import (
    CHECKED_FIELDS,
    ContractError,
    ContractMismatchError,
    PolicyContract,
    check,
    check_joint_states,
    contract_check_for,
    contract_of,
    expected_contract,
)

TINY = {"hidden_sizes": [8], "batch_size": 8, "learning_starts": 4, "buffer_capacity": 64, "device": "cpu"}


def export_policy(
    path: Path, task_name: str, *, controller: str = "arm_controller", normalize: bool = False
) -> PolicyContract:
    """Export an untrained policy for ``task_name`` carrying its contract (driven by ``controller``)."""
    task = make_task(task_name)
    built = PolicyContract.for_task(task, controller=controller)
    config = preset_config("sac", normalize_observations=normalize, **TINY)
    learner = Learner.create_or_resume(
        path.parent / f"{path.stem}_run",
        task.observation_dim,
        task.action_dim,
        config,
        metadata=built.to_metadata(),
    )
    learner.export_onnx(path, stochastic=False)
    return built


@pytest.mark.parametrize("task_name", TASK_NAMES)
def test_metadata_round_trip_for_every_task(task_name: str) -> None:
    task = make_task(task_name)
    randomization = dataclasses.asdict(RandomizationConfig(enabled=True))
    contract = PolicyContract.for_task(task, controller="ctrl", randomization=randomization)
    metadata = contract.to_metadata()
    assert all(isinstance(value, str) for value in metadata.values())
    assert PolicyContract.from_metadata(metadata) == contract
    assert contract.randomized and contract.randomization["mass_scale"] == [0.9, 1.1]
    stops = [stop for _, stop in task.observation_layout.values()]
    assert stops[-1] == task.observation_dim  # the named slices cover the whole observation
    assert PolicyContract.for_task(task, controller="ctrl").randomization == {"enabled": False}


def test_exported_policy_carries_the_contract_and_its_normalization(tmp_path: Path) -> None:
    path = tmp_path / "arm.onnx"
    built = export_policy(path, "arm_reach", normalize=True)
    policy = OnnxPolicy.from_file(path)
    contract = contract_of(policy, str(path))
    assert contract is not None
    assert contract.observation_normalization is True
    assert dataclasses.replace(contract, observation_normalization=None) == built
    assert (
        contract.action_scaling["kind"] == "position_delta"
        and contract.action_scaling["units"] == ["rad"] * 4
    )
    assert policy.joint_names == list(make_task("arm_reach").joint_names)
    shared = SharedConfig(task="arm_reach", controller="arm_controller")
    contract_check_for(shared, make_task("arm_reach"))(policy)  # the matching deployment accepts it


@pytest.mark.parametrize(
    ("field_name", "shared"),
    [
        ("controller", {"controller": "effort_controller"}),
        ("command_joint_names", {"joint_names": ["wrist", "elbow", "shoulder", "base_yaw"]}),
        ("control_rate_hz", {"control_rate_hz": 100.0}),
    ],
)
def test_a_deployment_that_disagrees_is_refused_naming_the_field(
    tmp_path: Path, field_name: str, shared: dict[str, Any]
) -> None:
    path = tmp_path / "arm.onnx"
    export_policy(path, "arm_reach")
    settings = dataclasses.replace(SharedConfig(task="arm_reach", controller="arm_controller"), **shared)
    with pytest.raises(ContractMismatchError, match=f"'{field_name}'") as info:
        contract_check_for(settings, make_task("arm_reach"))(OnnxPolicy.from_file(path))
    assert info.value.field == field_name


def test_check_reports_each_checked_field() -> None:
    arm = make_task("arm_reach")
    contract = PolicyContract.for_task(arm, controller="c")
    other_values: dict[str, Any] = {
        "task": "other",
        "joint_names": ("a", "b", "c", "d"),
        "command_joint_names": tuple(reversed(arm.joint_names)),
        "controller": "d",
        "command_interface": "effort",
        "control_rate_hz": 49.0,
        "observation_layout": {"joint_position": (0, 17)},
        "action_scaling": {**contract.action_scaling, "scale": 0.2},
    }
    assert set(other_values) == set(CHECKED_FIELDS)
    for name, value in other_values.items():
        with pytest.raises(ContractMismatchError) as info:
            check(contract, dataclasses.replace(contract, **{name: value}))
        assert info.value.field == name
    # Randomization, normalization and version describe the policy; they do not bind a deployment.
    check(contract, dataclasses.replace(contract, randomization={"enabled": True}, package_version="9"))
    check(contract, expected_contract(SharedConfig(task="arm_reach", controller="c"), arm))


def test_received_joint_states_must_hold_every_policy_joint() -> None:
    contract = PolicyContract.for_task(make_task("arm_reach"), controller="c")
    check_joint_states(contract, ["gripper", "wrist", "elbow", "shoulder", "base_yaw"])  # any order, extras
    with pytest.raises(ContractMismatchError, match=r"lack \['elbow'\]"):
        check_joint_states(contract, ["base_yaw", "shoulder", "wrist"])
    with pytest.raises(ContractMismatchError, match=r"repeat \['wrist'\]"):
        check_joint_states(contract, ["base_yaw", "shoulder", "elbow", "wrist", "wrist"])


def test_policies_without_or_with_broken_contracts() -> None:
    class Legacy:
        def __init__(self) -> None:
            self.metadata = {"format": "rl_control.policy.v1"}

    check_policy = contract_check_for(SharedConfig(), make_task("pendulum_swingup"))
    check_policy(Legacy())  # exported before contracts: dimension checks only
    with pytest.raises(ContractError, match="carries no contract"):
        contract_check_for(SharedConfig(), make_task("pendulum_swingup"), require_contract=True)(Legacy())
    metadata = PolicyContract.for_task(make_task("pendulum_swingup"), controller="c").to_metadata()
    with pytest.raises(ContractError, match="'observation_layout' is not valid JSON"):
        PolicyContract.from_metadata({**metadata, "observation_layout": "{"}, "p.onnx")
    without_rate = {key: value for key, value in metadata.items() if key != "control_rate_hz"}
    with pytest.raises(ContractError, match=r"p\.onnx: contract metadata lacks 'control_rate_hz'"):
        PolicyContract.from_metadata(without_rate, "p.onnx")
    with pytest.raises(ContractError, match="contract version '7'"):
        PolicyContract.from_metadata({**metadata, "contract": "7"})


def test_eval_uses_the_policys_own_environment_and_warns_on_another(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "balance.onnx"
    export_policy(path, "pendulum_balance", controller="effort_controller")
    assert main(["eval", str(path), "--episodes", "1"]) == 0
    assert "on rl_control/PendulumBalance-v0" in capsys.readouterr().out
    with caplog.at_level(logging.WARNING, logger="rl_control"):
        assert main(["eval", str(path), "--env", "rl_control/PendulumSwingup-v0", "--episodes", "1"]) == 0
    assert "trained on rl_control/PendulumBalance-v0" in caplog.text
    assert "on rl_control/PendulumSwingup-v0" in capsys.readouterr().out


def write_experiment(tmp_path: Path, shared: dict[str, Any], **sections: dict[str, object]) -> Path:
    document = {"/**": {"ros__parameters": shared}}
    document.update({name: {"ros__parameters": params} for name, params in sections.items()})
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def test_config_check_reports_a_run_directory_trained_with_another_preset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    Learner.create_or_resume(run_dir, 3, 1, preset_config("droq", device="cpu"))  # what a droq run leaves
    shared = {"task": "pendulum_swingup", "run_dir": str(run_dir)}
    same = write_experiment(tmp_path, shared, learner_node={"preset": "droq"})
    assert main(["config", "check", str(same)]) == 0
    assert "OK" in capsys.readouterr().out
    other = write_experiment(tmp_path, shared, learner_node={"preset": "redq"})
    assert main(["config", "check", str(other)]) == 2
    error = capsys.readouterr().err
    assert "learner_node: run_dir" in error and "agent config conflicts with the stored run" in error
    assert "num_critics: run has 2, requested 10" in error
    arm = write_experiment(tmp_path, {**shared, "task": "arm_reach"}, learner_node={"preset": "droq"})
    assert main(["config", "check", str(arm)]) == 2
    assert "run was created for obs_dim=3, act_dim=1, not obs_dim=21, act_dim=4" in capsys.readouterr().err


def test_config_check_reports_a_policy_file_the_actor_would_refuse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "arm.onnx"
    export_policy(policy, "arm_reach", controller="arm_controller")
    shared = {"task": "arm_reach", "controller": "position_controller", "run_dir": str(tmp_path / "run")}
    config = write_experiment(tmp_path, shared, actor_node={"policy_file": str(policy)})
    assert main(["config", "check", str(config)]) == 2
    error = capsys.readouterr().err
    assert f"actor_node: policy_file {policy}" in error and "contract field 'controller'" in error
    assert json.loads(OnnxPolicy.from_file(policy).metadata["command_joint_names"])[0] == "base_yaw"
