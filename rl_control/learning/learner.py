"""The learner: agent + online replay + demonstration buffer + run-directory persistence + ONNX export.

Transitions whose action a human chose (``intervention`` rows) go to the online replay like every other
row and are also kept in the demonstration buffer, as expert data (RLPD and HIL-SERL keep interventions
in their prior/demo buffer): they are sampled at ``demo_fraction`` of each minibatch with the
demonstration files' rows and get the demonstrations' behaviour-cloning term.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rl_control.learning.agent import Minibatches, make_agent, resolve_device
from rl_control.learning.checkpoint import CheckpointError, RunDirectory, atomic_write
from rl_control.learning.config import AgentConfig
from rl_control.learning.onnx_policy import build_actor_graph, verify_export
from rl_control.learning.replay import ReplayBuffer, load_demonstrations
from rl_control.policy.runtime import ACTION_OUTPUT, FORMAT, NOISE_INPUT, OBS_INPUT
from rl_control.transitions import TransitionBatch, ValidBatch, validate

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
        "adam_beta1",
        "precision",
        "deployed_actor_average",
    }
)
# Critic updates sampled (and moved to the device) per chunk inside train().
UPDATES_PER_SAMPLE = 32


class DivergedError(RuntimeError):
    """The learner's weights are non-finite: they are never exported, published or checkpointed."""


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
        self.agent = make_agent(obs_dim, act_dim, config, self.device)
        self.replay = ReplayBuffer(config.buffer_capacity, obs_dim, act_dim)
        self.demos = ReplayBuffer(1, obs_dim, act_dim)
        self.num_updates = 0
        self.env_steps = 0
        self.policy_version = 0
        self._replay_chunks: list[dict[str, Any]] = []
        self._saved_replay_total = 0
        self._demo_chunks: list[dict[str, Any]] = []
        self._saved_demo_total = 0  # demonstration-buffer rows written to demo chunks
        #: Intervention rows received (stored in the replay and kept in the demonstration buffer).
        self.intervention_transitions = 0
        #: Of the demonstration buffer's rows, those kept from interventions and those of the run this one
        #: started from (:meth:`start_from_run`); the rest come from demonstration files.
        self.intervention_demos = 0
        self.prior_rows = 0
        #: The run this learner started from in this process (None: fresh, or resumed its own run).
        self.started_from: Path | None = None
        #: Training chunks whose update diverged (non-finite loss or weights) and were rolled back.
        self.rollbacks = 0
        #: Rows lost to damaged replay/demonstration chunks when this learner was resumed.
        self.lost_rows = 0
        #: The caller's stream bookkeeping, committed inside each checkpoint manifest (see save_checkpoint).
        self.stream_state: dict[str, Any] = {}
        self._good_state: dict[str, Any] | None = None  # agent state after the last finite training chunk

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
        start_from: Path | None = None,
    ) -> Learner:
        """Resume the newest good checkpoint in ``run_dir`` (skipping corrupt ones), else start fresh, or,
        with ``start_from``, from that other run (see :meth:`start_from_run`).

        A checkpoint is intact when its manifest and state file pass their checks and its weights are
        finite; a damaged replay or demonstration chunk costs only its own rows (counted in
        :attr:`lost_rows`). A deleted ``run.json`` is recovered from the newest manifest's copy.

        Raises ``ValueError`` if the run directory was made for other dimensions or another network
        configuration, ``FileExistsError`` if it holds checkpoints and ``resume`` is false, and
        :class:`CheckpointError` (naming the file) if ``run.json`` is unreadable, or checkpoints exist
        but none of them is intact.
        """
        run_dir = Path(run_dir)
        run = RunDirectory(run_dir)
        info = check_run_directory(run_dir, obs_dim, act_dim, config, resume=resume)
        manifests = run.manifests()
        merged_metadata = {**(info or {}).get("metadata", {}), **(metadata or {})}
        learner = cls(run_dir, obs_dim, act_dim, config, merged_metadata, seed)
        if start_from is not None and not manifests:
            check_start_run(start_from, obs_dim, act_dim, config)
        run.write_run_info(learner.run_info())
        if manifests:
            learner._restore_newest(manifests)
        elif start_from is not None:
            learner.start_from_run(start_from)
        return learner

    def _restore_newest(self, manifests: list[Path]) -> None:
        """Restore the newest intact checkpoint of ``manifests`` (newest first)."""
        problems = []
        for manifest_path in manifests:
            try:
                manifest, state = self.run.load_checkpoint(manifest_path, self.device)
                self._restore(manifest, state)
            except CheckpointError as error:
                log.warning("skipping checkpoint %s: %s", manifest_path.name, error)
                problems.append(str(error))
                continue
            if problems:
                log.warning(
                    "resumed from older checkpoint %s after %d bad one(s)", manifest_path.name, len(problems)
                )
            else:
                log.info("resumed %s at %d updates", manifest_path.name, self.num_updates)
            return
        raise CheckpointError(f"{self.run.root}: no intact checkpoint to resume: " + "; ".join(problems))

    def start_from_run(self, source: Path) -> int:
        """Begin this new run where run ``source`` is (e.g. fine-tuning on a robot from a simulation run).

        Takes the newest intact checkpoint of ``source``: its weights, optimizer state, temperature,
        observation statistics, update count and policy version; its transitions (replay and
        demonstrations) become this run's demonstration buffer, the prior data sampled at
        ``demo_fraction`` of each minibatch (RLPD-style), while this run's replay starts empty and holds
        only the new transitions. ``source`` is only read. Returns the number of prior transitions.
        """
        if self.env_steps or self.num_updates or self.demos.total_added:
            raise ValueError(f"{self.run.root}: start_from_run needs a new learner (this one holds data)")
        donor = Learner(source, self.obs_dim, self.act_dim, self.config, {}, seed=0)
        donor._restore_newest(donor.run.manifests())
        self.agent.load_state_dict(copy.deepcopy(donor.agent.state_dict()))
        self.num_updates, self.policy_version = donor.num_updates, donor.policy_version
        parts = []
        if len(donor.replay):
            parts.append(
                donor.replay.rows(donor.replay.total_added - len(donor.replay), donor.replay.total_added)
            )
        if donor.demos.total_added:
            parts.append(donor.demos.rows(0, donor.demos.total_added))
        for part in parts:  # the parts were never consecutive: no n-step return runs across a seam
            part.end_stream()
        prior = TransitionBatch.concatenate(parts) if parts else None
        if prior is not None:
            self._append_demos(prior)
            entry = self.run.write_chunk("demos", "prior_0000", prior)
            self._demo_chunks.append({**entry, "prior": len(prior)})
            self._saved_demo_total = self.demos.total_added
            self.prior_rows = len(prior)
        self.started_from = Path(source)
        return self.prior_rows

    def run_info(self) -> dict[str, Any]:
        """The run description (``run.json``, also copied into every checkpoint manifest)."""
        return {
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "config": self.config.to_dict(),
            "metadata": self.metadata,
        }

    # -- data -----------------------------------------------------------------------------------------
    def add_transitions(self, batch: TransitionBatch) -> None:
        """Append transitions in stream order; a batch :func:`~rl_control.transitions.validate` did not return
        is validated here and refused whole (ValueError naming the field) when any row is bad."""
        checked = batch if isinstance(batch, ValidBatch) else self._validated(batch)
        self.replay.add(checked)
        self.agent.normalizer.update(torch.from_numpy(checked.obs))
        self.env_steps += len(checked)
        if checked.interventions:
            self._keep_interventions(checked)

    def _keep_interventions(self, batch: TransitionBatch) -> None:
        """Copy the rows a human chose into the demonstration buffer. The last row of each run of
        consecutive human rows is marked truncated there (a time-limit cut: it bootstraps), so n-step
        returns never join rows that were not consecutive in the stream."""
        human = np.asarray(batch.intervention) > 0
        rows = batch.select(human)
        run_ends = (human & ~np.append(human[1:], False))[human]
        rows.truncated[run_ends & (rows.terminated == 0)] = 1.0
        self._append_demos(rows)
        self.intervention_transitions += len(rows)
        self.intervention_demos += len(rows)

    def _validated(self, batch: TransitionBatch) -> ValidBatch:
        checked, dropped = validate(batch, self.obs_dim, self.act_dim)
        if dropped.count:
            raise ValueError(f"{dropped.describe('transition batch')}; the batch was rejected")
        return checked

    def add_demonstrations(self, path: Path) -> int:
        """Load a demonstration ``.npz`` into the demonstration buffer; returns its number of transitions."""
        batch = load_demonstrations(path, self.obs_dim, self.act_dim)
        self._save_intervention_demos()  # intervention rows kept before these: their own chunk
        self._append_demos(batch)
        self.agent.normalizer.update(torch.from_numpy(batch.obs))
        entry = self.run.write_chunk("demos", f"demos_{len(self._demo_chunks):04d}", batch)
        self._demo_chunks.append(entry)
        self._saved_demo_total = self.demos.total_added
        log.info("added %d demonstration transitions from %s", len(batch), path)
        return len(batch)

    def _append_demos(self, batch: TransitionBatch) -> None:
        """Append to the demonstration buffer, growing its capacity geometrically (appends stay cheap)."""
        needed = self.demos.total_added + len(batch)
        if needed > self.demos.capacity:
            grown = ReplayBuffer(max(needed, 2 * self.demos.capacity), self.obs_dim, self.act_dim)
            if self.demos.total_added:
                grown.add(self.demos.rows(0, self.demos.total_added))
            self.demos = grown
        self.demos.add(batch)

    def _save_intervention_demos(self) -> None:
        """Write the intervention rows kept in the demo buffer since the last save as one demo chunk."""
        start, end = self._saved_demo_total, self.demos.total_added
        if end > start:
            stem = f"interventions_{start:012d}_{end:012d}"
            entry = self.run.write_chunk("demos", stem, self.demos.rows(start, end))
            self._demo_chunks.append({**entry, "interventions": end - start})
            self._saved_demo_total = end

    @property
    def num_demonstrations(self) -> int:
        """Rows from demonstration files in the demonstration buffer (interventions and prior data not
        counted)."""
        return self.demos.total_added - self.intervention_demos - self.prior_rows

    @property
    def demo_buffer_rows(self) -> int:
        """Rows in the demonstration buffer: demonstration files and kept interventions."""
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

        A chunk of updates that diverges (non-finite loss or weights) is rolled back to the state after
        the last good chunk (weights, optimizers, temperature; the observation statistics are kept), is
        not counted in :attr:`num_updates`, and adds one to :attr:`rollbacks`; training goes on.
        Returns averaged metrics of the kept chunks (empty until :attr:`ready`).
        """
        if env_steps < 0:
            raise ValueError(f"env_steps must be >= 0 (got {env_steps})")
        if not self.ready or env_steps == 0:
            return {}
        if self._good_state is None:
            self._keep_good_state()
        remaining = self.config.utd_ratio * env_steps
        totals: dict[str, float] = {}
        counts: dict[str, int] = {}
        while remaining:
            count = min(remaining, UPDATES_PER_SAMPLE)
            metrics = self.agent.update(self.sample(count), self.num_updates)
            remaining -= count
            if not (all(np.isfinite(list(metrics.values()))) and self.weights_finite()):
                self._roll_back()
                continue
            self._keep_good_state()
            self.num_updates += count
            for name, value in metrics.items():
                totals[name] = totals.get(name, 0.0) + value
                counts[name] = counts.get(name, 0) + 1
        return {name: totals[name] / counts[name] for name in totals}

    def weights_finite(self) -> bool:
        """True if every network weight, target network, temperature and normalizer statistic is finite."""
        agent = self.agent
        # every network the algorithm holds (actor, critics, targets where it has them, normalizer)
        modules = [value for value in vars(agent).values() if isinstance(value, torch.nn.Module)]
        tensors = [agent.log_alpha.detach()]
        for module in modules:
            tensors.extend(module.state_dict().values())
        checks = [torch.isfinite(tensor).all() for tensor in tensors if tensor.is_floating_point()]
        return bool(torch.stack(checks).all())

    def _keep_good_state(self) -> None:
        self._good_state = copy.deepcopy(self.agent.state_dict())

    def _roll_back(self) -> None:
        assert self._good_state is not None
        normalizer = copy.deepcopy(self.agent.normalizer.state_dict())
        # A copy: optimizers adopt the loaded tensors, and the kept state must stay as it is.
        self.agent.load_state_dict(copy.deepcopy(self._good_state))
        self.agent.normalizer.load_state_dict(normalizer)
        self.rollbacks += 1
        log.warning(
            "diverged update (non-finite loss or weights) after %d updates: rolled back (%d rollback(s))",
            self.num_updates,
            self.rollbacks,
        )

    def _require_finite(self, action: str) -> None:
        if not self.weights_finite():
            raise DivergedError(
                f"{self.run.root}: refusing to {action}: the learner's weights are non-finite"
            )

    # -- persistence ------------------------------------------------------------------------------------
    def save_checkpoint(self, stream_state: dict[str, Any] | None = None) -> Path:
        """Atomically write the learner state; only transitions added since the last save are written.

        ``stream_state`` (JSON-ready: the caller's record of which messages the replay holds) is committed
        in the same manifest, so it can never disagree with the replay it describes; it is returned in
        :attr:`stream_state` on resume. Raises :class:`DivergedError` if the weights are non-finite.
        """
        self._require_finite("checkpoint")
        if stream_state is not None:
            self.stream_state = stream_state
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
        self._save_intervention_demos()
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
            "rollbacks": self.rollbacks,
            "intervention_transitions": self.intervention_transitions,
            "run_info": self.run_info(),
            "stream_state": self.stream_state,
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
        if not self.weights_finite():
            raise CheckpointError("checkpoint holds non-finite weights (a diverged run)")
        self.lost_rows = 0
        self._restore_replay(manifest["replay_chunks"], manifest["replay_total"])
        self.demos = ReplayBuffer(1, self.obs_dim, self.act_dim)
        self._demo_chunks = []
        self.intervention_demos = self.prior_rows = 0
        for entry in manifest["demo_chunks"]:
            batch = self._read_chunk_or_count_loss(entry)
            if batch is not None:
                self._append_demos(batch)
                self._demo_chunks.append(entry)
                self.intervention_demos += int(entry.get("interventions", 0))
                self.prior_rows += int(entry.get("prior", 0))
        self._saved_demo_total = self.demos.total_added
        self.intervention_transitions = int(manifest.get("intervention_transitions", 0))
        self.num_updates = manifest["num_updates"]
        self.env_steps = manifest["env_steps"]
        self.policy_version = manifest["policy_version"]
        self.rollbacks = int(manifest.get("rollbacks", 0))
        stream_state = manifest.get("stream_state", {})
        self.stream_state = stream_state if isinstance(stream_state, dict) else {}
        self._good_state = None

    def _read_chunk_or_count_loss(self, entry: dict[str, Any]) -> TransitionBatch | None:
        """The chunk's transitions, or ``None`` (logged, rows added to :attr:`lost_rows`) if damaged."""
        try:
            return self.run.read_chunk(entry)
        except CheckpointError as error:
            rows = int(entry.get("rows", entry.get("end", 0) - entry.get("start", 0)))
            self.lost_rows += rows
            log.warning("damaged chunk skipped, %d rows lost: %s", rows, error)
            return None

    def _restore_replay(self, entries: list[dict[str, Any]], replay_total: int) -> None:
        """Refill the replay from its chunks; damaged chunks cost their own rows only.

        Intact chunks keep their stream positions. When a chunk is lost, the surviving rows are packed
        from position 0 with an episode boundary (truncation) before each gap, so n-step returns never
        run across it, and the next checkpoint writes them as fresh chunks (chunk files are named by
        their content, so they never replace the old ones that older checkpoints reference).
        """
        self.replay = ReplayBuffer(self.config.buffer_capacity, self.obs_dim, self.act_dim)
        batches: list[TransitionBatch] = []
        for entry in entries:
            batch = self._read_chunk_or_count_loss(entry)
            if batch is None and batches:
                batches[-1].end_stream()
            if batch is not None:
                batches.append(batch)
        if len(batches) == len(entries):
            for entry, batch in zip(entries, batches, strict=True):
                self.replay.write_rows(entry["start"], batch)
            self.replay.total_added = replay_total
            self._replay_chunks = list(entries)
            self._saved_replay_total = replay_total
            return
        if batches:
            self.replay.write_rows(0, TransitionBatch.concatenate(batches))
        self._replay_chunks = []
        self._saved_replay_total = 0

    # -- export ----------------------------------------------------------------------------------------
    def export_onnx(self, path: Path | None = None, *, stochastic: bool) -> bytes:
        """Build, verify and return the actor as ONNX; also write it atomically to ``path`` if given.

        Each export bumps :attr:`policy_version`, which is stored in the metadata. Verification failure
        raises :class:`~rl_control.learning.onnx_policy.ExportError` and nothing is written; non-finite
        weights raise :class:`DivergedError`.
        """
        self._require_finite("export a policy")
        version = self.policy_version + 1
        metadata = self.export_metadata(version, stochastic)
        actor = self.agent.actor if stochastic else self.agent.deployed_actor
        model = build_actor_graph(
            actor,
            self.agent.normalizer,
            stochastic=stochastic,
            exploration_noise=self.config.exploration_noise,
            metadata=metadata,
        )
        data = model.SerializeToString()
        verify_export(
            data,
            actor,
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


def check_run_directory(
    run_dir: Path, obs_dim: int, act_dim: int, config: AgentConfig, *, resume: bool = True
) -> dict[str, Any] | None:
    """What :meth:`Learner.create_or_resume` refuses before loading anything (``rl-control config check``
    runs it too): ``ValueError`` for a run made for other dimensions or an incompatible agent config,
    ``FileExistsError`` for a run holding checkpoints when ``resume`` is false, :class:`CheckpointError`
    for an unreadable ``run.json``. Returns the run description (recovered from the newest manifest when
    ``run.json`` was deleted), or None for a new directory."""
    run = RunDirectory(run_dir)
    manifests = run.manifests()
    info = run.read_run_info()
    if info is None and manifests:
        info = run.recover_run_info()
    if info is not None:
        _check_compatible(run_dir, info, obs_dim, act_dim, config)
    if not resume and manifests:
        raise FileExistsError(
            f"{run_dir} already holds checkpoints; resume it or choose another run directory"
        )
    return info


def check_start_run(source: Path, obs_dim: int, act_dim: int, config: AgentConfig) -> None:
    """What :meth:`Learner.start_from_run` refuses before loading anything (``rl-control config check``
    runs it too): ``ValueError`` for a ``source`` that is no training run with a checkpoint, or was made
    for other dimensions or an incompatible agent config."""
    info = check_run_directory(source, obs_dim, act_dim, config)
    if info is None or not RunDirectory(source).manifests():
        raise ValueError(f"{source}: no checkpoint to start from; is it a training run directory?")


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
