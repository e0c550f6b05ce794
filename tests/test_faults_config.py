"""Config fault scenarios (no ROS): the issue's hostile files, a mutation sweep of the shipped configs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import rl_control.faults.config as config_faults
from rl_control.faults import ScenarioContext, load_scenarios


def context(tmp_path: Path) -> ScenarioContext:
    return ScenarioContext(tmp_path, probe=None)


def test_every_hostile_file_is_refused_fast_naming_file_and_key(tmp_path: Path) -> None:
    result = load_scenarios()["config_hostile_files"](context(tmp_path))
    assert result.held, result.figure
    assert result.values["refused"] == result.values["attacks"] == 7
    assert result.values["slowest_s"] < result.values["limit_s"]
    # Only the 690 KiB list of joint names must be read through (linear, like any parser); the others are
    # refused within a bounded amount of work whatever the machine's load.
    quick = ["alias_bomb", "nesting_3000_deep", "seed_1e30", "run_dir_empty", "policy_file_a_directory"]
    assert all(result.values[f"{name}_s"] < config_faults.REFUSE_WITHIN_S for name in quick), result.figure


def test_the_mutation_sweep_gives_no_crash_no_hang_and_named_errors(tmp_path: Path) -> None:
    result = load_scenarios()["config_mutation_sweep"](context(tmp_path))
    assert result.held, result.figure
    values = result.values
    assert values["copies"] == 300 and values["crash"] == values["hang"] == values["unnamed"] == 0
    assert values["refused"] > 150, "the mutations must mostly break the configs, or the sweep proves little"
    assert values["refused"] + values["valid"] == 300


def test_the_sweep_is_deterministic(tmp_path: Path) -> None:
    first = config_faults.mutation_sweep(tmp_path / "a", copies=20, seed=3)
    second = config_faults.mutation_sweep(tmp_path / "b", copies=20, seed=3)
    texts = [(tmp_path / d / f"mutant_{i:04d}.yaml").read_text() for d in "ab" for i in range(20)]
    assert texts[:20] == texts[20:]
    assert {k: v for k, v in first.items() if k != "slowest_s"} == {
        k: v for k, v in second.items() if k != "slowest_s"
    }


def test_a_crash_and_a_hang_are_detected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweep's verdict can fail: a loader raising KeyError is a crash, one that blocks is a hang."""

    def crashes(_path: Path) -> None:
        raise KeyError("agent")

    monkeypatch.setattr(config_faults, "load_experiment", crashes)
    assert config_faults.load_outcome(tmp_path / "x.yaml").kind == "crash"
    result = config_faults.config_mutation_sweep(context(tmp_path))
    assert not result.held and result.values["crash"] == 300 and "KeyError" in result.figure

    monkeypatch.setattr(config_faults, "load_experiment", lambda _path: time.sleep(5.0))
    monkeypatch.setattr(config_faults, "HANG_S", 0.2)
    started = time.monotonic()
    assert config_faults.load_outcome(tmp_path / "x.yaml").kind == "hang"
    assert time.monotonic() - started < 2.0, "the hang guard interrupts the load"
