"""The learner: agent + online replay + demonstration buffer + run-directory persistence + ONNX export."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rl_control.learning.agent import Agent, Minibatches, resolve_device
from rl_control.learning.checkpoint import CheckpointError, RunDirectory, atomic_write
from rl_control.learning.config import AgentConfig
from rl_control.learning.onnx_policy import (
    ACTION_OUTPUT,
    FORMAT,
    NOISE_INPUT,
    OBS_INPUT,
    build_actor_graph,
    verify_export,
)
from rl_control.learning.replay import ReplayBuffer, TransitionBatch, load_demonstrations

log = logging.getLogger(__name__)

# Fields that may change between a run's sessions; all others define the networks or the replay layout.
TUNABLE_FIELDS = frozenset(
    {
        "utd_ratio",
        "actor_delay",
        "batch_size",
        "actor_lr",
        "critic_lr",
        "temperature_lr",
        "learning_starts",
        "demo_fraction",
        "demo_bc_weight",
        "demo_bc_q_filter",
        "exploration_noise",
        "device",
        "policy_noise",
        "noise_clip",
        "tau",
        "n_step",
        "num_target_critics",
    }
)
# Critic updates sampled (and moved to the device) per chunk inside train().
UPDATES_PER_SAMPLE = 32


class Learner:
    """Off-policy learner bound to one run directory; see :meth:`create_or_resume`."""

    def __init__(
        self,
        run_dir: Path,
        obs_dim: int,
        act_dim: int,
        config: AgentConfig,
        metadata: dict[str, str],
        seed: int,
    ) -> None:
        if obs_dim < 1 or act_dim < 1:
            raise ValueError(f"obs_dim and act_dim must be positive (got {obs_dim}, {act_dim})")
        self.run = RunDirectory(run_dir)
        self.obs_dim = obs_dim
        self.act_dim = act_dim
        self.config = config
        self.metadata = dict(metadata)
        self.device = resolve_device(config.device)
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.agent = Agent(obs_dim, act_dim, config, self.device)
        self.replay = ReplayBuffer(config.buffer_capacity, obs_dim, act_dim)
        self.demos = ReplayBuffer(1, obs_dim, act_dim)
        self.num_updates = 0
        self.env_steps = 0
        self.policy_version = 0
        self._replay_chunks: list[dict[str, Any]] = []
        self._saved_replay_total = 0
        self._demo_chunks: list[dict[str, Any]] = []

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def create_or_resume(
        cls,
        run_dir: Path,
        obs_dim: int,
        act_dim: int,
        config: AgentConfig,
        *,
        metadata: dict[str, str] | None = None,
        seed: int = 0,
        resume: bool = True,
    ) -> Learner:
        """Resume the newest good checkpoint in ``run_dir`` (skipping corrupt ones), else start fresh.

        Raises ``ValueError`` if the run directory was made for other dimensions or another network
        configuration, ``FileExistsError`` if it holds checkpoints and ``resume`` is false, and
        :class:`CheckpointError` if checkpoints exist but none of them is intact.
        """
        run_dir = Path(run_dir)
        run = RunDirectory(run_dir)
        info = run.read_run_info()
        merged_metadata = {**(info or {}).get("metadata", {}), **(metadata or {})}
        if info is not None:
            _check_compatible(run_dir, info, obs_dim, act_dim, config)
        manifests = run.manifests()
        if manifests and not resume:
            raise FileExistsError(
                f"{run_dir} already holds checkpoints; resume it or choose another run directory"
            )
        learner = cls(run_dir, obs_dim, act_dim, config, merged_metadata, seed)
        run.write_run_info(
            {"obs_dim": obs_dim, "act_dim": act_dim, "config": config.to_dict(), "metadata": merged_metadata}
        )
        if not manifests:
            return learner
        problems = []
        for manifest_path in manifests:
            try:
                manifest, state = run.load_checkpoint(manifest_path, learner.device)
                learner._restore(manifest, state)
            except CheckpointError as error:
                log.warning("skipping checkpoint %s: %s", manifest_path.name, error)
                problems.append(str(error))
                continue
            if problems:
                log.warning(
                    "resumed from older checkpoint %s after %d bad one(s)", manifest_path.name, len(problems)
                )
            else:
                log.info("resumed %s at %d updates", manifest_path.name, learner.num_updates)
            return learner
        raise CheckpointError(f"{run_dir}: no intact checkpoint to resume: " + "; ".join(problems))

    # -- data -----------------------------------------------------------------------------------------
    def add_transitions(self, batch: TransitionBatch) -> None:
        """Validate (shapes, finiteness, action range) and append transitions in stream order."""
        checked = batch.validated(self.obs_dim, self.act_dim)
        self.replay.add(checked)
        self.agent.normalizer.update(torch.from_numpy(checked.obs))
        self.env_steps += len(checked)

    def add_demonstrations(self, path: Path) -> int:
        """Load a demonstration ``.npz`` into the demonstration buffer; returns its number of transitions."""
        batch = load_demonstrations(path, self.obs_dim, self.act_dim)
        self._append_demos(batch)
        entry = self.run.write_chunk("demos", f"demos_{len(self._demo_chunks):04d}", batch)
        self._demo_chunks.append(entry)
        log.info("added %d demonstration transitions from %s", len(batch), path)
        return len(batch)

    def _append_demos(self, batch: TransitionBatch) -> None:
        old = self.demos.rows(0, self.demos.total_added) if self.demos.total_added else None
        grown = ReplayBuffer(self.demos.total_added + len(batch), self.obs_dim, self.act_dim)
        if old is not None:
            grown.add(old)
        grown.add(batch)
        self.demos = grown
        self.agent.normalizer.update(torch.from_numpy(batch.obs))

    @property
    def num_demonstrations(self) -> int:
        return self.demos.total_added

    @property
    def ready(self) -> bool:
        """True once ``learning_starts`` online transitions (and at least one) are stored."""
        return len(self.replay) >= max(self.config.learning_starts, 1)

    # -- acting and training ---------------------------------------------------------------------------
    def act(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        """Actions in [-1, 1] for ``obs`` (``[obs_dim]`` or ``[B, obs_dim]``).

        Before ``learning_starts`` online steps a non-deterministic call returns uniform random actions.
        """
        obs = np.asarray(obs, np.float32)
        single = obs.ndim == 1
        batch = obs[None] if single else obs
        if batch.ndim != 2 or batch.shape[1] != self.obs_dim:
            raise ValueError(
                f"observation has shape {obs.shape}, expected ({self.obs_dim},) or (B, {self.obs_dim})"
            )
        if not np.isfinite(batch).all():
            raise ValueError("observation holds non-finite values")
        if not deterministic and self.env_steps < self.config.learning_starts:
            action = self.rng.uniform(-1.0, 1.0, (batch.shape[0], self.act_dim)).astype(np.float32)
        else:
            action = self.agent.act(torch.from_numpy(batch).to(self.device), deterministic).cpu().numpy()
        return action[0] if single else action

    def sample(self, num_updates: int) -> Minibatches:
        """``num_updates`` minibatches at once; ``demo_fraction`` of each is drawn from demonstrations."""
        config = self.config
        demo_rows = round(config.batch_size * config.demo_fraction) if self.demos.total_added else 0
        if not len(self.replay):
            demo_rows = config.batch_size if self.demos.total_added else 0
        online_rows = config.batch_size - demo_rows
        parts = []
        if online_rows:
            slots = self.replay.sample_indices(self.rng, (num_updates, online_rows))
            parts.append(self.replay.gather(slots, config.n_step, config.gamma))
        if demo_rows:
            slots = self.demos.sample_indices(self.rng, (num_updates, demo_rows))
            parts.append(self.demos.gather(slots, config.n_step, config.gamma))
        if not parts:
            raise RuntimeError("no transitions to sample: add transitions or demonstrations first")
        joined = {key: np.concatenate([part[key] for part in parts], axis=1) for key in parts[0]}
        tensors = {
            key: torch.from_numpy(value).to(self.device, non_blocking=True) for key, value in joined.items()
        }
        return Minibatches(**tensors, demo_rows=demo_rows)

    def train(self, env_steps: int) -> dict[str, float]:
        """``utd_ratio * env_steps`` critic updates with the scheduled actor/temperature updates.

        Returns averaged metrics (empty until :attr:`ready`).
        """
        if env_steps < 0:
            raise ValueError(f"env_steps must be >= 0 (got {env_steps})")
        if not self.ready or env_steps == 0:
            return {}
        remaining = self.config.utd_ratio * env_steps
        totals: dict[str, float] = {}
        counts: dict[str, int] = {}
        while remaining:
            count = min(remaining, UPDATES_PER_SAMPLE)
            metrics = self.agent.update(self.sample(count), self.num_updates)
            self.num_updates += count
            remaining -= count
            for name, value in metrics.items():
                totals[name] = totals.get(name, 0.0) + value
                counts[name] = counts.get(name, 0) + 1
        return {name: totals[name] / counts[name] for name in totals}

    # -- persistence ------------------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        """Atomically write the learner state; only transitions added since the last save are written."""
        total = self.replay.total_added
        oldest_needed = max(0, total - self.replay.capacity)
        start = max(self._saved_replay_total, oldest_needed)
        if total > start:
            entry = self.run.write_chunk(
                "replay", f"chunk_{start:012d}_{total:012d}", self.replay.rows(start, total)
            )
            self._replay_chunks.append({**entry, "start": start, "end": total})
        self._replay_chunks = [entry for entry in self._replay_chunks if entry["end"] > oldest_needed]
        self._saved_replay_total = total
        state = {
            "agent": self.agent.state_dict(),
            "numpy_rng": json.dumps(self.rng.bit_generator.state),
            "torch_rng": torch.get_rng_state(),
        }
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        content = {
            "num_updates": self.num_updates,
            "env_steps": self.env_steps,
            "policy_version": self.policy_version,
            "replay_total": total,
            "replay_chunks": list(self._replay_chunks),
            "demo_chunks": list(self._demo_chunks),
        }
        return self.run.write_checkpoint((self.num_updates, self.env_steps), state, content)

    def _restore(self, manifest: dict[str, Any], state: dict[str, Any]) -> None:
        try:
            self.agent.load_state_dict(state["agent"])
            self.rng.bit_generator.state = json.loads(state["numpy_rng"])
            torch.set_rng_state(state["torch_rng"].cpu())
            if self.device.type == "cuda" and "cuda_rng" in state:
                torch.cuda.set_rng_state(state["cuda_rng"].cpu(), self.device)
        except (KeyError, RuntimeError, ValueError, TypeError) as error:
            raise CheckpointError(f"checkpoint state does not fit this learner ({error})") from error
        self.replay = ReplayBuffer(self.config.buffer_capacity, self.obs_dim, self.act_dim)
        for entry in manifest["replay_chunks"]:
            self.replay.write_rows(entry["start"], self.run.read_chunk(entry))
        self.replay.total_added = manifest["replay_total"]
        self.demos = ReplayBuffer(1, self.obs_dim, self.act_dim)
        normalizer_state = self.agent.normalizer.state_dict()
        for entry in manifest["demo_chunks"]:
            self._append_demos(self.run.read_chunk(entry))
        self.agent.normalizer.load_state_dict(
            normalizer_state
        )  # demo statistics are already in the checkpoint
        self._replay_chunks = list(manifest["replay_chunks"])
        self._demo_chunks = list(manifest["demo_chunks"])
        self._saved_replay_total = manifest["replay_total"]
        self.num_updates = manifest["num_updates"]
        self.env_steps = manifest["env_steps"]
        self.policy_version = manifest["policy_version"]

    # -- export ----------------------------------------------------------------------------------------
    def export_onnx(self, path: Path | None = None, *, stochastic: bool) -> bytes:
        """Build, verify and return the actor as ONNX; also write it atomically to ``path`` if given.

        Each export bumps :attr:`policy_version`, which is stored in the metadata. Verification failure
        raises :class:`~rl_control.learning.onnx_policy.ExportError` and nothing is written.
        """
        version = self.policy_version + 1
        metadata = self.export_metadata(version, stochastic)
        model = build_actor_graph(
            self.agent.actor,
            self.agent.normalizer,
            stochastic=stochastic,
            exploration_noise=self.config.exploration_noise,
            metadata=metadata,
        )
        data = model.SerializeToString()
        verify_export(
            data,
            self.agent.actor,
            self.agent.normalizer,
            stochastic=stochastic,
            exploration_noise=self.config.exploration_noise,
        )
        self.policy_version = version
        if path is not None:
            atomic_write(Path(path), data)
        return data

    def export_metadata(self, version: int, stochastic: bool) -> dict[str, str]:
        """The ONNX metadata of an export (see :mod:`rl_control.learning.onnx_policy`)."""
        extra = {key: str(value) for key, value in self.metadata.items()}
        inputs = [OBS_INPUT, NOISE_INPUT] if stochastic else [OBS_INPUT]
        return {
            **extra,
            "format": FORMAT,
            "obs_dim": str(self.obs_dim),
            "act_dim": str(self.act_dim),
            "joint_names": json.dumps(_joint_names(self.metadata.get("joint_names", ""))),
            "policy_version": str(version),
            "preset": str(self.metadata.get("preset", "custom")),
            "algorithm": self.config.algorithm,
            "stochastic": "true" if stochastic else "false",
            "exploration_noise": repr(self.config.exploration_noise),
            "input_names": json.dumps(inputs),
            "output_names": json.dumps([ACTION_OUTPUT]),
            "num_updates": str(self.num_updates),
            "env_steps": str(self.env_steps),
        }


def _joint_names(value: Any) -> list[str]:
    """Joint names from a list, a JSON list string or a comma-separated string."""
    if isinstance(value, list | tuple):
        return [str(name) for name in value]
    text = str(value).strip()
    if text.startswith("["):
        try:
            return [str(name) for name in json.loads(text)]
        except json.JSONDecodeError:
            pass
    return [name.strip() for name in text.split(",") if name.strip()]


def _check_compatible(
    run_dir: Path, info: dict[str, Any], obs_dim: int, act_dim: int, config: AgentConfig
) -> None:
    if (info.get("obs_dim"), info.get("act_dim")) != (obs_dim, act_dim):
        raise ValueError(
            f"{run_dir}: run was created for obs_dim={info.get('obs_dim')}, act_dim={info.get('act_dim')}, "
            f"not obs_dim={obs_dim}, act_dim={act_dim}; use another run directory"
        )
    stored = info.get("config", {})
    current = config.to_dict()
    conflicts = [
        f"{key}: run has {stored.get(key)!r}, requested {current[key]!r}"
        for key in current
        if key not in TUNABLE_FIELDS and key in stored and stored[key] != current[key]
    ]
    if conflicts:
        raise ValueError(f"{run_dir}: agent config conflicts with the stored run: " + "; ".join(conflicts))
