"""Checkpoints: atomic, checksummed, bit-identical resume, fallback over corrupt files; ONNX export."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from rl_control.learning import (
    CheckpointError,
    ExportError,
    InvalidPolicyError,
    Learner,
    OnnxPolicy,
    TransitionBatch,
    preset_config,
)
from rl_control.learning.onnx_policy import verify_export

OBS_DIM, ACT_DIM = 4, 2
CONFIG = {"hidden_sizes": [16, 16], "batch_size": 16, "learning_starts": 8, "buffer_capacity": 64}


def stream(rows: int, seed: int) -> TransitionBatch:
    rng = np.random.default_rng(seed)
    return TransitionBatch(
        obs=rng.normal(2.0, 3.0, (rows, OBS_DIM)),
        action=rng.uniform(-1, 1, (rows, ACT_DIM)),
        reward=rng.normal(size=rows),
        next_obs=rng.normal(2.0, 3.0, (rows, OBS_DIM)),
        terminated=(rng.random(rows) < 0.05).astype(np.float32),
        truncated=(np.arange(rows) % 10 == 9).astype(np.float32),
    )


def weights(learner: Learner) -> list[torch.Tensor]:
    return [*learner.agent.critic.parameters(), *learner.agent.actor.parameters(), learner.agent.log_alpha]


CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np, torch
    sys.path.insert(0, {root!r})
    from tests.test_learning_persistence import CONFIG, OBS_DIM, ACT_DIM, stream, weights
    from rl_control.learning import Learner, preset_config
    config = preset_config({preset!r}, **CONFIG)
    learner = Learner.create_or_resume({run!r}, OBS_DIM, ACT_DIM, config, seed=7)
    learner.add_transitions(stream(50, 0))   # wraps the 64-slot ring below
    learner.train(3)
    learner.save_checkpoint()
    learner.add_transitions(stream(40, 1))
    learner.train(2)
    learner.save_checkpoint()
    learner.train(2)                          # the "next update" after the last checkpoint
    torch.save([w.detach() for w in weights(learner)], {expected!r})
    os.kill(os.getpid(), signal.SIGKILL)     # no clean shutdown
    """
)


@pytest.mark.parametrize("preset", ["droq", "td3", "crossq"])
def test_save_kill_resume_gives_bit_identical_next_update(tmp_path: Path, preset: str) -> None:
    run, expected = tmp_path / "run", tmp_path / "expected.pt"
    root = str(Path(__file__).resolve().parent.parent)
    code = CHILD.format(root=root, preset=preset, run=str(run), expected=str(expected))
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert child.returncode == -9, child.stderr
    config = preset_config(preset, **CONFIG)
    resumed = Learner.create_or_resume(run, OBS_DIM, ACT_DIM, config, seed=123)  # seed must not matter
    assert (resumed.num_updates, resumed.env_steps, resumed.replay.total_added) == (
        5 * config.utd_ratio,
        90,
        90,
    )
    resumed.train(2)
    reference = torch.load(expected, weights_only=True)
    for got, want in zip(weights(resumed), reference, strict=True):
        assert torch.equal(got.detach(), want)


def test_replay_is_persisted_in_appended_chunks(tmp_path: Path) -> None:
    config = preset_config("sac", **CONFIG)
    learner = Learner.create_or_resume(tmp_path, OBS_DIM, ACT_DIM, config)
    learner.add_transitions(stream(30, 0))
    learner.save_checkpoint()
    first = sorted(p.name for p in (tmp_path / "replay").iterdir())
    learner.add_transitions(stream(10, 1))
    learner.save_checkpoint()
    second = sorted(p.name for p in (tmp_path / "replay").iterdir())
    assert [name[:32] for name in first] == ["chunk_000000000000_000000000030_"]
    # old chunk untouched, delta appended
    assert [name[:32] for name in second] == [*(n[:32] for n in first), "chunk_000000000030_000000000040_"]
    assert second[0] == first[0]
    learner.add_transitions(stream(100, 2))  # past capacity: chunks no longer needed are dropped
    learner.save_checkpoint()
    manifest = json.loads(sorted((tmp_path / "checkpoints").glob("*.json"))[-1].read_text())
    assert [(c["start"], c["end"]) for c in manifest["replay_chunks"]] == [(76, 140)]
    resumed = Learner.create_or_resume(tmp_path, OBS_DIM, ACT_DIM, config)
    np.testing.assert_array_equal(resumed.replay.obs, learner.replay.obs)
    np.testing.assert_array_equal(resumed.replay.next_obs, learner.replay.next_obs)


def test_corrupt_checkpoint_is_detected_and_resume_falls_back(tmp_path: Path, caplog) -> None:
    config = preset_config("sac", **CONFIG)
    learner = Learner.create_or_resume(tmp_path, OBS_DIM, ACT_DIM, config)
    learner.add_transitions(stream(20, 0))
    learner.train(2)
    learner.save_checkpoint()
    learner.train(3)
    newest = learner.save_checkpoint()
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    newest.write_bytes(bytes(data))
    resumed = Learner.create_or_resume(tmp_path, OBS_DIM, ACT_DIM, config)
    assert resumed.num_updates == 2
    assert "checksum mismatch" in caplog.text
    for path in (tmp_path / "checkpoints").glob("*.pt"):  # truncate everything: a clear error
        path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"no intact checkpoint.*truncated"):
        Learner.create_or_resume(tmp_path, OBS_DIM, ACT_DIM, config)


def test_run_directory_conflicts_are_reported(tmp_path: Path) -> None:
    config = preset_config("sac", **CONFIG)
    learner = Learner.create_or_resume(tmp_path, OBS_DIM, ACT_DIM, config)
    learner.add_transitions(stream(10, 0))
    learner.save_checkpoint()
    with pytest.raises(ValueError, match="obs_dim=4, act_dim=2, not obs_dim=5"):
        Learner.create_or_resume(tmp_path, 5, ACT_DIM, config)
    with pytest.raises(ValueError, match=r"num_critics: run has 2, requested 10"):
        Learner.create_or_resume(tmp_path, OBS_DIM, ACT_DIM, preset_config("redq", **CONFIG))
    with pytest.raises(FileExistsError):
        Learner.create_or_resume(tmp_path, OBS_DIM, ACT_DIM, config, resume=False)
    tuned = Learner.create_or_resume(
        tmp_path, OBS_DIM, ACT_DIM, preset_config("sac", **{**CONFIG, "utd_ratio": 4})
    )
    assert tuned.config.utd_ratio == 4 and tuned.env_steps == 10


@pytest.mark.parametrize("preset", ["sac", "td3", "crossq"])
def test_exported_onnx_matches_torch(tmp_path: Path, preset: str) -> None:
    config = preset_config(preset, normalize_observations=True, **CONFIG)
    learner = Learner.create_or_resume(tmp_path, OBS_DIM, ACT_DIM, config, metadata={"joint_names": "a,b"})
    learner.add_transitions(stream(40, 0))
    learner.train(3)
    path = tmp_path / "policy.onnx"
    data = learner.export_onnx(path, stochastic=True)
    assert path.read_bytes() == data
    policy = OnnxPolicy.from_file(path)
    assert (policy.obs_dim, policy.act_dim, policy.version, policy.stochastic) == (OBS_DIM, ACT_DIM, 1, True)
    assert policy.joint_names == ["a", "b"] and policy.metadata["algorithm"] == preset
    obs = np.random.default_rng(1).normal(2.0, 3.0, (20, OBS_DIM)).astype(np.float32)
    expected = learner.act(obs, deterministic=True)
    got = np.stack([policy(o) for o in obs])  # zero noise == deterministic action
    np.testing.assert_allclose(got, expected, atol=1e-5)
    noisy = policy(obs[0], np.ones(ACT_DIM, np.float32))
    assert np.all(np.abs(noisy) <= 1.0) and not np.allclose(noisy, got[0])
    deterministic = OnnxPolicy.from_bytes(learner.export_onnx(stochastic=False))
    assert deterministic.version == 2 and not deterministic.stochastic
    np.testing.assert_allclose(np.stack([deterministic(o) for o in obs]), expected, atol=1e-5)
    with pytest.raises(ValueError, match="expects"):
        deterministic(np.zeros(OBS_DIM + 1, np.float32))


def test_deployed_policies_come_from_the_actor_average_which_survives_a_restart(tmp_path: Path) -> None:
    config = preset_config("sac", deployed_actor_average=0.5, **CONFIG)
    learner = Learner.create_or_resume(tmp_path / "run", OBS_DIM, ACT_DIM, config)
    agent = learner.agent
    assert agent.actor_average is not None
    start = agent.actor.mean_head.weight.detach().clone()
    learner.add_transitions(stream(40, 0))
    learner.train(3)  # three actor steps: the average moves half-way towards the actor after each
    average, current = agent.actor_average.mean_head.weight, agent.actor.mean_head.weight
    assert not torch.equal(average, current) and not torch.equal(average, start)
    obs = np.random.default_rng(1).normal(size=(10, OBS_DIM)).astype(np.float32)
    deployed = OnnxPolicy.from_bytes(learner.export_onnx(stochastic=False))
    np.testing.assert_allclose(
        np.stack([deployed(o) for o in obs]), learner.act(obs, deterministic=True), atol=1e-5
    )
    exploring = OnnxPolicy.from_bytes(learner.export_onnx(stochastic=True))  # the current weights
    with torch.no_grad():
        current_actions = agent.policy(torch.from_numpy(obs), None).numpy()
    np.testing.assert_allclose(np.stack([exploring(o) for o in obs]), current_actions, atol=1e-5)
    assert not np.allclose(current_actions, learner.act(obs, deterministic=True), atol=1e-4)

    learner.save_checkpoint()
    resumed = Learner.create_or_resume(tmp_path / "run", OBS_DIM, ACT_DIM, config)
    assert resumed.agent.actor_average is not None
    assert torch.equal(resumed.agent.actor_average.mean_head.weight, average)
    # fine-tuning from a run kept without an average begins the average at that run's actor
    plain = Learner.create_or_resume(tmp_path / "plain", OBS_DIM, ACT_DIM, preset_config("sac", **CONFIG))
    plain.add_transitions(stream(40, 2))
    plain.train(2)
    plain.save_checkpoint()
    started = Learner.create_or_resume(
        tmp_path / "fine_tune", OBS_DIM, ACT_DIM, config, start_from=tmp_path / "plain"
    )
    assert started.agent.actor_average is not None
    assert torch.equal(started.agent.actor_average.mean_head.weight, plain.agent.actor.mean_head.weight)


def test_export_verification_and_policy_loading_fail_loudly(tmp_path: Path) -> None:
    learner = Learner.create_or_resume(tmp_path, OBS_DIM, ACT_DIM, preset_config("sac", **CONFIG))
    data = learner.export_onnx(stochastic=False)
    other = Learner.create_or_resume(
        tmp_path / "other", OBS_DIM, ACT_DIM, preset_config("sac", **CONFIG), seed=5
    )
    with pytest.raises(ExportError, match="differs from torch"):
        verify_export(
            data, other.agent.actor, other.agent.normalizer, stochastic=False, exploration_noise=0.1
        )
    with pytest.raises(InvalidPolicyError, match="not a readable ONNX model"):
        OnnxPolicy.from_bytes(b"\x00garbage" * 10)
    with pytest.raises(InvalidPolicyError, match="cannot read"):
        OnnxPolicy.from_file(tmp_path / "absent.onnx")
    assert not (tmp_path / "absent.onnx").exists()
    assert os.environ.get("ROS_DOMAIN_ID")  # conftest isolation is in place for subprocesses too


def test_intervention_rows_and_their_count_survive_checkpoint_and_resume(tmp_path: Path) -> None:
    """Kept interventions are written as demo chunks of their own, beside a demonstration file's."""
    config = preset_config("sac", **CONFIG)
    learner = Learner.create_or_resume(tmp_path, OBS_DIM, ACT_DIM, config)

    def flagged(rows: int, seed: int, human: list[int]) -> TransitionBatch:
        batch = stream(rows, seed)
        batch.intervention[human] = 1.0
        return batch

    learner.add_transitions(flagged(20, 0, [3, 4, 5]))
    learner.save_checkpoint()
    learner.add_transitions(flagged(20, 1, [0, 19]))
    demo_file = stream(6, 9)
    demo_file.to_npz(tmp_path / "demos.npz")
    learner.add_demonstrations(tmp_path / "demos.npz")  # after two unsaved intervention rows
    learner.add_transitions(flagged(10, 2, [9]))
    learner.save_checkpoint()
    manifest = json.loads(learner.run.manifests()[0].read_text())
    assert manifest["intervention_transitions"] == 6
    stems = [Path(entry["file"]).name.rsplit("_", 1)[0] for entry in manifest["demo_chunks"]]  # less sha
    assert stems == [
        "interventions_000000000000_000000000003",
        "interventions_000000000003_000000000005",
        "demos_0002",
        "interventions_000000000011_000000000012",
    ]
    assert [entry.get("interventions", 0) for entry in manifest["demo_chunks"]] == [3, 2, 0, 1]

    resumed = Learner.create_or_resume(tmp_path, OBS_DIM, ACT_DIM, config)
    assert (resumed.intervention_transitions, resumed.demo_buffer_rows, resumed.num_demonstrations) == (
        6,
        12,
        6,
    )
    kept, restored = learner.demos.rows(0, 12), resumed.demos.rows(0, 12)
    for name in ("obs", "action", "truncated", "intervention"):
        np.testing.assert_array_equal(getattr(restored, name), getattr(kept, name), err_msg=name)
    assert restored.intervention.tolist() == [1.0] * 5 + [0.0] * 6 + [1.0]
    np.testing.assert_array_equal(resumed.replay.intervention, learner.replay.intervention)
    resumed.add_transitions(flagged(5, 3, [1]))  # appends after the restored rows, saved from there on
    resumed.save_checkpoint()
    again = Learner.create_or_resume(tmp_path, OBS_DIM, ACT_DIM, config)
    assert (again.intervention_transitions, again.demo_buffer_rows) == (7, 13)

    # a checkpoint written before the counter existed resumes with none counted
    newest = again.run.manifests()[0]
    old = json.loads(newest.read_text())
    del old["intervention_transitions"]
    newest.write_text(json.dumps(old))
    assert Learner.create_or_resume(tmp_path, OBS_DIM, ACT_DIM, config).intervention_transitions == 0


def test_a_new_run_starts_from_another_runs_weights_with_its_transitions_as_prior_data(
    tmp_path: Path,
) -> None:
    """Fine-tuning on a robot from a simulation run: its weights, its data as prior data, a fresh replay."""
    config = preset_config("sac", **CONFIG)
    sim = Learner.create_or_resume(tmp_path / "sim", OBS_DIM, ACT_DIM, config, seed=1)
    sim.add_transitions(stream(40, 0))
    sim.train(5)
    sim.export_onnx(stochastic=True)
    sim.save_checkpoint()
    sim_files = sorted(p.relative_to(tmp_path) for p in (tmp_path / "sim").rglob("*"))

    robot = Learner.create_or_resume(
        tmp_path / "robot", OBS_DIM, ACT_DIM, config, seed=2, start_from=tmp_path / "sim"
    )
    for ours, theirs in zip(weights(robot), weights(sim), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0.0, atol=0.0)
    assert (robot.num_updates, robot.policy_version) == (sim.num_updates, sim.policy_version)
    assert len(robot.replay) == 0 and robot.env_steps == 0 and not robot.ready
    assert robot.demo_buffer_rows == robot.prior_rows == 40 and robot.num_demonstrations == 0
    assert robot.started_from == tmp_path / "sim"
    np.testing.assert_array_equal(robot.demos.rows(0, 40).obs, stream(40, 0).obs.astype(np.float32))
    assert robot.demos.rows(0, 40).truncated[-1] == 1.0  # no n-step return runs past the prior data
    robot.add_transitions(stream(10, 5))
    assert robot.ready
    batches = robot.sample(2)
    assert batches.demo_rows == round(config.batch_size * config.demo_fraction)
    robot.train(1)
    robot.save_checkpoint()
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "sim").rglob("*")) == sim_files  # only read

    # a restart resumes the robot run itself (its prior data included), not the simulation run again
    again = Learner.create_or_resume(
        tmp_path / "robot", OBS_DIM, ACT_DIM, config, start_from=tmp_path / "sim"
    )
    assert (again.env_steps, again.demo_buffer_rows, again.num_updates) == (10, 40, robot.num_updates)
    assert again.prior_rows == 40 and again.started_from is None

    with pytest.raises(ValueError, match="no checkpoint to start from"):
        Learner.create_or_resume(tmp_path / "other", OBS_DIM, ACT_DIM, config, start_from=tmp_path / "none")
    wider = preset_config("sac", **{**CONFIG, "hidden_sizes": [32, 32]})
    with pytest.raises(ValueError, match="hidden_sizes"):
        Learner.create_or_resume(tmp_path / "other", OBS_DIM, ACT_DIM, wider, start_from=tmp_path / "sim")
