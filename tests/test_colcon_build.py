"""``colcon build`` accepts the package and installs a working ament_python tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SKIP = shutil.ignore_patterns(
    ".git",
    ".venv",
    "runs",
    "build",
    "install",
    "log",
    "__pycache__",
    "*.egg-info",
    ".pytest_cache",
    ".ruff_cache",
)
COLCON = Path(sys.executable).with_name("colcon")


@pytest.fixture(scope="module")
def install_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not COLCON.exists():
        pytest.fail(
            f"colcon not found next to {sys.executable}: install the test extra (pip install -e .[test])"
        )
    workspace = tmp_path_factory.mktemp("colcon_ws")
    shutil.copytree(REPO, workspace / "src" / "rl_control", ignore=SKIP)
    result = subprocess.run(
        [str(COLCON), "build", "--base-paths", "src", "--build-base", "build", "--install-base", "install"],
        cwd=workspace,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"colcon build failed:\n{result.stdout}\n{result.stderr}"
    return workspace / "install" / "rl_control"


def test_install_tree_has_everything_ros2_needs(install_tree: Path) -> None:
    share = install_tree / "share" / "rl_control"
    assert (install_tree / "share" / "ament_index" / "resource_index" / "packages" / "rl_control").is_file()
    assert (share / "package.xml").is_file()
    assert {p.name for p in (share / "launch").glob("*.launch.py")} == {
        "sim_train.launch.py",
        "deploy.launch.py",
        "robot_finetune.launch.py",
    }
    assert (share / "config" / "pendulum_sim.yaml").is_file()
    assert {"pendulum.xml", "cartpole.xml", "arm.xml", "quadruped.xml"} <= {
        p.name for p in (share / "sim").rglob("*.xml")
    }
    for executable in ("sim_node", "actor_node", "learner_node", "rl-control"):
        path = install_tree / "lib" / "rl_control" / executable
        assert path.is_file() and os.access(path, os.X_OK), f"missing ros2 run executable {path}"


def test_installed_package_runs_from_the_install_tree(install_tree: Path) -> None:
    """The installed CLI finds its share directory through the ament index, not the source checkout."""
    site = next((install_tree / "lib").glob("python3*/site-packages"))
    env = {**os.environ, "PYTHONPATH": str(site), "AMENT_PREFIX_PATH": str(install_tree)}
    env.pop("RL_CONTROL_SHARE_DIR", None)
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import rl_control, rl_control.paths as p; print(rl_control.__file__); print(p.share_dir())",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=install_tree,
    ).stdout.split()
    assert probe[0].startswith(str(site)) and probe[1] == str(install_tree / "share" / "rl_control")
    config = install_tree / "share" / "rl_control" / "config" / "pendulum_sim.yaml"
    check = subprocess.run(
        [
            sys.executable,
            str(install_tree / "lib" / "rl_control" / "rl-control"),
            "config",
            "check",
            str(config),
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=install_tree,
    )
    assert check.returncode == 0, check.stderr
