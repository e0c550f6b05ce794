"""Results to look at: TensorBoard tags shared by ``rl-control train`` and the node graph, the
learning-curve PNG written at the end of a run, and headless rollout videos (no ROS).

Every scalar uses environment steps as its x-axis, in ``train`` and in the graph alike, so the curves of an
in-process run and of a ROS run overlay in one TensorBoard.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: TensorBoard log folder inside a run directory (one sub-folder per writer: train, learner_node, monitor).
TENSORBOARD_DIR = "tensorboard"
#: Undiscounted return of each finished training episode (x: env steps at its end).
TAG_EPISODE_RETURN = "episode/return"
#: Mean return of the deterministic policy over the evaluation episodes (x: env steps it was trained on).
TAG_EVAL_RETURN = "eval/deterministic_return"
#: Prefix of the learner's training metrics (``train/critic_loss``...; x: env steps).
TAG_TRAIN_PREFIX = "train/"
#: The learning curve written into the run directory at the end of a run.
LEARNING_CURVE_FILE = "learning_curve.png"
#: MuJoCo OpenGL back-ends tried for headless rendering, in order.
GL_BACKENDS = ("egl", "osmesa")

Points = Sequence[tuple[float, float]]


def plot_learning_curve(
    path: Path,
    episodes: Points,
    evaluations: Points,
    *,
    title: str,
    success_threshold: float | None = None,
) -> Path:
    """Write a PNG of training-episode returns and deterministic evaluations against env steps."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if episodes:
        steps, returns = np.asarray(episodes, dtype=np.float64).T
        axes.plot(steps, returns, ".", color="tab:blue", alpha=0.35, markersize=3, label="training episode")
        window = max(1, len(returns) // 20)
        if window > 1:
            smooth = np.convolve(returns, np.ones(window) / window, mode="valid")
            axes.plot(steps[window - 1 :], smooth, color="tab:blue", label=f"mean of {window} episodes")
    if evaluations:
        steps, returns = np.asarray(evaluations, dtype=np.float64).T
        axes.plot(steps, returns, "o-", color="tab:orange", label="deterministic evaluation")
    if success_threshold is not None:
        axes.axhline(success_threshold, color="tab:green", linestyle="--", label="success threshold")
    axes.set_xlabel("environment steps")
    axes.set_ylabel("return")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    if episodes or evaluations:
        axes.legend(loc="lower right")
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path)
    return path


def choose_gl_backend() -> str | None:
    """Set ``MUJOCO_GL`` to the first headless back-end that can create a context (EGL, then OSMesa).

    Must run before ``mujoco`` is imported in this process; each back-end is probed in a child process
    (a failing one cannot be unloaded). Keeps a ``MUJOCO_GL`` the user set. Returns the back-end, or None.
    """
    if os.environ.get("MUJOCO_GL"):
        return os.environ["MUJOCO_GL"]
    probe = "import mujoco; context = mujoco.GLContext(16, 16); context.make_current(); context.free()"
    for backend in GL_BACKENDS:
        env = {**os.environ, "MUJOCO_GL": backend, "PYOPENGL_PLATFORM": backend}
        result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, timeout=120)
        if result.returncode == 0:
            os.environ["MUJOCO_GL"] = backend
            os.environ.setdefault("PYOPENGL_PLATFORM", backend)
            return backend
    return None


def write_video(path: Path, frames: Sequence[np.ndarray], fps: float) -> Path:
    """Write ``frames`` as an MP4 (H.264 via imageio-ffmpeg), or as a GIF beside it when ffmpeg is missing.

    Returns the file written.
    """
    import imageio.v2 as imageio

    path = Path(path)
    if path.suffix.lower() != ".gif":
        try:
            with imageio.get_writer(path, fps=fps, codec="libx264", macro_block_size=1) as writer:
                for frame in frames:
                    writer.append_data(frame)  # type: ignore[attr-defined]
            return path
        except (ImportError, RuntimeError, OSError) as exc:  # no ffmpeg back-end
            path.unlink(missing_ok=True)
            log.warning("cannot write %s (%s): writing a GIF instead", path, exc)
            path = path.with_suffix(".gif")
    imageio.mimsave(path, list(frames), duration=1000.0 / fps, loop=0)
    return path


def render_rollout(
    env_id: str, policy_fn: Callable[[np.ndarray], np.ndarray], out: Path, *, seed: int = 0, episodes: int = 1
) -> tuple[Path, list[float]]:
    """Render ``episodes`` deterministic episodes of ``env_id`` headless into the video ``out``.

    ``policy_fn`` maps an observation to an env action. Returns the file written and the returns.
    """
    if choose_gl_backend() is None:
        raise RuntimeError(f"no headless OpenGL for MuJoCo rendering (tried {', '.join(GL_BACKENDS)})")
    import gymnasium as gym

    env = gym.make(env_id, render_mode="rgb_array")
    frames: list[np.ndarray] = []
    returns: list[float] = []
    try:
        for episode in range(episodes):
            obs, _ = env.reset(seed=seed + episode)
            total, done = 0.0, False
            frames.append(np.asarray(env.render()))
            while not done:
                obs, reward, terminated, truncated, _ = env.step(policy_fn(obs))
                total += float(reward)
                done = terminated or truncated
                frames.append(np.asarray(env.render()))
            returns.append(total)
        fps = float(env.metadata.get("render_fps", 30))
    finally:
        env.close()
    return write_video(out, frames, fps), returns
