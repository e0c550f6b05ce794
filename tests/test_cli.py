"""The ``rl-control`` command line: help, and the train -> export -> eval path a newcomer follows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rl_control.cli import BENCHMARKS, build_parser, main


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for command in ("launch", "train", "eval", "export", "record", "bench", "config"):
        assert command in text
    assert "first steps" in text


def test_bench_rejects_options_of_other_benchmarks(capsys: pytest.CaptureFixture[str]) -> None:
    assert set(BENCHMARKS) == {
        "learner",
        "sample-efficiency",
        "sim",
        "control-loop",
        "faults",
        "driver",
        "actors",
        "main-job",
        "sim-to-real",
    }
    with pytest.raises(SystemExit, match="--preset does not apply"):
        main(["bench", "sim", "--preset", "droq"])
    with pytest.raises(SystemExit, match="--no-demos does not apply"):
        main(["bench", "learner", "--no-demos"])
    with pytest.raises(SystemExit, match="--robots does not apply"):
        main(["bench", "actors", "--robots", "2"])


def test_bench_main_job_refuses_a_robot_count_below_two(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "main-job", "--robots", "2,1"]) == 2
    assert "--robots 2,1: robot counts of 2 or more (one robot is the shipped run)" in capsys.readouterr().err


def test_bench_names_an_unknown_preset_before_running_anything(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "sample-efficiency", "--preset", "crossq,nope", "--no-demos"]) == 2
    err = capsys.readouterr().err
    assert "unknown agent preset 'nope'" in err and "crossq" in err


def test_bench_names_an_unknown_task_before_running_anything(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "sample-efficiency", "--env", "Hopper-v5"]) == 2
    err = capsys.readouterr().err
    assert "--env Hopper-v5: not a benchmark task; choose one of Pendulum-v1, InvertedPendulum-v5" in err
    with pytest.raises(SystemExit, match="--env does not apply"):
        main(["bench", "learner", "--env", "Pendulum-v1"])


def test_bench_names_an_unknown_reality_gap_before_running_anything(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["bench", "sim-to-real", "--gap", "worn", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "unknown reality gap 'worn'; choose one of none, default, harsh" in err
    assert not (tmp_path / "out").exists()


def test_bench_sim_to_real_refuses_a_figure_of_one_episode(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["bench", "sim-to-real", "--episodes", "1", "--out", str(tmp_path / "out")]) == 2
    assert "--episodes must be >= 2 (a mean and its standard error), got 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_building_the_command_line_does_not_import_mujoco() -> None:
    """`eval --video` picks the OpenGL back-end before mujoco loads; the parser must not load it."""
    code = "import sys, rl_control.cli as c; c.build_parser(); print('mujoco' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False", result.stderr


def test_launch_rejects_an_invalid_config_before_starting_anything(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("learner_node:\n  ros__parameters:\n    preset: dorq\n")
    assert main(["launch", str(bad), "--no-progress"]) == 2


def test_launch_refuses_no_sim_for_the_training_graph(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["launch", "config/pendulum_sim.yaml", "--graph", "sim_train", "--no-sim"]) == 2
    assert (
        "rl-control launch: graph 'sim_train' runs in simulation and needs sim_node"
        in capsys.readouterr().err
    )


@pytest.mark.slow
def test_train_export_eval(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"

    def cli(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "rl_control.cli", *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=300,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    cli(
        "train",
        "--gym-env",
        "rl_control/PendulumBalance-v0",
        "--preset",
        "sac",
        "--steps",
        "300",
        "--learning-starts",
        "100",
        "--eval-every",
        "300",
        "--run-dir",
        str(run_dir),
        "--agent",
        "hidden_sizes=[32, 32]",
        "--agent",
        "init_temperature=0.05",
        "--torch-threads",
        "1",
    )
    assert (run_dir / "policy.onnx").is_file()
    stored = json.loads((run_dir / "run.json").read_text())["config"]
    assert stored["hidden_sizes"] == [32, 32] and stored["init_temperature"] == 0.05
    exported = Path(cli("export", str(run_dir), "--out", str(tmp_path / "again.onnx")).strip())
    assert exported == tmp_path / "again.onnx" and exported.is_file()
    output = cli("eval", str(exported), "--env", "rl_control/PendulumBalance-v0", "--episodes", "2", "--json")
    result = json.loads(output.strip().splitlines()[-1])
    assert len(result["returns"]) == 2 and result["mean_return"] < 0


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("init_temperature", "expected NAME=VALUE"),
        ("hidden_sizes=[128,", "the value is not valid YAML"),
        ("init_temprature=0.1", "unknown AgentConfig field(s) ['init_temprature']"),
        ("init_temperature=-1", "init_temperature"),
    ],
)
def test_train_refuses_a_bad_agent_override(
    option: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["train", "--gym-env", "rl_control/ArmReach-v0", "--run-dir", str(tmp_path / "run")]
    assert main([*args, "--preset", "sac", "--agent", option]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("command", "option"), [("train", "--torch-threads"), ("distill", "--threads")])
def test_a_negative_or_non_numeric_thread_count_is_refused_by_the_parser(
    command: str, option: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for value, message in (
        ("-1", "must be >= 0 (0: torch's choice), got -1"),
        ("two", "expected a whole number of threads, got 'two'"),
    ):
        with pytest.raises(SystemExit) as stopped:
            main([command, "--run-dir", str(tmp_path / "run"), option, value])
        assert stopped.value.code == 2
        assert f"argument {option}: {message}" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_train_randomizes_with_an_experiment_files_ranges(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rl_control.cli import training_randomization
    from rl_control.paths import config_path

    arm = training_randomization(str(config_path("arm_sim.yaml")), "rl_control/ArmReach-v0")
    assert arm.enabled and arm.mass_scale == [0.8, 1.4] and arm.kp_scale == [0.5, 1.5]
    assert training_randomization(True, "rl_control/ArmReach-v0").mass_scale == [0.9, 1.1]  # the defaults
    args = ["train", "--gym-env", "rl_control/ArmReach-v0", "--run-dir", str(tmp_path / "run")]
    assert main([*args, "--randomize", str(config_path("pendulum_sim.yaml"))]) == 2
    assert "task 'pendulum_swingup' is not the task of rl_control/ArmReach-v0" in capsys.readouterr().err
    nominal = tmp_path / "nominal.yaml"
    nominal.write_text("/**:\n  ros__parameters:\n    task: arm_reach\n")
    assert main([*args, "--randomize", str(nominal)]) == 2
    assert f"{nominal}: sim_node.randomization.enabled: false" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_record_expert_writes_arm_demonstrations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rl_control.paths import config_path
    from rl_control.transitions import TransitionBatch

    out = tmp_path / "demos.npz"
    randomize = str(config_path("arm_sim.yaml"))
    assert main(["record", "expert", str(out), "--episodes", "2", "--randomize", randomize]) == 0
    assert "wrote 2 expert episodes" in capsys.readouterr().out
    assert TransitionBatch.from_npz(out).obs.shape == (200, 21)
    assert main(["record", "expert", str(tmp_path / "none.npz"), "--episodes", "0"]) == 2
    assert "--episodes must be >= 1" in capsys.readouterr().err


def test_parser_is_documented() -> None:
    parser = build_parser()
    assert parser.description and parser.epilog


def test_emulate_needs_a_driver_section(capsys: pytest.CaptureFixture[str]) -> None:
    from rl_control.paths import config_path

    assert main(["emulate", "dynamixel", str(config_path("arm_sim.yaml"))]) == 2
    assert "driver_node.servo_ids is empty" in capsys.readouterr().err
