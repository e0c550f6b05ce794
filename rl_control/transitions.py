"""THE transition record: one batch type from the actor, over the wire, into the replay and to npz files.

A transition is ``(obs_t, action_t, reward, obs_t+1, terminated, truncated)`` plus its source flag
``intervention`` (1: a human chose ``action_t``, 0: the policy or random exploration); a
:class:`TransitionBatch` holds ``B`` of them in stream order as float32 arrays (``action`` normalized to
[-1, 1]; ``reward``, ``terminated``, ``truncated`` and ``intervention`` are ``[B]``). The actor builds
batches (:class:`TransitionBatcher`), the ROS codecs carry them (``transitions_to_message`` /
``transitions_from_message`` in :mod:`rl_control.ros.messages`), :func:`validate` checks them once where
they enter the learner (structural problems raise; rows that are non-finite or beyond per-field magnitude
limits are dropped and counted), and :meth:`TransitionBatch.to_npz` / :meth:`TransitionBatch.from_npz`
store them (demonstrations, replay chunks; files without ``intervention`` read as all-zero flags).
:class:`EpisodeTracker` is the one place episode returns and lengths are counted from a transition stream.
"""

from __future__ import annotations

import collections
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

#: field names in storage and wire order
FIELDS: tuple[str, ...] = ("obs", "action", "reward", "next_obs", "terminated", "truncated", "intervention")
#: 0/1 flags among :data:`FIELDS`
FLAG_FIELDS: tuple[str, ...] = ("terminated", "truncated", "intervention")
#: fields a stored file or record may lack (written before the field existed): all rows read as 0
OPTIONAL_FIELDS: tuple[str, ...] = ("intervention",)

_NO_INTERVENTIONS = np.zeros(0, np.float32)  # the default: replaced by zeros for every row


@dataclass
class TransitionBatch:
    """``B`` transitions in stream order (float32; ``reward``, ``terminated``, ``truncated`` and
    ``intervention`` are [B]). Without ``intervention`` no row is a human's."""

    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    intervention: np.ndarray = field(default_factory=lambda: _NO_INTERVENTIONS)

    def __post_init__(self) -> None:
        if self.intervention is _NO_INTERVENTIONS:
            self.intervention = np.zeros(len(self), np.float32)

    def __len__(self) -> int:
        return int(np.shape(self.reward)[0])

    @property
    def interventions(self) -> int:
        """How many rows hold a human's action."""
        return int(np.count_nonzero(self.intervention))

    def end_stream(self) -> None:
        """Mark the last row truncated unless it ends an episode: n-step returns then never run past it
        into rows stored next that do not continue it (another file, robot or message)."""
        if len(self) and self.terminated[-1] == 0 and self.truncated[-1] == 0:
            if not self.truncated.flags.writeable:  # e.g. a view of a received message's buffer
                self.truncated = self.truncated.copy()
            self.truncated[-1] = 1.0

    def select(self, rows: slice | np.ndarray) -> TransitionBatch:
        """The rows ``rows`` (a slice, a boolean mask or indices) as a new batch of copies."""
        return TransitionBatch(**{name: np.asarray(getattr(self, name))[rows].copy() for name in FIELDS})

    @classmethod
    def concatenate(cls, batches: Sequence[TransitionBatch]) -> TransitionBatch:
        """One batch holding ``batches`` in order."""
        if not batches:
            raise ValueError("concatenate: no batches")
        return cls(**{name: np.concatenate([getattr(b, name) for b in batches]) for name in FIELDS})

    def to_npz(self, target: Path | BinaryIO) -> None:
        """Write the batch as an uncompressed ``.npz`` (float32 arrays named as :data:`FIELDS`, no pickle)."""
        arrays: dict[str, Any] = {name: np.asarray(getattr(self, name), np.float32) for name in FIELDS}
        np.savez(target, **arrays)

    def to_npz_bytes(self) -> bytes:
        """:meth:`to_npz` into memory."""
        buffer = io.BytesIO()
        self.to_npz(buffer)
        return buffer.getvalue()

    @classmethod
    def from_npz(cls, source: Path | BinaryIO | bytes, *, name: str = "") -> TransitionBatch:
        """Read a batch written by :meth:`to_npz` (``allow_pickle=False``); ValueError names the source.

        The arrays are returned as stored: call :func:`validate` before using them.
        """
        where = name or str(source if isinstance(source, Path) else "<npz>")
        stream = io.BytesIO(source) if isinstance(source, bytes) else source
        try:
            with np.load(stream, allow_pickle=False) as archive:
                needed = [name for name in FIELDS if name not in OPTIONAL_FIELDS]
                missing = [name for name in needed if name not in archive.files]
                if missing:
                    raise ValueError(f"{where}: missing array(s) {missing}; a transition file needs {needed}")
                return cls(**{name: archive[name] for name in FIELDS if name in archive.files})
        except ValueError as error:
            if str(error).startswith(where):
                raise
            raise ValueError(f"{where}: not a readable npz transition file ({error})") from error
        except Exception as error:  # zip/format errors, pickled object arrays
            raise ValueError(f"{where}: not a readable npz transition file ({error})") from error


class ValidBatch(TransitionBatch):
    """A batch :func:`validate` returned (float32, shapes checked, finite, within its limits)."""


def _checked_array(batch: TransitionBatch, name: str, tail: tuple[int, ...], source: str) -> np.ndarray:
    raw = np.asarray(getattr(batch, name))
    if raw.dtype.kind not in "biuf":
        raise ValueError(f"{source}: field {name!r} has non-numeric dtype {raw.dtype}")
    array = np.ascontiguousarray(raw, dtype=np.float32)
    if array.ndim != 1 + len(tail) or array.shape[1:] != tail:
        expected_shape = ", ".join(["B", *map(str, tail)])
        raise ValueError(
            f"{source}: field {name!r} has shape {tuple(array.shape)}, expected ({expected_shape})"
        )
    return array


@dataclass
class DroppedRows:
    """What :func:`validate` dropped: per field, the rows that were non-finite or beyond a limit."""

    non_finite: dict[str, np.ndarray]
    beyond_limit: dict[str, np.ndarray]
    count: int = 0

    @property
    def beyond_limit_only(self) -> int:
        """How many dropped rows were finite but held a value beyond its limit."""
        beyond = {int(row) for rows in self.beyond_limit.values() for row in rows}
        non_finite = {int(row) for rows in self.non_finite.values() for row in rows}
        return len(beyond - non_finite)

    def describe(self, source: str) -> str:
        """One line naming ``source``, each offending field and its first rows."""
        parts = [
            f"field {name!r} has {what} in row(s) {rows[:10].tolist()}{' ...' if rows.size > 10 else ''}"
            for what, table in (
                ("non-finite values", self.non_finite),
                ("values beyond its limit", self.beyond_limit),
            )
            for name, rows in table.items()
        ]
        return f"{source}: " + "; ".join(parts)


def validate(
    batch: TransitionBatch,
    obs_dim: int,
    act_dim: int,
    *,
    source: str = "transition batch",
    limits: Mapping[str, float] | None = None,
) -> tuple[ValidBatch, DroppedRows]:
    """The one validation of transitions: returns the clean batch and what was dropped.

    Raises ValueError naming ``source`` and the field for what no row can fix: a non-numeric dtype, wrong
    shapes, row counts that disagree, flags (:data:`FLAG_FIELDS`) other than 0/1. Drops (and reports) rows
    holding a non-finite value, an action outside [-1, 1], or a value whose magnitude exceeds
    ``limits[field]`` (per-field bounds, e.g. from the task: ``{"reward": 1e4, "obs": 1e3}``). A kept row
    followed by a dropped one is marked truncated unless it terminates, so n-step returns never bridge the
    gap (its own ``next_obs`` is still bootstrapped from).
    """
    tails = {"obs": (obs_dim,), "action": (act_dim,), "next_obs": (obs_dim,)}
    arrays = {name: _checked_array(batch, name, tails.get(name, ()), source) for name in FIELDS}
    rows = arrays["obs"].shape[0]
    for name, array in arrays.items():
        if array.shape[0] != rows:
            raise ValueError(f"{source}: field {name!r} has {array.shape[0]} rows, 'obs' has {rows}")
    for flag in FLAG_FIELDS:
        if not np.isin(arrays[flag], (0.0, 1.0)).all():
            raise ValueError(f"{source}: field {flag!r} must hold only 0/1 values")
    bounds = {"action": 1.0 + 1e-6, **(limits or {})}
    unknown = sorted(set(bounds) - set(FIELDS))
    if unknown:
        raise ValueError(f"{source}: limits for unknown field(s) {unknown}; fields are {list(FIELDS)}")
    dropped = DroppedRows({}, {})
    keep = np.ones(rows, dtype=bool)
    for name, array in arrays.items():
        flat = array.reshape(rows, -1)
        finite = np.isfinite(flat).all(axis=1)
        if not finite.all():
            dropped.non_finite[name] = np.flatnonzero(~finite)
        within = np.ones(rows, dtype=bool)
        if name in bounds:
            with np.errstate(invalid="ignore"):
                within = ~(np.abs(flat) > bounds[name]).any(axis=1)
            if not within.all():
                dropped.beyond_limit[name] = np.flatnonzero(~within)
        keep &= finite & within
    dropped.count = int(rows - np.count_nonzero(keep))
    if dropped.count:
        before_gap = keep & ~np.append(keep[1:], True) & (arrays["terminated"] == 0)
        arrays["truncated"] = np.where(before_gap, np.float32(1.0), arrays["truncated"])
        arrays = {name: array[keep] for name, array in arrays.items()}
    return ValidBatch(**arrays), dropped


class TransitionBatcher:
    """Collects transitions one at a time into preallocated rows; hands a :class:`TransitionBatch` to
    ``publish`` when ``capacity`` rows are full or on :meth:`flush`."""

    def __init__(
        self, obs_dim: int, act_dim: int, capacity: int, publish: Callable[[TransitionBatch], None]
    ) -> None:
        if capacity < 1:
            raise ValueError(f"transition batch size must be >= 1, got {capacity}")
        self.capacity = capacity
        self.publish = publish
        self.rows = 0
        self._rows = TransitionBatch(
            obs=np.zeros((capacity, obs_dim), np.float32),
            action=np.zeros((capacity, act_dim), np.float32),
            reward=np.zeros(capacity, np.float32),
            next_obs=np.zeros((capacity, obs_dim), np.float32),
            terminated=np.zeros(capacity, np.float32),
            truncated=np.zeros(capacity, np.float32),
            intervention=np.zeros(capacity, np.float32),
        )

    def append(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: float,
        next_obs: np.ndarray,
        terminated: bool,
        truncated: bool,
        *,
        intervention: bool = False,
    ) -> None:
        """Store one transition (``intervention``: a human chose ``action``); publishes the batch when
        it becomes full."""
        i, rows = self.rows, self._rows
        rows.obs[i], rows.action[i], rows.reward[i] = obs, action, reward
        rows.next_obs[i], rows.terminated[i], rows.truncated[i] = next_obs, terminated, truncated
        rows.intervention[i] = intervention
        self.rows += 1
        if self.rows == self.capacity:
            self.flush()

    def flush(self) -> None:
        """Publish the stored rows (if any, as copies) and start empty."""
        if self.rows:
            batch = self._rows.select(slice(0, self.rows))
            self.rows = 0
            self.publish(batch)


class EpisodeTracker:
    """Episode returns and lengths from a stream of transitions (actor, learner, monitor, train loop).

    ``recent`` keeps the returns of the last ``window`` finished episodes.
    """

    def __init__(self, window: int = 100) -> None:
        self.episodes = 0
        self.episode_return = 0.0  # of the episode in progress
        self.episode_length = 0
        self.last_return = 0.0
        self.last_length = 0
        self.recent: collections.deque[float] = collections.deque(maxlen=window)

    def add(self, reward: float, done: bool) -> bool:
        """Count one transition; True when it ended an episode (``last_return``/``last_length`` are set)."""
        self.episode_return += float(reward)
        self.episode_length += 1
        if not done:
            return False
        self.episodes += 1
        self.last_return, self.last_length = self.episode_return, self.episode_length
        self.recent.append(self.episode_return)
        self.episode_return, self.episode_length = 0.0, 0
        return True

    def add_batch(self, batch: TransitionBatch) -> list[float]:
        """Count every row of ``batch``; returns the returns of the episodes it ended."""
        finished: list[float] = []
        for reward, terminated, truncated in zip(
            batch.reward, batch.terminated, batch.truncated, strict=True
        ):
            if self.add(float(reward), bool(terminated or truncated)):
                finished.append(self.last_return)
        return finished

    def restart(self) -> None:
        """Drop the episode in progress (e.g. an environment reset without a terminal transition)."""
        self.episode_return, self.episode_length = 0.0, 0
