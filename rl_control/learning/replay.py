"""Transition batches, the preallocated ring replay buffer and the demonstration file format.

Demonstration files are ``.npz`` archives (loaded with ``allow_pickle=False``) holding float32-compatible
arrays ``obs [T, obs_dim]``, ``action [T, act_dim]`` (normalized to [-1, 1]), ``reward [T]``,
``next_obs [T, obs_dim]``, ``terminated [T]`` and ``truncated [T]`` (0/1 or bool). Rows are in stream
order; an episode ends at a row whose ``terminated`` or ``truncated`` is set.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

FIELDS: tuple[str, ...] = ("obs", "action", "reward", "next_obs", "terminated", "truncated")


class DemonstrationError(ValueError):
    """A demonstration file is missing fields or has shapes/dtypes that do not fit the task."""


@dataclass
class TransitionBatch:
    """``B`` transitions in stream order (float32; ``reward``, ``terminated``, ``truncated`` are [B])."""

    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray

    def __len__(self) -> int:
        return int(np.shape(self.reward)[0])

    def validated(self, obs_dim: int, act_dim: int, source: str = "transition batch") -> TransitionBatch:
        """A float32 copy after checking shapes and finiteness; ``ValueError`` names the problem."""
        expected = {
            "obs": (obs_dim,),
            "action": (act_dim,),
            "reward": (),
            "next_obs": (obs_dim,),
            "terminated": (),
            "truncated": (),
        }
        arrays: dict[str, np.ndarray] = {}
        rows: int | None = None
        for name, tail in expected.items():
            raw = np.asarray(getattr(self, name))
            if raw.dtype.kind not in "biuf":
                raise ValueError(f"{source}: field {name!r} has non-numeric dtype {raw.dtype}")
            array = np.ascontiguousarray(raw, dtype=np.float32)
            if array.ndim != 1 + len(tail) or array.shape[1:] != tail:
                expected_shape = ", ".join(["B", *map(str, tail)])
                raise ValueError(
                    f"{source}: field {name!r} has shape {tuple(array.shape)}, expected ({expected_shape})"
                )
            if rows is None:
                rows = array.shape[0]
            elif array.shape[0] != rows:
                raise ValueError(f"{source}: field {name!r} has {array.shape[0]} rows, 'obs' has {rows}")
            finite = np.isfinite(array).reshape(rows, -1).all(axis=1)
            if not finite.all():
                bad = np.flatnonzero(~finite)
                raise ValueError(
                    f"{source}: field {name!r} has non-finite values in row(s) {bad[:10].tolist()}"
                    f"{' ...' if bad.size > 10 else ''}; the batch was rejected"
                )
            arrays[name] = array
        if np.abs(arrays["action"]).max(initial=0.0) > 1.0 + 1e-6:
            raise ValueError(f"{source}: field 'action' has values outside the normalized range [-1, 1]")
        for flag in ("terminated", "truncated"):
            if not np.isin(arrays[flag], (0.0, 1.0)).all():
                raise ValueError(f"{source}: field {flag!r} must hold only 0/1 values")
        return TransitionBatch(**arrays)


class ReplayBuffer:
    """Preallocated float32 ring buffer of transitions from one stream, with n-step sampling.

    Global transition ``g`` (the g-th ever added) lives in slot ``g % capacity``; ``total_added``
    counts every transition ever added, so chunks of the stream can be persisted and restored exactly.
    """

    def __init__(self, capacity: int, obs_dim: int, act_dim: int) -> None:
        self.capacity = capacity
        self.obs_dim = obs_dim
        self.act_dim = act_dim
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.action = np.zeros((capacity, act_dim), np.float32)
        self.reward = np.zeros(capacity, np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.terminated = np.zeros(capacity, np.float32)
        self.truncated = np.zeros(capacity, np.float32)
        self.total_added = 0

    def __len__(self) -> int:
        return min(self.total_added, self.capacity)

    def add(self, batch: TransitionBatch) -> None:
        """Append an already validated batch (oldest rows are overwritten once full)."""
        self.write_rows(self.total_added, batch)

    def write_rows(self, start: int, batch: TransitionBatch) -> None:
        """Store ``batch`` as global transitions ``start, start + 1, ...`` and advance ``total_added``."""
        rows = len(batch)
        if rows > self.capacity:  # only the newest ``capacity`` rows survive
            skip = rows - self.capacity
            batch = TransitionBatch(*(getattr(batch, name)[skip:] for name in FIELDS))
            start, rows = start + skip, self.capacity
        slots = (start + np.arange(rows)) % self.capacity
        for name in FIELDS:
            getattr(self, name)[slots] = getattr(batch, name)
        self.total_added = max(self.total_added, start + rows)

    def rows(self, start: int, end: int) -> TransitionBatch:
        """Copy of global transitions ``[start, end)``; they must still be in the buffer."""
        if start < self.total_added - self.capacity or end > self.total_added or start > end:
            raise IndexError(f"rows [{start}, {end}) not held (buffer holds up to {self.total_added})")
        slots = np.arange(start, end) % self.capacity
        return TransitionBatch(*(getattr(self, name)[slots].copy() for name in FIELDS))

    def sample_indices(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """Uniform slot indices over the stored transitions."""
        return rng.integers(0, len(self), size=shape)

    def gather(self, slots: np.ndarray, n_step: int, gamma: float) -> dict[str, np.ndarray]:
        """n-step transitions starting at ``slots``: obs, action, return, next_obs and bootstrap discount.

        The return sums rewards until the episode ends (terminated or truncated) or the newest stored
        transition; ``discount`` is ``gamma**k`` for k summed rewards, and 0 when a true termination ended
        it, so time-limit truncations bootstrap and terminations do not.
        """
        out = {"obs": self.obs[slots], "action": self.action[slots]}
        if n_step == 1:
            out["reward"] = self.reward[slots]
            out["next_obs"] = self.next_obs[slots]
            out["discount"] = (gamma * (1.0 - self.terminated[slots])).astype(np.float32)
            return out
        newest = (self.total_added - 1) % self.capacity
        available = (newest - slots) % self.capacity  # transitions after ``slots`` in the stream
        ret = np.zeros(slots.shape, np.float32)
        scale = np.ones(slots.shape, np.float32)
        alive = np.ones(slots.shape, bool)
        last = slots.copy()
        terminal = np.zeros(slots.shape, np.float32)
        for k in range(n_step):
            step = alive & (k <= available)
            current = (slots + k) % self.capacity
            ret += np.where(step, scale * self.reward[current], 0.0).astype(np.float32)
            last = np.where(step, current, last)
            terminal = np.where(step, self.terminated[current], terminal)
            scale = np.where(step, scale * gamma, scale).astype(np.float32)
            alive = step & (self.terminated[current] == 0) & (self.truncated[current] == 0)
        out["reward"] = ret
        out["next_obs"] = self.next_obs[last]
        out["discount"] = (scale * (1.0 - terminal)).astype(np.float32)
        return out


def load_demonstrations(path: Path, obs_dim: int, act_dim: int) -> TransitionBatch:
    """Load and validate a demonstration ``.npz`` (format in the module docstring).

    The last row is marked truncated if it does not end an episode, so n-step returns never run
    across files. Raises :class:`DemonstrationError` naming the file and the offending field.
    """
    path = Path(path)
    if not path.is_file():
        raise DemonstrationError(f"{path}: demonstration file not found")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [name for name in FIELDS if name not in archive.files]
            if missing:
                raise DemonstrationError(
                    f"{path}: missing array(s) {missing}; a demonstration file needs {list(FIELDS)}"
                )
            raw = {name: archive[name] for name in FIELDS}
    except DemonstrationError:
        raise
    except Exception as error:  # zip/format errors, pickled object arrays
        raise DemonstrationError(f"{path}: not a readable npz demonstration file ({error})") from error
    try:
        batch = TransitionBatch(**raw).validated(obs_dim, act_dim, source=str(path))
    except ValueError as error:
        raise DemonstrationError(f"{error} (task: obs_dim={obs_dim}, act_dim={act_dim})") from error
    if len(batch) == 0:
        raise DemonstrationError(f"{path}: holds no transitions")
    if batch.terminated[-1] == 0 and batch.truncated[-1] == 0:
        batch.truncated[-1] = 1.0
    return batch


def save_demonstrations(path: Path, batch: TransitionBatch) -> None:
    """Write ``batch`` in the demonstration format (uncompressed npz)."""
    np.savez(Path(path), **{name: np.asarray(getattr(batch, name), np.float32) for name in FIELDS})
