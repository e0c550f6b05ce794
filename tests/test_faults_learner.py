"""Learner and persistence faults without ROS: bounds, divergence rollback, damaged and foreign files, WAL."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from rl_control.learning import CheckpointError, Learner, TransitionBatch, preset_config
from rl_control.learning.checkpoint import RUN_FILE, RunDirectory
from rl_control.learning.learner import DivergedError
from rl_control.learning.transition_log import TransitionLog
from rl_control.transitions import FIELDS, validate

OBS_DIM, ACT_DIM = 4, 2
CONFIG = {"hidden_sizes": [16, 16], "batch_size": 16, "learning_starts": 8, "buffer_capacity": 400}


def stream(rows: int, seed: int) -> TransitionBatch:
    rng = np.random.default_rng(seed)
    return TransitionBatch(
        obs=rng.normal(0.0, 1.0, (rows, OBS_DIM)).astype(np.float32),
        action=rng.uniform(-1, 1, (rows, ACT_DIM)).astype(np.float32),
        reward=rng.normal(size=rows).astype(np.float32),
        next_obs=rng.normal(0.0, 1.0, (rows, OBS_DIM)).astype(np.float32),
        terminated=np.zeros(rows, np.float32),
        truncated=(np.arange(rows) % 10 == 9).astype(np.float32),
    )


def new_learner(run_dir: Path) -> Learner:
    return Learner.create_or_resume(run_dir, OBS_DIM, ACT_DIM, preset_config("sac", **CONFIG))


def test_rows_beyond_limits_or_non_finite_are_dropped() -> None:
    batch = stream(7, 0)
    batch.reward[1] = 3e38  # finite in float32
    batch.obs[2, 0] = 2e4
    batch.next_obs[3, 1] = np.nan
    batch.action[4, 0] = 1.5
    batch.reward[5] = np.inf
    limits = {"obs": 1e4, "next_obs": 1e4, "reward": 1e3}
    clean, dropped = validate(batch, OBS_DIM, ACT_DIM, limits=limits)
    assert len(clean) == 2 and clean.reward.tolist() == [batch.reward[0], batch.reward[6]]
    assert dropped.count == 5
    assert dropped.beyond_limit_only == 3  # rows 1, 2, 4: finite values beyond their limits


def test_a_diverged_update_is_rolled_back_and_training_continues(tmp_path: Path, caplog) -> None:
    learner = new_learner(tmp_path)
    learner.add_transitions(stream(64, 0))
    learner.train(4)
    assert learner.rollbacks == 0
    good_updates = learner.num_updates
    good = [p.detach().clone() for p in learner.agent.critic.parameters()]
    poisoned = stream(64, 1)
    poisoned.reward[:] = 3e38  # finite rows the learner itself accepts: the update overflows
    learner.add_transitions(poisoned)
    learner.train(4)
    assert learner.rollbacks >= 1 and "diverged update" in caplog.text
    assert learner.weights_finite()
    assert learner.num_updates < good_updates + 4 * learner.config.utd_ratio  # rolled-back chunks uncounted
    if learner.num_updates == good_updates:  # every chunk diverged: the state is exactly the last good one
        for before, after in zip(good, learner.agent.critic.parameters(), strict=True):
            assert torch.equal(before, after.detach())
    learner.save_checkpoint()  # finite: checkpointing and exporting work
    learner.export_onnx(stochastic=True)
    resumed = new_learner(tmp_path)
    assert resumed.rollbacks == learner.rollbacks and resumed.weights_finite()


def test_non_finite_weights_are_never_saved_or_exported_and_old_poison_is_skipped(tmp_path: Path) -> None:
    learner = new_learner(tmp_path)
    learner.add_transitions(stream(32, 0))
    learner.train(2)
    learner.save_checkpoint()
    with torch.no_grad():
        next(learner.agent.actor.parameters()).fill_(float("nan"))
    with pytest.raises(DivergedError, match="refusing to checkpoint"):
        learner.save_checkpoint()
    with pytest.raises(DivergedError, match="refusing to export"):
        learner.export_onnx(stochastic=True)
    # A poisoned checkpoint written by an older version: resume skips it instead of crash-looping.
    learner.num_updates += 10
    state = {"agent": learner.agent.state_dict(), "numpy_rng": "{}", "torch_rng": torch.get_rng_state()}
    content = json.loads(learner.run.manifests()[0].read_text())
    learner.run.write_checkpoint((learner.num_updates, learner.env_steps), state, content)
    resumed = new_learner(tmp_path)
    assert resumed.num_updates == learner.num_updates - 10 and resumed.weights_finite()


def test_a_damaged_oldest_chunk_costs_only_its_rows(tmp_path: Path) -> None:
    learner = new_learner(tmp_path)
    for part in range(3):
        learner.add_transitions(stream(30, part))
        learner.train(1)
        learner.save_checkpoint()
    manifest = json.loads(learner.run.manifests()[0].read_text())
    oldest = manifest["replay_chunks"][0]
    path = tmp_path / oldest["file"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    for manifest_path in learner.run.manifests():  # every checkpoint stays usable
        _, state = learner.run.load_checkpoint(manifest_path, torch.device("cpu"))
        assert "agent" in state
    resumed = new_learner(tmp_path)
    assert (resumed.num_updates, resumed.lost_rows, len(resumed.replay)) == (learner.num_updates, 30, 60)
    np.testing.assert_array_equal(resumed.replay.rows(0, 60).obs, learner.replay.rows(30, 90).obs)
    resumed.save_checkpoint()  # the surviving rows are rewritten as a fresh chunk
    again = new_learner(tmp_path)
    assert (again.lost_rows, len(again.replay)) == (0, 60)
    np.testing.assert_array_equal(again.replay.rows(0, 60).reward, learner.replay.rows(30, 90).reward)


def test_run_json_garbage_is_refused_naming_the_file(tmp_path: Path) -> None:
    new_learner(tmp_path)
    (tmp_path / RUN_FILE).write_bytes(np.random.default_rng(0).bytes(256))
    with pytest.raises(CheckpointError, match=rf"{RUN_FILE}: unreadable run description"):
        new_learner(tmp_path)
    (tmp_path / RUN_FILE).write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="a JSON object was expected"):
        new_learner(tmp_path)


def test_deleted_run_json_is_recovered_from_a_manifest_or_refused(tmp_path: Path, caplog) -> None:
    learner = new_learner(tmp_path)
    learner.add_transitions(stream(20, 0))
    learner.save_checkpoint()
    original = json.loads((tmp_path / RUN_FILE).read_text())
    (tmp_path / RUN_FILE).unlink()
    with pytest.raises(ValueError, match="obs_dim=4, act_dim=2, not obs_dim=5"):  # still checked
        Learner.create_or_resume(tmp_path, 5, ACT_DIM, preset_config("sac", **CONFIG))
    with caplog.at_level(logging.WARNING):
        resumed = new_learner(tmp_path)
    assert "recovered it from" in caplog.text and resumed.env_steps == 20
    assert json.loads((tmp_path / RUN_FILE).read_text()) == original
    (tmp_path / RUN_FILE).unlink()
    for manifest_path in RunDirectory(tmp_path).manifests():  # manifests without the copy: refused
        manifest = json.loads(manifest_path.read_text())
        del manifest["run_info"]
        manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=rf"{RUN_FILE} is missing and no checkpoint manifest"):
        new_learner(tmp_path)


def test_a_foreign_manifest_is_skipped_naming_it(tmp_path: Path, caplog) -> None:
    learner = new_learner(tmp_path)
    learner.add_transitions(stream(20, 0))
    learner.train(1)
    learner.save_checkpoint()
    foreign = tmp_path / "checkpoints" / "ckpt_999999999999_000000000001.json"
    foreign.write_bytes(b"\xff\xfe garbage \x00")
    resumed = new_learner(tmp_path)
    assert resumed.num_updates == learner.num_updates
    assert f"{foreign}: unreadable manifest" in caplog.text


def test_stream_state_is_committed_in_the_manifest(tmp_path: Path) -> None:
    learner = new_learner(tmp_path)
    learner.add_transitions(stream(20, 0))
    learner.save_checkpoint(stream_state={"last_seq": 4, "streams": {"abc": 4}})
    learner.add_transitions(stream(20, 1))
    learner.save_checkpoint(stream_state={"last_seq": 9, "streams": {"abc": 9}})
    newest = learner.run.manifests()[0]
    newest.write_bytes(newest.read_bytes()[:50])  # the fallback checkpoint brings its own stream state
    resumed = new_learner(tmp_path)
    assert (resumed.env_steps, resumed.stream_state["last_seq"]) == (20, 4)


def test_transition_log_survives_a_torn_tail_and_rotates(tmp_path: Path) -> None:
    wal = TransitionLog(tmp_path, OBS_DIM, ACT_DIM)
    for seq in range(3):
        wal.append("abc", seq, stream(5, seq))
    wal.close()
    segment = wal.segments()[-1]
    segment.write_bytes(segment.read_bytes()[:-7])  # the last record torn by a crash
    reopened = TransitionLog(tmp_path, OBS_DIM, ACT_DIM)
    contents = reopened.read()
    assert [m.seq for m in contents.messages] == [0, 1] and contents.damaged_records == 1
    np.testing.assert_array_equal(contents.messages[1].batch.obs, stream(5, 1).obs)
    reopened.append("def", 0, stream(2, 9))
    closed = reopened.rotate()
    assert len(closed) == 2 and [m.publisher for m in reopened.read().messages] == ["abc", "abc", "def"]
    reopened.discard(closed)
    assert reopened.read().messages == []


def test_a_manifest_with_wrong_types_is_skipped_naming_it(tmp_path: Path, caplog) -> None:
    learner = new_learner(tmp_path)
    learner.add_transitions(stream(20, 0))
    learner.save_checkpoint()
    learner.add_transitions(stream(20, 1))
    learner.save_checkpoint()
    newest = learner.run.manifests()[0]
    manifest = json.loads(newest.read_text())
    manifest["replay_chunks"] = [{"file": 3}]
    newest.write_text(json.dumps(manifest))
    resumed = new_learner(tmp_path)
    assert resumed.env_steps == 20 and f"{newest}: malformed chunk entry" in caplog.text


def test_transition_log_keeps_the_intervention_flag_and_reads_records_written_without_it(
    tmp_path: Path,
) -> None:
    """A run resumed across the upgrade replays its older write-ahead records (no flag: no human rows)."""
    import zlib

    from rl_control.learning import transition_log as wal_format

    def record(seq: int, rows: int, arrays: list[np.ndarray]) -> bytes:
        payload = b"".join(
            [wal_format._PUBLISHER.pack(3), b"abc", wal_format._SEQ_ROWS.pack(seq, rows)]
            + [np.ascontiguousarray(a, np.float32).tobytes() for a in arrays]
        )
        return wal_format._HEADER.pack(wal_format._MAGIC, len(payload), zlib.crc32(payload)) + payload

    flagged = stream(4, 1)
    flagged.intervention[[0, 2]] = 1.0
    wal = TransitionLog(tmp_path, OBS_DIM, ACT_DIM)
    wal.append("abc", 0, flagged)
    wal.close()
    old = stream(3, 2)
    with wal.segments()[-1].open("ab") as segment:
        segment.write(record(1, 3, [getattr(old, key) for key in FIELDS[:6]]))  # the layout before the flag
        segment.write(record(2, 3, [old.obs]))  # intact but the wrong size for either layout
    contents = TransitionLog(tmp_path, OBS_DIM, ACT_DIM).read()
    assert [m.seq for m in contents.messages] == [0, 1] and contents.damaged_records == 1
    assert contents.messages[0].batch.intervention.tolist() == [1.0, 0.0, 1.0, 0.0]
    assert contents.messages[1].batch.intervention.tolist() == [0.0, 0.0, 0.0]
    for key in FIELDS[:6]:
        np.testing.assert_array_equal(
            getattr(contents.messages[1].batch, key), getattr(old, key), err_msg=key
        )
