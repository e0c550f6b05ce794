"""Persistence faults: a disk that fills during a checkpoint (a real tmpfs), pickle payloads in run files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("rclpy")  # the scenarios share the learner scenarios' transitions

from rl_control.faults import ScenarioContext, load_scenarios


def run(name: str, tmp_path: Path):
    return load_scenarios()[name](ScenarioContext(tmp_path, probe=None))


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_full_disk_during_a_checkpoint_keeps_the_committed_state(tmp_path: Path) -> None:
    result = run("persistence_disk_full_checkpoint", tmp_path)
    assert result.held, result.figure
    values = result.values
    assert values["named"] == 1 and values["leftovers"] == 0 and values["restart_ok"] == 1
    assert values["recovered"] == 1 and values["committed_env_steps"] == 100


def test_pickle_payloads_in_a_checkpoint_and_a_chunk_never_run(tmp_path: Path) -> None:
    result = run("persistence_pickle_payloads", tmp_path)
    assert result.held, result.figure
    assert result.values["executed"] == 0 and not (tmp_path / "payload_ran").exists()
    assert result.values["named"] == 2
    assert result.values["resumed_env_steps"] == result.values["lost_rows"] == 100
