"""Agent configuration: one dataclass for SAC/TD3 with critic ensembles, plus named presets.

Presets and their sources (see ``docs/learning.md``):

- ``sac``  - Soft Actor-Critic, Haarnoja et al. 2018 (two critics, automatic temperature).
- ``td3``  - Twin Delayed DDPG, Fujimoto et al. 2018 (target smoothing, delayed actor).
- ``redq`` - Randomized Ensembled Double Q-learning, Chen et al. 2021 (N=10, M=2, UTD=20).
- ``droq`` - Dropout Q-functions, Hiraoka et al. 2021 (N=2, dropout 0.01 + LayerNorm, UTD=20).
- ``rlpd`` - RL with Prior Data, Ball et al. 2023 (REDQ-style ensemble + LayerNorm + 50/50 demo sampling).
- ``crossq`` - CrossQ, Bhatt et al. 2024 (batch-renormalized networks, joint (s, a)/(s', a') forward
  pass, no target networks, UTD 1, wider critics).
- ``crossq_utd3`` - CrossQ at UTD 3 on 128-wide networks, compiled: the preset for learning on a robot
  from a laptop CPU (few environment steps, and updates fast enough for a 50 Hz robot on 2 cores).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from rl_control.config.errors import FieldError
from rl_control.config.validation import bounds_problem

PRESET_NAMES: tuple[str, ...] = ("sac", "td3", "redq", "droq", "rlpd", "crossq", "crossq_utd3")

_DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


@dataclass
class AgentConfig:
    """Hyper-parameters of the off-policy learner (``learner_node.agent`` in experiment configs)."""

    algorithm: str = field(
        default="sac",
        metadata={
            "help": "update rule: sac, td3, or crossq (SAC without target networks, batch-renormalized)",
            "choices": ["sac", "td3", "crossq"],
        },
    )
    num_critics: int = field(
        default=2, metadata={"help": "critic ensemble size N (vectorized)", "min": 1, "max": 64}
    )
    num_target_critics: int = field(
        default=2,
        metadata={
            "help": "M: target is the min over a random subset of M critics (REDQ)",
            "min": 1,
            "max": 64,
        },
    )
    utd_ratio: int = field(
        default=1,
        metadata={
            "help": "critic updates per environment step (update-to-data ratio)",
            "min": 1,
            "max": 1000,
        },
    )
    actor_delay: int = field(
        default=1,
        metadata={
            "help": "one actor/temperature update per this many environment steps' critic updates",
            "min": 1,
            "max": 100,
        },
    )
    batch_size: int = field(
        default=256, metadata={"help": "minibatch size per update", "min": 1, "max": 65536}
    )
    hidden_sizes: list[int] = field(
        default_factory=lambda: [256, 256],
        metadata={"help": "hidden layer widths of actor and critic MLPs", "min": 1, "max": 8192},
    )
    critic_hidden_sizes: list[int] = field(
        default_factory=list,
        metadata={
            "help": "critic hidden layer widths; empty: the same as hidden_sizes",
            "min": 1,
            "max": 8192,
        },
    )
    critic_layer_norm: bool = field(
        default=False, metadata={"help": "LayerNorm after each critic hidden layer"}
    )
    critic_dropout: float = field(
        default=0.0,
        metadata={"help": "dropout rate in critic hidden layers (DroQ); 0 disables", "min": 0.0, "max": 0.9},
    )
    actor_lr: float = field(
        default=3e-4, metadata={"help": "actor Adam learning rate", "min": 0.0, "max": 1.0}
    )
    critic_lr: float = field(
        default=3e-4, metadata={"help": "critic Adam learning rate", "min": 0.0, "max": 1.0}
    )
    temperature_lr: float = field(
        default=3e-4, metadata={"help": "SAC entropy temperature Adam learning rate", "min": 0.0, "max": 1.0}
    )
    adam_beta1: float = field(
        default=0.9,
        metadata={"help": "Adam first-moment decay of actor and critic optimizers", "min": 0.0, "max": 0.999},
    )
    init_temperature: float = field(
        default=1.0, metadata={"help": "SAC initial entropy temperature alpha", "min": 1e-8, "max": 1e4}
    )
    target_entropy: float = field(
        default=0.0,
        metadata={"help": "SAC target entropy; 0 means auto: -act_dim", "min": -1e4, "max": 1e4},
    )
    deployed_actor_average: float = field(
        default=0.0,
        metadata={
            "help": "weight of each actor update in a moving average of the actor's weights that "
            "deterministic (deployed) policies are exported from; 0 exports the current weights",
            "min": 0.0,
            "max": 1.0,
        },
    )
    gamma: float = field(default=0.99, metadata={"help": "discount factor", "min": 0.0, "max": 1.0})
    tau: float = field(
        default=0.005, metadata={"help": "Polyak target averaging rate", "min": 0.0, "max": 1.0}
    )
    n_step: int = field(default=1, metadata={"help": "n-step return horizon", "min": 1, "max": 100})
    policy_noise: float = field(
        default=0.2, metadata={"help": "TD3 target policy smoothing noise std", "min": 0.0, "max": 10.0}
    )
    noise_clip: float = field(
        default=0.5, metadata={"help": "TD3 target policy smoothing noise clip", "min": 0.0, "max": 10.0}
    )
    exploration_noise: float = field(
        default=0.1,
        metadata={"help": "TD3 Gaussian exploration noise std (action units)", "min": 0.0, "max": 10.0},
    )
    buffer_capacity: int = field(
        default=1_000_000,
        metadata={"help": "online replay capacity in transitions", "min": 1, "max": 1_000_000_000},
    )
    learning_starts: int = field(
        default=1000,
        metadata={
            "help": "environment steps collected (random actions) before updates start",
            "min": 0,
            "max": 1_000_000_000,
        },
    )
    demo_fraction: float = field(
        default=0.5,
        metadata={
            "help": "share of each minibatch drawn from demonstrations when demos exist",
            "min": 0.0,
            "max": 1.0,
        },
    )
    demo_bc_weight: float = field(
        default=0.0,
        metadata={
            "help": "Q-filtered behaviour cloning weight on demonstration rows (x mean |Q|); 0: off",
            "min": 0.0,
            "max": 1e3,
        },
    )
    demo_bc_q_filter: bool = field(
        default=True,
        metadata={"help": "clone a demonstrated action only where the critics rate it above the policy's"},
    )
    normalize_observations: bool = field(
        default=False, metadata={"help": "running mean/std observation normalization (baked into ONNX)"}
    )
    precision: str = field(
        default="auto",
        metadata={
            "help": "update matmul precision: auto (bf16 on CUDA, and on AMX CPUs for critics >= 512 wide; "
            "else fp32), fp32, bf16",
            "choices": ["auto", "fp32", "bf16"],
        },
    )
    compile: bool = field(
        default=False,
        metadata={
            "help": "torch.compile the critic loss (forward and backward fused by inductor; needs a C++ "
            "compiler on CPU): 1.6x for CrossQ on 2 CPU cores, slower for dropout critics; compiles first"
        },
    )
    device: str = field(
        default="auto", metadata={"help": "torch device: auto (cuda if available), cpu, cuda[:i]"}
    )

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):
            problem = bounds_problem(spec.metadata, getattr(self, spec.name))
            if problem is not None:
                raise FieldError(spec.name, problem)
        if self.num_target_critics > self.num_critics:
            raise FieldError(
                "num_target_critics",
                f"M={self.num_target_critics} exceeds the ensemble size num_critics={self.num_critics}",
            )
        if not self.hidden_sizes:
            raise FieldError("hidden_sizes", "needs at least one hidden layer width")
        if not _DEVICE_PATTERN.match(self.device):
            raise FieldError("device", f"{self.device!r} is not one of auto, cpu, cuda, cuda:<index>, mps")
        if self.critic_dropout >= 1.0:
            raise FieldError("critic_dropout", f"{self.critic_dropout} must be < 1")

    def to_dict(self) -> dict[str, Any]:
        """Plain-data copy (for checkpoints and metadata)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> AgentConfig:
        """Rebuild from :meth:`to_dict` output; unknown keys raise ``ValueError``."""
        _reject_unknown(values)
        return cls(**values)


def _reject_unknown(values: dict[str, Any]) -> None:
    known = {f.name for f in dataclasses.fields(AgentConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown AgentConfig field(s) {unknown}; known fields: {sorted(known)}")


_PRESETS: dict[str, dict[str, Any]] = {
    # Haarnoja et al. 2018: twin critics, one update per step, automatic temperature.
    "sac": {"algorithm": "sac", "num_critics": 2, "num_target_critics": 2, "utd_ratio": 1},
    # Fujimoto et al. 2018: twin critics, actor every 2nd update, target smoothing 0.2 clipped at 0.5.
    "td3": {
        "algorithm": "td3",
        "num_critics": 2,
        "num_target_critics": 2,
        "utd_ratio": 1,
        "actor_delay": 2,
        "actor_lr": 1e-3,
        "critic_lr": 1e-3,
        "policy_noise": 0.2,
        "noise_clip": 0.5,
        "exploration_noise": 0.1,
    },
    # Chen et al. 2021: N=10 critics, min over a random pair, UTD 20.
    "redq": {"algorithm": "sac", "num_critics": 10, "num_target_critics": 2, "utd_ratio": 20},
    # Hiraoka et al. 2021: two critics with dropout 0.01 + LayerNorm, UTD 20.
    "droq": {
        "algorithm": "sac",
        "num_critics": 2,
        "num_target_critics": 2,
        "utd_ratio": 20,
        "critic_dropout": 0.01,
        "critic_layer_norm": True,
    },
    # Ball et al. 2023: ensemble of 10 with LayerNorm, min over 2, UTD 20, symmetric 50/50 demo sampling.
    "rlpd": {
        "algorithm": "sac",
        "num_critics": 10,
        "num_target_critics": 2,
        "utd_ratio": 20,
        "critic_layer_norm": True,
        "demo_fraction": 0.5,
    },
    # Bhatt et al. 2024: batch renormalization instead of target networks, UTD 1, actor every 3rd step,
    # Adam lr 1e-3 with beta1 0.5. Critics 256 wide (the paper: 2048): on 2 CPU cores about twice the
    # updates/s of 512-wide ones, and fewer steps to -200 on Pendulum-v1 (docs/learning.md).
    "crossq": {
        "algorithm": "crossq",
        "num_critics": 2,
        "num_target_critics": 2,
        "utd_ratio": 1,
        "actor_delay": 3,
        "actor_lr": 1e-3,
        "critic_lr": 1e-3,
        "adam_beta1": 0.5,
        "critic_hidden_sizes": [256, 256],
    },
    # CrossQ made for a robot on a CPU (docs/learning.md): three critic updates and one actor update per
    # environment step, on 128-wide networks with the critic loss compiled. Measured against SB3 SAC: 0.07x
    # its environment steps on InvertedPendulum-v5, 0.38x on Pendulum-v1 (median of 10 seeds); on 2 cores
    # it learns from 52 environment steps per second.
    "crossq_utd3": {
        "algorithm": "crossq",
        "num_critics": 2,
        "num_target_critics": 2,
        "utd_ratio": 3,
        "actor_delay": 1,
        "actor_lr": 1e-3,
        "critic_lr": 1e-3,
        "adam_beta1": 0.5,
        "hidden_sizes": [128, 128],
        "critic_hidden_sizes": [128, 128],
        "compile": True,
    },
}


def preset_config(name: str, **overrides: Any) -> AgentConfig:
    """Return the :class:`AgentConfig` of preset ``name`` with ``overrides`` applied.

    Raises ``ValueError`` for an unknown preset or field, and ``FieldError`` for an invalid value.
    """
    if name not in _PRESETS:
        raise ValueError(f"unknown agent preset {name!r}; choose one of {list(PRESET_NAMES)}")
    _reject_unknown(overrides)
    return AgentConfig(**{**_PRESETS[name], **overrides})
