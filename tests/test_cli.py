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
    assert set(BENCHMARKS) == {"learner", "sample-efficiency", "sim", "control-loop"}
    with pytest.raises(SystemExit, match="--preset does not apply"):
        main(["bench", "sim", "--preset", "droq"])


def test_launch_rejects_an_invalid_config_before_starting_anything(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("learner_node:\n  ros__parameters:\n    preset: dorq\n")
    assert main(["launch", str(bad), "--no-progress"]) == 2


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
        "--eval-every",
        "300",
        "--run-dir",
        str(run_dir),
    )
    assert (run_dir / "policy.onnx").is_file()
    exported = Path(cli("export", str(run_dir), "--out", str(tmp_path / "again.onnx")).strip())
    assert exported == tmp_path / "again.onnx" and exported.is_file()
    output = cli("eval", str(exported), "--env", "rl_control/PendulumBalance-v0", "--episodes", "2", "--json")
    result = json.loads(output.strip().splitlines()[-1])
    assert len(result["returns"]) == 2 and result["mean_return"] < 0


def test_parser_is_documented() -> None:
    parser = build_parser()
    assert parser.description and parser.epilog
