"""Results to look at: one set of TensorBoard tags on an env-step axis, the learning-curve PNG, headless
rollout videos, and the deploy display showing the actor's episodes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from rl_control.results import (
    LEARNING_CURVE_FILE,
    TAG_EPISODE_RETURN,
    TAG_EVAL_RETURN,
    TAG_TRAIN_PREFIX,
    TENSORBOARD_DIR,
    plot_learning_curve,
    write_video,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_learning_curve_png(tmp_path: Path) -> None:
    episodes = [(200 * (i + 1), -1000.0 + 10 * i) for i in range(60)]
    path = plot_learning_curve(
        tmp_path / "curve.png",
        episodes,
        [(1000, -800.0), (5000, -300.0)],
        title="t",
        success_threshold=-200.0,
    )
    from PIL import Image

    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert image.size == (800, 450)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 10, "the figure must have content"
    # an empty run still gets a (blank) figure rather than an error
    assert plot_learning_curve(tmp_path / "empty.png", [], [], title="empty").is_file()


def test_video_mp4_and_gif(tmp_path: Path) -> None:
    import imageio.v2 as imageio

    frames = [np.full((48, 64, 3), 8 * i, dtype=np.uint8) for i in range(20)]
    mp4 = write_video(tmp_path / "out.mp4", frames, fps=25)
    assert mp4.suffix == ".mp4" and len(imageio.mimread(mp4)) == 20
    gif = write_video(tmp_path / "out.gif", frames, fps=25)
    assert gif.read_bytes()[:6] == b"GIF89a" and len(imageio.mimread(gif)) == 20


def test_deploy_display_shows_the_actor_episodes() -> None:
    from rl_control.config import ExperimentConfig
    from rl_control.ros.launch_monitor import TrainingMonitor

    monitor = TrainingMonitor(ExperimentConfig(), graph="deploy", live=False)
    assert not monitor.training
    monitor._actor = {
        "message": "running",
        "episodes": "52",
        "last_episode_return": "-123.456",
        "rate_hz": "50.0",
    }
    console = Console(record=True, width=100)
    console.print(monitor._table())
    text = console.export_text()
    assert "episodes" in text and "52" in text and "-123.5" in text
    assert "updates" not in text, "no learner rows in a deploy graph"


def test_a_robot_graph_display_says_its_policies_are_not_evaluated_in_simulation() -> None:
    from rl_control.config import ExperimentConfig
    from rl_control.ros.launch_monitor import TrainingMonitor

    monitor = TrainingMonitor(ExperimentConfig(), graph="robot_finetune", live=False, evaluate_policies=False)
    assert monitor.training and not monitor.evaluate_policies
    console = Console(record=True, width=120)
    console.print(monitor._table())
    assert "off (a robot graph" in console.export_text()


def test_run_summary_and_display_count_the_learners_intervention_transitions(tmp_path: Path) -> None:
    pytest.importorskip("rclpy")
    from rl_control.config import ExperimentConfig
    from rl_control.ros.launch_monitor import TrainingMonitor
    from rl_control.ros.messages import LearnerProgress, encode_progress

    monitor = TrainingMonitor(ExperimentConfig(), graph="robot_finetune", live=False)
    progress = LearnerProgress(env_steps=300, updates=600, policy_version=3, intervention_transitions=17)
    monitor._on_progress(encode_progress(progress))
    console = Console(record=True, width=100)
    console.print(monitor._table())
    text = console.export_text()
    assert re.search(r"intervention transitions\s*│\s*17\s", text), text
    run_dir = tmp_path / "run"
    assert monitor.finish(run_dir, "stopped") == 1  # nothing to export from an empty run: reported
    summary = json.loads((run_dir / "launch_summary.json").read_text())
    assert (summary["intervention_transitions"], summary["learner_env_steps"]) == (17, 300)


def scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(log_dir))
    accumulator.Reload()
    return {
        tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]
    }


@pytest.mark.slow
def test_train_logs_shared_tags_draws_the_curve_and_eval_renders_a_video(tmp_path: Path) -> None:
    from rl_control.learning import train_gym

    run_dir = tmp_path / "run"
    summary = train_gym(
        "rl_control/PendulumBalance-v0",
        "sac",
        steps=400,
        run_dir=run_dir,
        eval_every=200,
        eval_episodes=2,
        overrides={"hidden_sizes": [32, 32], "batch_size": 32, "learning_starts": 100},
        progress=False,
    )
    assert (run_dir / LEARNING_CURVE_FILE).read_bytes()[:8] == PNG_MAGIC
    logged = scalars(run_dir / TENSORBOARD_DIR / "train")
    assert [step for step, _ in logged[TAG_EVAL_RETURN]] == [200, 400]  # x-axis: env steps
    assert logged[TAG_EPISODE_RETURN] and any(tag.startswith(TAG_TRAIN_PREFIX) for tag in logged)
    assert max(step for step, _ in logged[TAG_EPISODE_RETURN]) <= 400

    video = tmp_path / "rollout.mp4"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rl_control.cli",
            "eval",
            summary["onnx_path"],
            "--env",
            "rl_control/PendulumBalance-v0",
            "--episodes",
            "1",
            "--video",
            str(video),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    import imageio.v2 as imageio

    reader = imageio.get_reader(video)
    frame = reader.get_data(0)
    assert frame.shape[:2] == (240, 320) and frame.std() > 1.0, "a rendered scene, not a blank frame"
    assert reader.count_frames() > 10
    reader.close()
