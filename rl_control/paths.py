"""Locate the files the package ships (MJCF models, configs, launch files, trained policies).

Works from a source checkout (editable install), from a pip install (data files
under ``<prefix>/share/rl_control``) and from a colcon/ament install tree.
"""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path

PACKAGE_NAME = "rl_control"
SHARE_ENV_VAR = "RL_CONTROL_SHARE_DIR"


def _candidates() -> list[Path]:
    found: list[Path] = []
    override = os.environ.get(SHARE_ENV_VAR)
    if override:
        found.append(Path(override))
    found.append(Path(__file__).resolve().parent.parent)  # source checkout
    try:  # colcon / ROS 2 install tree
        from ament_index_python.packages import get_package_share_directory

        found.append(Path(get_package_share_directory(PACKAGE_NAME)))
    except (ImportError, LookupError, OSError):  # no ament index, or rl_control not registered in it
        pass
    found.append(Path(sys.prefix) / "share" / PACKAGE_NAME)  # pip data_files
    return found


@lru_cache(maxsize=1)
def share_dir() -> Path:
    """Return the directory holding ``sim/``, ``config/``, ``launch/`` and ``policies/``."""
    for candidate in _candidates():
        if (candidate / "sim").is_dir():
            return candidate
    searched = ", ".join(str(c) for c in _candidates())
    raise FileNotFoundError(
        f"cannot find the rl_control share directory (with sim/); searched: {searched}. "
        f"Set {SHARE_ENV_VAR} to the folder that contains sim/."
    )


def model_path(robot: str) -> Path:
    """Path of the MJCF file of ``robot`` (e.g. ``"pendulum"``) under ``sim/``."""
    path = share_dir() / "sim" / f"{robot}.xml"
    if not path.is_file():
        available = sorted(p.stem for p in (share_dir() / "sim").glob("*.xml"))
        raise FileNotFoundError(f"no MJCF model for robot {robot!r} at {path}; available: {available}")
    return path


def config_path(name: str) -> Path:
    """Path of a shipped experiment config, e.g. ``config_path("pendulum_sim.yaml")``."""
    return share_dir() / "config" / name


def packaged_policy(name: str) -> Path | None:
    """The shipped ONNX policy ``policies/<name>.onnx`` (e.g. ``"quadruped_walk"``), or None if none ships."""
    if not name or "/" in name or name.endswith(".onnx"):
        return None
    path = share_dir() / "policies" / f"{name}.onnx"
    return path if path.is_file() else None


def resolve_policy_file(value: str) -> str:
    """A policy argument as a file path: an existing file stays; a shipped policy's name gives its path."""
    if not value or Path(value).expanduser().exists():
        return value
    shipped = packaged_policy(value)
    return str(shipped) if shipped is not None else value
