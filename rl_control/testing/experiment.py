"""A small experiment file for tests that run an actor (and maybe a sim_node) against a probe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

#: The controller of test experiments: commands on ``test_controller/commands``.
TEST_CONTROLLER = "test_controller"


def write_actor_experiment(
    directory: Path,
    *,
    shared: dict[str, Any],
    actor: dict[str, Any] | None = None,
    sim: dict[str, Any] | None = None,
    state_timeout_s: float = 0.3,
) -> Path:
    """Write ``directory/config.yaml``: ``shared`` over the test controller and a run directory in
    ``directory``; a realtime sim_node; an actor with no reset service and ``state_timeout_s``, then
    ``actor``."""
    actor_params = {"reset_service": "", "state_timeout_s": state_timeout_s, **(actor or {})}
    document = {
        "/**": {
            "ros__parameters": {"controller": TEST_CONTROLLER, "run_dir": str(directory / "run"), **shared}
        },
        "sim_node": {"ros__parameters": {"sim_mode": "realtime", **(sim or {})}},
        "actor_node": {"ros__parameters": actor_params},
    }
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path
