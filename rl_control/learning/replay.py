"""The preallocated ring replay buffer and the demonstration file format.

Demonstration files are ``.npz`` archives (loaded with ``allow_pickle=False``) holding float32-compatible
arrays ``obs [T, obs_dim]``, ``action [T, act_dim]`` (normalized to [-1, 1]), ``reward [T]``,
``next_obs [T, obs_dim]``, ``terminated [T]`` and ``truncated [T]`` (0/1 or bool), optionally
``intervention [T]`` (0/1: rows whose action a human chose). Rows are in stream order; an episode ends at
a row whose ``terminated`` or ``truncated`` is set. They are
:meth:`rl_control.transitions.TransitionBatch.to_npz` files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rl_control.transitions import FIELDS, TransitionBatch, ValidBatch, validate


class DemonstrationError(ValueError):
    """A demonstration file is missing fields or has shapes/dtypes that do not fit the task."""


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
        self.intervention = np.zeros(capacity, np.float32)
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
            batch = batch.select(slice(skip, None))
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
        return TransitionBatch(**{name: getattr(self, name)[slots].copy() for name in FIELDS})

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


def load_demonstrations(path: Path, obs_dim: int, act_dim: int) -> ValidBatch:
    """Load and validate a demonstration ``.npz`` (format in the module docstring).

    The last row is marked truncated if it does not end an episode, so n-step returns never run
    across files. Raises :class:`DemonstrationError` naming the file and the offending field.
    """
    path = Path(path)
    if not path.is_file():
        raise DemonstrationError(f"{path}: demonstration file not found")
    try:
        batch, dropped = validate(TransitionBatch.from_npz(path), obs_dim, act_dim, source=str(path))
    except ValueError as error:
        raise DemonstrationError(f"{error} (task: obs_dim={obs_dim}, act_dim={act_dim})") from error
    if dropped.count:
        raise DemonstrationError(f"{dropped.describe(str(path))}; a demonstration file must be clean")
    if len(batch) == 0:
        raise DemonstrationError(f"{path}: holds no transitions")
    batch.end_stream()
    return batch
