"""``rl-control sweep``: policies evaluated over a grid of dynamics, JSON + PNG out, bad grids named."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image
import pytest

from rl_control.cli import main
from rl_control.envs import make_task
from rl_control.learning import Learner, preset_config
from rl_control.policy.contract import PolicyContract
from rl_control.sweep import PARAMETERS, SweepError, parse_grid

TINY = {"hidden_sizes": [8], "batch_size": 8, "learning_starts": 4, "buffer_capacity": 64, "device": "cpu"}


def tiny_policy(path: Path, task_name: str, seed: int) -> Path:
    """An untrained (random-weight) exported policy with its contract."""
    task = make_task(task_name)
    contract = PolicyContract.for_task(task, controller="effort_controller")
    learner = Learner.create_or_resume(
        path.parent / f"run_{seed}",
        task.observation_dim,
        task.action_dim,
        preset_config("sac", **TINY),
        metadata=contract.to_metadata(),
        seed=seed,
    )
    learner.export_onnx(path, stochastic=False)
    return path


def test_sweep_writes_json_and_png_over_the_grid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = tiny_policy(tmp_path / "a" / "policy.onnx", "pendulum_balance", seed=1)
    second = tiny_policy(tmp_path / "b" / "policy.onnx", "pendulum_balance", seed=2)
    out = tmp_path / "sweep"
    argv = ["sweep", str(first), str(second), "--episodes", "2", "--out", str(out)]
    argv += ["--param", "mass_scale=0.5:1.5:3", "--param", "observation_noise.velocity=0:0.4:2"]
    assert main(argv) == 0  # no --task: the policies' contracts name pendulum_balance
    report = json.loads((out / "sweep.json").read_text())
    assert report["task"] == "pendulum_balance" and report["episodes"] == 2
    assert report["success_threshold"] == make_task("pendulum_balance").success_threshold
    assert set(report["policies"]) == {"a/policy", "b/policy"}
    mass = report["parameters"]["mass_scale"]
    assert mass["values"] == [0.5, 1.0, 1.5] and mass["nominal_value"] == 1.0
    noise = report["parameters"]["observation_noise.velocity"]
    assert noise["values"] == [0.0, 0.4] and noise["nominal_value"] == 0.0
    for label in report["policies"]:
        means = mass["mean_return"][label]
        assert len(means) == 3 and len(mass["std_return"][label]) == 3
        # The grid point at the nominal value repeats the nominal episodes exactly (same seeds)...
        assert means[1] == pytest.approx(report["nominal_return"][label])
        assert mass["std_return"][label][1] == pytest.approx(report["nominal_std_return"][label])
        assert noise["mean_return"][label][0] == pytest.approx(report["nominal_return"][label])
        # ...and the others really change the dynamics.
        assert means[0] != pytest.approx(means[1]) and means[2] != pytest.approx(means[1])
    image = matplotlib.image.imread(out / "sweep.png")
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 300
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ("mass_scael=0.5:1.5:3", "'mass_scael': unknown parameter (did you mean 'mass_scale'?)"),
        ("mass_scale=0:1.5:3", "--param mass_scale: 0 is not allowed"),
        ("motor_strength=1.5:0.5:3", "--param motor_strength: need finite LOW <= HIGH"),
        ("friction=0.5:1.5", "--param friction: '0.5:1.5' is not LOW:HIGH:N"),
        ("action_latency_s=0:0.1:1", "--param action_latency_s: N must be in [2,"),
        ("mass_scale", "expected NAME=LOW:HIGH:N"),
    ],
)
def test_a_bad_param_names_the_parameter(param: str, message: str) -> None:
    with pytest.raises(SweepError) as info:
        parse_grid(param)
    assert message in str(info.value)


def test_cli_reports_a_bad_param_without_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tiny_policy(tmp_path / "policy.onnx", "pendulum_balance", seed=0)
    assert main(["sweep", str(policy), "--param", "dampng_scale=0.5:2:3", "--out", str(tmp_path / "o")]) == 2
    assert "'dampng_scale': unknown parameter (did you mean 'damping_scale'?)" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_the_documented_parameters_are_sweepable() -> None:
    for name in ("mass_scale", "friction", "damping_scale", "motor_strength", "action_latency_s"):
        assert name in PARAMETERS
    assert "observation_noise.position" in PARAMETERS and "observation_noise.velocity" in PARAMETERS
