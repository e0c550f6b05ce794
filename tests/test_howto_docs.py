"""The sim-to-real how-tos run as written: their commands in a short form, their experiment file checked."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from rl_control.cli import main
from rl_control.config import load_experiment
from rl_control.envs import make_task
from rl_control.learning import Learner
from rl_control.policy.contract import PolicyContract
from rl_control.transitions import TransitionBatch

ROOT = Path(__file__).resolve().parents[1]
SIM_TO_REAL = ROOT / "docs" / "howto_sim_to_real.md"
REAL_ROBOT = ROOT / "docs" / "howto_real_robot.md"
NOT_RUN = "<!-- not run by tests"  # marks a block that needs a robot, e.g. "<!-- not run by tests: robot -->"
#: Long-running options and their short form (same commands, less work).
SHORT_FORM = (
    (
        re.compile(r"--steps \d+"),
        "--steps 120 --learning-starts 60",
    ),  # train refuses steps <= learning_starts
    (re.compile(r"--eval-every \d+"), "--eval-every 120"),
    (re.compile(r"--episodes \d+"), "--episodes 1"),
    (re.compile(r"(--param \S+=[-\d.e]+:[-\d.e]+):\d+"), r"\1:2"),
    (re.compile(r"--minutes [\d.]+"), "--minutes 0 --quick"),  # bench sim-to-real: deploy only, 2 episodes
)


def fenced_blocks(path: Path, language: str) -> list[tuple[str, bool]]:
    """``(code, runnable)`` of each fenced ``language`` block; a preceding :data:`NOT_RUN` comment marks
    a block not runnable here."""
    text = path.read_text(encoding="utf-8")
    pattern = re.compile(rf"(<!--[^\n]*-->\s*\n)?```{language}\n(.*?)```", re.DOTALL)
    matches = pattern.finditer(text)
    return [(match.group(2), not (match.group(1) or "").startswith(NOT_RUN)) for match in matches]


def short_form(command: str) -> str:
    for pattern, replacement in SHORT_FORM:
        command = pattern.sub(replacement, command)
    return command


def test_short_form_rewrites_the_long_options() -> None:
    command = "train --steps 3000 --eval-every 1000; sweep a --param x=0.5:2:4 --episodes 9; b --minutes 10"
    assert short_form(command) == (
        "train --steps 120 --learning-starts 60 --eval-every 120; sweep a --param x=0.5:2:2 --episodes 1; "
        "b --minutes 0 --quick"
    )


@pytest.mark.slow
def test_sim_to_real_howto_commands_run_in_short_form(tmp_path: Path) -> None:
    blocks = [code for code, runnable in fenced_blocks(SIM_TO_REAL, "bash") if runnable]
    assert len(blocks) >= 3, "the how-to lost its commands"
    script = short_form("\n".join(blocks))
    assert "rl-control train" in script and "rl-control sweep" in script
    (tmp_path / "config").symlink_to(ROOT / "config")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, f"{script}\n--- output\n{result.stdout}\n{result.stderr}"
    assert "rl-control bench sim-to-real" in script
    produced_files = ("runs/arm_dr/policy.onnx", "runs/arm_nominal/policy.onnx", "runs/arm_sweep/sweep.png")
    for produced in (*produced_files, "runs/sim_to_real/sim_to_real.json"):
        assert (tmp_path / produced).is_file(), produced
    figures = json.loads((tmp_path / "runs/sim_to_real/sim_to_real.json").read_text())
    # --quick deploys 2 episodes per policy on the emulated arm, both on the same targets
    assert len(figures["emulated_returns_before"]) == len(figures["nominal_policy_emulated_returns"]) == 2
    assert figures["kept_fraction"] == pytest.approx(
        figures["emulated_return_before"] / figures["sim_return_arm_targets"]
    )
    assert figures["emulated_return_before_stderr"] >= 0.0 and "train_seed" not in figures  # --runs given


def test_real_robot_experiment_file_passes_config_check_against_a_sim_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the how-to's steps leave (the sim run of config/pendulum_sim.yaml, its latest policy and the
    recorded demonstrations) is accepted by the how-to's experiment file, as the nodes would accept it."""
    documents = [yaml.safe_load(code) for code, _ in fenced_blocks(REAL_ROBOT, "yaml")]
    experiment = next(doc for doc in documents if isinstance(doc, dict) and "learner_node" in doc)
    sim = load_experiment(ROOT / "config" / "pendulum_sim.yaml")
    task = make_task(sim.shared.task)
    contract = PolicyContract.for_task(
        task, controller=sim.shared.controller, control_rate_hz=sim.shared.control_rate_hz
    )
    run_dir = tmp_path / experiment["/**"]["ros__parameters"]["run_dir"]
    agent, metadata = sim.learner_node.agent, contract.to_metadata()
    dims = (task.observation_dim, task.action_dim)
    learner = Learner.create_or_resume(run_dir, *dims, agent, metadata=metadata)
    policy_file = experiment["actor_node"]["ros__parameters"]["policy_file"]
    learner.export_onnx(tmp_path / policy_file, stochastic=True)
    rows = 4
    hanging = np.tile(np.array([-1.0, 0.0, 0.0], np.float32), (rows, 1))
    demos = TransitionBatch(
        obs=hanging,
        action=np.zeros((rows, 1), np.float32),
        reward=np.full(rows, -1.0, np.float32),
        next_obs=hanging,
        terminated=np.zeros(rows, np.float32),
        truncated=np.zeros(rows, np.float32),
    )
    for demo in experiment["learner_node"]["ros__parameters"]["demo_files"]:
        (tmp_path / demo).parent.mkdir(parents=True, exist_ok=True)
        demos.to_npz(tmp_path / demo)
    config = tmp_path / "my_robot.yaml"
    config.write_text(yaml.safe_dump(experiment), encoding="utf-8")
    previous = Path.cwd()
    os.chdir(tmp_path)  # the how-to's paths are relative to where the commands run
    try:
        assert main(["config", "check", str(config)]) == 0, capsys.readouterr().err
    finally:
        os.chdir(previous)
