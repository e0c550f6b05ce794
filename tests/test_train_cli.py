"""``rl-control train`` a user can trust: interrupts checkpoint and resume, plain log lines when piped,
refusal of an untrained run, a learning-phase ETA, and one-line errors from ``export`` and ``eval``."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rl_control.cli import main
from rl_control.learning.gym_train import EtaEstimator, format_duration


def test_steps_before_learning_starts_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["train", "--gym-env", "Pendulum-v1", "--preset", "sac", "--steps", "500", "--run-dir", str(tmp_path)]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "rl-control train: --steps 500 ends before learning starts (learning_starts 1000)" in err
    assert "Traceback" not in err and not (tmp_path / "run.json").exists()


def test_eta_uses_the_learning_phase_rate_only() -> None:
    now = [0.0]
    eta = EtaEstimator(total_steps=11_000, learning_starts=1000, clock=lambda: now[0])
    for step in range(0, 1001, 50):  # warm-up: 1,000 random steps in 1 s
        now[0] = step / 1000
        eta.update(step)
    assert eta.seconds_left() is None, "no estimate from the warm-up rate"
    for step in range(1050, 3001, 50):  # learning: 100 steps/s
        now[0] = 1.0 + (step - 1000) / 100
        eta.update(step)
    assert eta.seconds_left() == pytest.approx(80.0)  # 8,000 steps left at 100 steps/s
    assert (
        format_duration(80.4) == "1:20"
        and format_duration(3723) == "1:02:03"
        and format_duration(None) == "-"
    )


def test_export_and_eval_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rl-control export: ") and "not a run directory" in err and err.count("\n") == 1
    bad = tmp_path / "policy.onnx"
    bad.write_bytes(b"not onnx")
    assert main(["eval", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rl-control eval: ") and err.count("\n") == 1
    assert main(["eval", str(tmp_path / "absent.onnx")]) == 2
    assert "absent.onnx" in capsys.readouterr().err


@pytest.mark.slow
def test_sigterm_checkpoints_and_the_next_call_resumes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "rl_control.cli",
        "train",
        "--gym-env",
        "Pendulum-v1",
        "--preset",
        "sac",
        "--learning-starts",
        "200",
        "--steps",
        "100000",
        "--eval-every",
        "100000",
        "--run-dir",
        str(run_dir),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # stderr is a pipe, not a terminal: progress comes as plain periodic log lines.
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    assert process.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + 240
    step = 0
    while step <= 400 and time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        lines.append(line)
        if match := re.search(r"step (\d+)/100000 \(\d+%\).*ETA", line):
            step = int(match.group(1))
    assert step > 400, "no plain progress line:\n" + "".join(lines)
    process.send_signal(signal.SIGTERM)
    _, rest = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, "".join(lines) + rest
    assert "interrupted (signal 15)" in rest and "Traceback" not in rest
    assert (run_dir / "policy.onnx").is_file()

    # The next call resumes: asked for fewer steps than already done, it trains none and reports them.
    resumed = subprocess.run(
        [*command[:-6], "--steps", "300", "--eval-every", "300", "--run-dir", str(run_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    done = int(re.search(r"training finished: (\d+) env steps", resumed.stderr).group(1))
    assert done >= step
