"""The one transition record: validation (drop and count), npz round trip, batching, episode tracking."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from rl_control.transitions import (
    FIELDS,
    EpisodeTracker,
    TransitionBatch,
    TransitionBatcher,
    ValidBatch,
    validate,
)

OBS_DIM, ACT_DIM = 3, 1


def batch(rows: int) -> TransitionBatch:
    rng = np.random.default_rng(0)
    return TransitionBatch(
        obs=rng.normal(size=(rows, OBS_DIM)),
        action=rng.uniform(-1, 1, (rows, ACT_DIM)),
        reward=np.arange(rows, dtype=np.float64),
        next_obs=rng.normal(size=(rows, OBS_DIM)),
        terminated=np.zeros(rows),
        truncated=np.zeros(rows),
    )


def test_validate_drops_non_finite_and_out_of_limit_rows_and_says_which() -> None:
    raw = batch(6)
    raw.reward[1] = np.nan
    raw.obs[3, 2] = np.inf
    raw.reward[4] = 3e38  # finite in float32: only a limit catches it
    raw.action[5, 0] = 1.5  # outside the normalized action range
    clean, dropped = validate(raw, OBS_DIM, ACT_DIM, source="/t", limits={"reward": 1e4})
    assert isinstance(clean, ValidBatch) and clean.obs.dtype == np.float32
    assert clean.reward.tolist() == [0.0, 2.0] and dropped.count == 4
    assert dropped.non_finite["reward"].tolist() == [1] and dropped.non_finite["obs"].tolist() == [3]
    assert dropped.beyond_limit["reward"].tolist() == [4] and dropped.beyond_limit["action"].tolist() == [5]
    assert dropped.describe("/t").startswith("/t: field 'obs' has non-finite values in row(s) [3]")
    _, none = validate(batch(4), OBS_DIM, ACT_DIM)
    assert none.count == 0


def test_a_kept_row_before_dropped_rows_ends_its_stream_so_n_step_returns_do_not_bridge_the_gap() -> None:
    raw = batch(6)
    raw.terminated[3] = 1.0  # row 3 terminates: stays terminated, not truncated
    raw.reward[[2, 4]] = np.nan
    clean, _ = validate(raw, OBS_DIM, ACT_DIM)
    assert clean.reward.tolist() == [0.0, 1.0, 3.0, 5.0]
    assert clean.truncated.tolist() == [0.0, 1.0, 0.0, 0.0]  # row 1 preceded a gap; row 5 is the last
    assert clean.terminated.tolist() == [0.0, 0.0, 1.0, 0.0]
    assert raw.truncated.tolist() == [0.0] * 6  # the caller's batch is not modified


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"obs": np.zeros((4, 2))}, r"'obs' has shape \(4, 2\), expected \(B, 3\)"),
        ({"reward": np.zeros(3)}, "'reward' has 3 rows, 'obs' has 4"),
        ({"terminated": np.full(4, 0.5)}, "'terminated' must hold only 0/1 values"),
        ({"intervention": np.full(4, 2.0)}, "'intervention' must hold only 0/1 values"),
        ({"intervention": np.zeros(3)}, "'intervention' has 3 rows, 'obs' has 4"),
        ({"action": np.array([["a"]] * 4)}, "'action' has non-numeric dtype"),
    ],
)
def test_validate_refuses_what_no_row_can_fix(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate(TransitionBatch(**{**vars(batch(4)), **change}), OBS_DIM, ACT_DIM)
    with pytest.raises(ValueError, match="limits for unknown field"):
        validate(batch(4), OBS_DIM, ACT_DIM, limits={"rewards": 1.0})


def test_npz_round_trip_and_refusals(tmp_path: Path) -> None:
    original = batch(5)
    original.to_npz(tmp_path / "b.npz")
    loaded = TransitionBatch.from_npz(tmp_path / "b.npz")
    for name in ("obs", "action", "reward", "next_obs", "terminated", "truncated"):
        np.testing.assert_array_equal(getattr(loaded, name), np.float32(getattr(original, name)))
    assert len(TransitionBatch.from_npz(original.to_npz_bytes())) == 5
    np.savez(tmp_path / "partial.npz", obs=original.obs)
    with pytest.raises(ValueError, match=r"partial.npz: missing array\(s\) \['action'"):
        TransitionBatch.from_npz(tmp_path / "partial.npz")
    pickled = io.BytesIO()
    np.savez(pickled, **{**vars(original), "obs": np.array([object()] * 5)})
    with pytest.raises(ValueError, match="chunk-7: not a readable npz"):
        TransitionBatch.from_npz(pickled.getvalue(), name="chunk-7")


def test_batcher_publishes_full_batches_and_flushes_the_rest() -> None:
    published: list[TransitionBatch] = []
    batcher = TransitionBatcher(OBS_DIM, ACT_DIM, 2, published.append)
    for k in range(5):
        batcher.append(np.full(OBS_DIM, k), np.zeros(ACT_DIM), float(k), np.zeros(OBS_DIM), False, k == 4)
    assert [len(b) for b in published] == [2, 2] and batcher.rows == 1
    batcher.flush()
    assert [b.reward.tolist() for b in published] == [[0, 1], [2, 3], [4]]
    assert published[0].obs[1, 0] == 1.0 and published[2].truncated.tolist() == [1.0]
    published[0].obs[0, 0] = 99.0  # published rows are copies: the batcher's storage is reused
    batcher.append(np.zeros(OBS_DIM), np.zeros(ACT_DIM), 0.0, np.zeros(OBS_DIM), False, False)
    assert published[0].obs[0, 0] == 99.0


def test_episode_tracker_counts_returns_and_lengths_across_batches() -> None:
    tracker = EpisodeTracker(window=2)
    first = batch(3)
    first.truncated[1] = 1.0
    assert tracker.add_batch(first) == [0.0 + 1.0]
    second = batch(2)
    second.terminated[1] = 1.0
    assert tracker.add_batch(second) == [2.0 + 0.0 + 1.0]
    assert tracker.episodes == 2 and tracker.last_length == 3 and list(tracker.recent) == [1.0, 3.0]
    tracker.add(5.0, False)
    tracker.restart()
    assert tracker.episode_return == 0.0 and tracker.episode_length == 0


def test_intervention_flag_defaults_to_none_and_survives_every_step(tmp_path: Path) -> None:
    """The source flag: absent means no human row; validation, selection, joining and npz keep it."""
    assert batch(4).intervention.tolist() == [0.0] * 4 and batch(4).interventions == 0
    flagged = TransitionBatch(**{**vars(batch(5)), "intervention": np.array([0, 1, 1, 0, 1], bool)})
    clean, _ = validate(flagged, OBS_DIM, ACT_DIM)
    assert clean.intervention.dtype == np.float32 and clean.intervention.tolist() == [0, 1, 1, 0, 1]
    flagged.reward[1] = np.nan  # a dropped row takes its flag with it
    assert validate(flagged, OBS_DIM, ACT_DIM)[0].intervention.tolist() == [0, 1, 0, 1]
    joined = TransitionBatch.concatenate([clean.select(slice(1, 3)), batch(2)])
    assert joined.intervention.tolist() == [1, 1, 0, 0] and joined.interventions == 2
    clean.to_npz(tmp_path / "flagged.npz")
    assert TransitionBatch.from_npz(tmp_path / "flagged.npz").intervention.tolist() == [0, 1, 1, 0, 1]
    # a file written before the flag existed reads with every row a non-intervention row
    np.savez(
        tmp_path / "old.npz", **{name: getattr(clean, name) for name in FIELDS if name != "intervention"}
    )
    assert TransitionBatch.from_npz(tmp_path / "old.npz").intervention.tolist() == [0.0] * 5


def test_batcher_stores_the_source_flag_per_row() -> None:
    published: list[TransitionBatch] = []
    batcher = TransitionBatcher(OBS_DIM, ACT_DIM, 3, published.append)
    for k in range(5):
        batcher.append(
            np.zeros(OBS_DIM),
            np.zeros(ACT_DIM),
            0.0,
            np.zeros(OBS_DIM),
            False,
            False,
            intervention=k in (1, 3),
        )
    batcher.flush()
    assert [b.intervention.tolist() for b in published] == [[0, 1, 0], [1, 0]]
