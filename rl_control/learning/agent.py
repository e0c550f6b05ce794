"""Off-policy actor-critic agents over one vectorized critic ensemble: SAC, TD3 and CrossQ.

Read top to bottom: :class:`Agent` owns the networks, the optimizers and the update-to-data loop
(:meth:`Agent.update`: critic steps, with an actor step every ``utd_ratio * actor_delay`` of them).
Each algorithm is a subclass that supplies only its own rules (SAC and TD3 through
:class:`TargetCriticAgent`, which holds the target critics and their TD loss):

- :class:`SAC` (Haarnoja et al. 2018; with N>2 critics and a random subset of M in the target: REDQ,
  Chen et al. 2021): soft target from Polyak-averaged target critics, entropy-regularized actor,
  automatic temperature.
- :class:`TD3` (Fujimoto et al. 2018): smoothed target from target actor and critics, deterministic
  actor; both targets Polyak-averaged after each actor step.
- :class:`CrossQ` (Bhatt et al. 2024): SAC without target networks; batch-renormalized critics see
  (s, a) and (s', a') in one joint forward pass, so both halves share the normalization statistics.

Minibatches for many updates are sampled at once by the caller and arrive stacked ``[U, B, ...]``.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch
from torch import Tensor

from rl_control.learning.config import AgentConfig
from rl_control.learning.networks import Actor, CriticEnsemble, Policy, RunningNormalizer

log = logging.getLogger(__name__)

Result = TypeVar("Result")


def compiled_or_eager(function: Callable[..., Result]) -> Callable[..., Result]:
    """``torch.compile(function)`` that falls back to ``function`` itself, with a warning, when compiling
    fails (e.g. no C++ compiler for inductor on this machine): ``compile: true`` never stops a learner."""
    active = torch.compile(function)

    def call(*args: Tensor) -> Result:
        nonlocal active
        if active is function:
            return function(*args)
        try:
            return active(*args)
        except Exception as exc:  # inductor/dynamo raise many types; the eager call re-raises real errors
            log.warning("torch.compile failed (%s); training continues without compiling", exc)
            active = function
            return function(*args)

    return call


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> cuda when available, else cpu; anything else is passed to ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def native_bf16(device: torch.device) -> bool:
    """True where bf16 matrix products run on native matrix units: CUDA with bf16, or a CPU with AMX
    (read from ``/proc/cpuinfo``'s ``amx_bf16`` flag; other systems report False)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and "amx_bf16" in _cpu_flags()


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


#: Narrowest critic layer for which ``precision: auto`` takes bf16 on a CPU: below it the casts of autocast
#: cost more than the matrix units save (measured on a 2-core Xeon with AMX: a 128-wide DroQ update 0.7-0.9x,
#: 256-wide CrossQ 1.0-1.2x, 512-wide 1.15-1.3x, 1024-wide 1.5x; docs/learning.md).
CPU_BF16_MIN_WIDTH = 512


def resolve_precision(config: AgentConfig, device: torch.device) -> torch.dtype:
    """Compute dtype of the update's matrix products. ``auto`` picks bf16 where :func:`native_bf16`, on a
    CPU only when the widest critic layer has at least :data:`CPU_BF16_MIN_WIDTH` units."""
    if config.precision == "bf16":
        return torch.bfloat16
    if config.precision == "auto" and native_bf16(device):
        width = max(config.critic_hidden_sizes or config.hidden_sizes, default=0)
        if device.type != "cpu" or width >= CPU_BF16_MIN_WIDTH:
            return torch.bfloat16
    return torch.float32


def polyak_update(target: list[Tensor], source: list[Tensor], tau: float) -> None:
    """``target <- (1 - tau) * target + tau * source``, tensor by tensor, in place."""
    with torch.no_grad():
        for target_tensor, source_tensor in zip(target, source, strict=True):
            target_tensor.lerp_(source_tensor, tau)


@dataclass
class Minibatches:
    """Stacked minibatches on the training device: obs/next_obs ``[U, B, o]``, action ``[U, B, a]``,
    reward/discount ``[U, B]`` (discount = gamma**n, zeroed at true terminations); the last
    ``demo_rows`` rows of every minibatch come from demonstrations."""

    obs: Tensor
    action: Tensor
    reward: Tensor
    next_obs: Tensor
    discount: Tensor
    demo_rows: int = 0

    def __len__(self) -> int:
        return self.obs.shape[0]


def make_agent(obs_dim: int, act_dim: int, config: AgentConfig, device: torch.device) -> Agent:
    """The agent of ``config.algorithm``."""
    rules: dict[str, type[Agent]] = {"sac": SAC, "td3": TD3, "crossq": CrossQ}
    return rules[config.algorithm](obs_dim, act_dim, config, device)


class Agent:
    """Networks, optimizers, acting and the update-to-data loop shared by every update rule.

    Subclasses implement :meth:`critic_loss` and :meth:`policy_loss`, and may override
    :meth:`after_critic_step` / :meth:`after_actor_step` (target-network averaging).
    """

    stochastic = True  # the actor is a squashed Gaussian (SAC family); TD3 is deterministic
    batch_renorm = False  # CrossQ: batch-renormalized critic and actor

    def __init__(self, obs_dim: int, act_dim: int, config: AgentConfig, device: torch.device) -> None:
        self.config = config
        self.obs_dim = obs_dim
        self.act_dim = act_dim
        self.device = device
        self.compute_dtype = resolve_precision(config, device)
        self.normalizer = RunningNormalizer(obs_dim, config.normalize_observations).to(device)
        self.actor = Actor(
            obs_dim, act_dim, config.hidden_sizes, self.stochastic, batch_renorm=self.batch_renorm
        ).to(device)
        self.actor.eval()  # train mode only inside the actor step (batch renormalization statistics)
        self.policy = Policy(self.actor, self.normalizer, config.exploration_noise)
        #: moving average of the actor's weights (``deployed_actor_average`` > 0): a policy's quality swings
        #: from one checkpoint to the next while it learns; the average rides out the swings
        self.actor_average = copy.deepcopy(self.actor) if config.deployed_actor_average > 0.0 else None
        self.deployed_policy = Policy(self.deployed_actor, self.normalizer, config.exploration_noise)
        self.critic = CriticEnsemble(
            config.num_critics,
            obs_dim + act_dim,
            config.critic_hidden_sizes or config.hidden_sizes,
            layer_norm=config.critic_layer_norm,
            dropout=config.critic_dropout,
            batch_renorm=self.batch_renorm,
        ).to(device)
        self.log_alpha = torch.tensor(math.log(config.init_temperature), device=device, requires_grad=True)
        self.target_entropy = config.target_entropy if config.target_entropy != 0.0 else -float(act_dim)
        fused = device.type in ("cpu", "cuda")
        betas = (config.adam_beta1, 0.999)
        self.actor_optimizer = torch.optim.Adam(
            self.actor.parameters(), lr=config.actor_lr, betas=betas, fused=fused
        )
        self.critic_optimizer = torch.optim.Adam(
            self.critic.parameters(), lr=config.critic_lr, betas=betas, fused=fused
        )
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=config.temperature_lr, fused=fused)
        # The critic loss dominates every update (UTD critic steps per actor step); compiled, inductor
        # fuses its elementwise work in forward and backward. See docs/learning.md for when it pays.
        self._critic_loss = compiled_or_eager(self.critic_loss) if config.compile else self.critic_loss

    # -- acting -------------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool) -> Tensor:
        """Actions in [-1, 1] for raw observations ``[B, obs_dim]`` (the exported formula; deterministic
        ones from :attr:`deployed_actor`)."""
        if deterministic:
            return self.deployed_policy(obs, None)
        return self.policy(obs, torch.randn(obs.shape[0], self.act_dim, device=self.device))

    # -- the update-to-data loop --------------------------------------------------------------
    def update(self, batches: Minibatches, first_update: int) -> dict[str, float]:
        """Run ``len(batches)`` critic steps, interleaving actor steps on the global schedule.

        ``first_update`` is the global index of the first critic step; an actor step follows
        critic step ``i`` whenever ``(i + 1) % (utd_ratio * actor_delay) == 0``.
        """
        period = self.config.utd_ratio * self.config.actor_delay
        obs = self.normalizer(batches.obs)
        next_obs = self.normalizer(batches.next_obs)
        critic_losses = []
        actor_metrics: dict[str, Tensor] = {}
        for i in range(len(batches)):
            critic_losses.append(
                self.critic_step(
                    obs[i], batches.action[i], batches.reward[i], next_obs[i], batches.discount[i]
                )
            )
            if (first_update + i + 1) % period == 0:
                demo_action = batches.action[i, -batches.demo_rows :] if batches.demo_rows else None
                actor_metrics = self.actor_step(obs[i], demo_action)
        metrics = {"critic_loss": torch.stack(critic_losses).mean()} if critic_losses else {}
        metrics.update(actor_metrics)
        return {name: float(value) for name, value in metrics.items()}

    def critic_step(
        self, obs: Tensor, action: Tensor, reward: Tensor, next_obs: Tensor, discount: Tensor
    ) -> Tensor:
        """One gradient step of the whole ensemble on normalized observations; returns the loss (detached)."""
        with self.autocast():
            loss = self._critic_loss(obs, action, reward, next_obs, discount)
        self.critic_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_optimizer.step()
        self.after_critic_step()
        return loss.detach()

    def actor_step(self, obs: Tensor, demo_action: Tensor | None = None) -> dict[str, Tensor]:
        """One actor step on normalized observations (with the rule's own extras, e.g. the temperature).

        With ``demo_action`` (actions of the last ``len(demo_action)`` rows, from demonstrations) and
        ``demo_bc_weight > 0`` the actor loss adds a behaviour-cloning term on those rows, kept only
        where the critics value the demonstrated action above the policy's (Q-filter, Nair et al. 2018,
        unless ``demo_bc_q_filter`` is off), scaled by the batch's mean |Q|.
        """
        self.actor.train()
        try:
            with self.autocast():
                actor_loss, q_pi, metrics = self.policy_loss(obs)
                if demo_action is not None and self.config.demo_bc_weight > 0.0:
                    actor_loss = actor_loss + self.config.demo_bc_weight * self._behaviour_cloning_loss(
                        obs, q_pi, demo_action
                    )
        finally:
            self.actor.eval()
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optimizer.step()
        self.after_actor_step()
        if self.actor_average is not None:
            polyak_update(
                list(self.actor_average.parameters()),
                list(self.actor.parameters()),
                self.config.deployed_actor_average,
            )
            for average_buffer, buffer in zip(
                self.actor_average.buffers(), self.actor.buffers(), strict=True
            ):
                average_buffer.copy_(buffer)  # batch renormalization statistics: the current ones
        metrics["actor_loss"] = actor_loss.detach()
        return metrics

    def autocast(self) -> contextlib.AbstractContextManager[object]:
        """bf16 autocast of the update's forward passes where enabled, else a no-op."""
        if self.compute_dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.compute_dtype)

    @property
    def deployed_actor(self) -> Actor:
        """The actor deterministic policies are exported from: the weights' moving average where
        ``deployed_actor_average`` is on, else the actor itself."""
        return self.actor if self.actor_average is None else self.actor_average

    # -- the rules (subclasses) ---------------------------------------------------------------
    def critic_loss(
        self, obs: Tensor, action: Tensor, reward: Tensor, next_obs: Tensor, discount: Tensor
    ) -> Tensor:
        """The ensemble's TD loss for one minibatch."""
        raise NotImplementedError

    def policy_loss(self, obs: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """``(actor loss, Q of the policy's action [B], metrics)`` for one minibatch."""
        raise NotImplementedError

    def after_critic_step(self) -> None:
        """Hook after every critic step (target averaging)."""

    def after_actor_step(self) -> None:
        """Hook after every actor step (target averaging)."""

    # -- shared pieces ------------------------------------------------------------------------
    def q_for_actor(self, obs: Tensor, action: Tensor) -> Tensor:
        """Critic value of the policy's action: twin critics the min, larger ensembles the mean (REDQ)."""
        q = self.critic.forward_detached(obs, action)
        return self._aggregate(q)

    def _aggregate(self, q: Tensor) -> Tensor:
        return q.amin(dim=0) if self.config.num_critics <= 2 else q.mean(dim=0)

    def sample_target_members(self) -> Tensor | None:
        """Indices of the M critics used in the target (``None`` = all N)."""
        if self.config.num_target_critics >= self.config.num_critics:
            return None
        return torch.randperm(self.config.num_critics, device=self.device)[: self.config.num_target_critics]

    def td_loss(self, q: Tensor, target: Tensor) -> Tensor:
        """Half squared TD error, averaged over the batch and summed over members (``q [N, B]``)."""
        return 0.5 * (q.float() - target.float()).square().mean(dim=1).sum()

    def soft_value(self, next_q: Tensor, next_log_prob: Tensor) -> Tensor:
        """Entropy-regularized value ``min_M Q - alpha * log pi`` from member values ``[M, B]``."""
        return next_q.amin(dim=0) - self.log_alpha.detach().exp() * next_log_prob

    def sac_policy_loss(self, obs: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Entropy-regularized actor loss, with one temperature step towards the target entropy."""
        action, log_prob = self.actor.sample(obs)
        q_pi = self.q_for_actor(obs, action)
        alpha = self.log_alpha.detach().exp()
        alpha_loss = -(self.log_alpha * (log_prob.detach().float() + self.target_entropy)).mean()
        self.alpha_optimizer.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_optimizer.step()
        metrics = {"alpha": alpha, "entropy": -log_prob.detach().float().mean()}
        return (alpha * log_prob - q_pi).float().mean(), q_pi, metrics

    def _behaviour_cloning_loss(self, obs: Tensor, q_pi: Tensor, demo_action: Tensor) -> Tensor:
        rows = demo_action.shape[0]
        demo_obs = obs[-rows:]
        error = (self.actor.deterministic(demo_obs) - demo_action).square().sum(dim=-1)
        if not self.config.demo_bc_q_filter:
            return q_pi.detach().abs().mean() * error.mean()
        with torch.no_grad():
            q_demo = self._aggregate(self.critic.forward_detached(demo_obs, demo_action))
            keep = (q_demo > q_pi[-rows:].detach()).float()
        # Scaled by the mean |Q| (as in TD3+BC, Fujimoto & Gu 2021): the weight is free of the reward scale.
        return q_pi.detach().abs().mean() * (keep * error).mean()

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, object]:
        """Tensors and plain values only (loadable with ``torch.load(weights_only=True)``)."""
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "normalizer": self.normalizer.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "alpha_optimizer": self.alpha_optimizer.state_dict(),
            **({} if self.actor_average is None else {"actor_average": self.actor_average.state_dict()}),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` output; learning rates stay those of the current config."""
        self.actor.load_state_dict(state["actor"])
        if self.actor_average is not None:  # a run without the average (e.g. the one started from): begin it
            self.actor_average.load_state_dict(state.get("actor_average", state["actor"]))
        self.critic.load_state_dict(state["critic"])
        self.normalizer.load_state_dict(state["normalizer"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        for name, lr in (
            ("actor_optimizer", self.config.actor_lr),
            ("critic_optimizer", self.config.critic_lr),
            ("alpha_optimizer", self.config.temperature_lr),
        ):
            optimizer: torch.optim.Optimizer = getattr(self, name)
            optimizer.load_state_dict(state[name])
            for group in optimizer.param_groups:
                group["lr"] = lr


class TargetCriticAgent(Agent):
    """A rule with Polyak-averaged target critics (SAC, TD3): TD target ``r + discount * target_value``."""

    def __init__(self, obs_dim: int, act_dim: int, config: AgentConfig, device: torch.device) -> None:
        super().__init__(obs_dim, act_dim, config, device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)

    def critic_loss(
        self, obs: Tensor, action: Tensor, reward: Tensor, next_obs: Tensor, discount: Tensor
    ) -> Tensor:
        with torch.no_grad():
            target = reward + discount * self.target_value(next_obs)
        return self.td_loss(self.critic(obs, action), target)

    def target_value(self, next_obs: Tensor) -> Tensor:
        """Value of ``next_obs`` under the rule's target networks, ``[B]``."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, object]:
        return {**super().state_dict(), "critic_target": self.critic_target.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.critic_target.load_state_dict(state["critic_target"])


class SAC(TargetCriticAgent):
    """Soft Actor-Critic with a critic ensemble and Polyak-averaged target critics (REDQ for N > 2)."""

    def target_value(self, next_obs: Tensor) -> Tensor:
        """Soft value of ``next_obs`` from a random subset of M target critics, ``[B]``."""
        next_action, next_log_prob = self.actor.sample(next_obs)
        next_q = self.critic_target(next_obs, next_action, self.sample_target_members())
        return self.soft_value(next_q, next_log_prob)

    def policy_loss(self, obs: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        return self.sac_policy_loss(obs)

    def after_critic_step(self) -> None:
        polyak_update(self.critic_target.layer_params(), self.critic.layer_params(), self.config.tau)


class TD3(TargetCriticAgent):
    """TD3: deterministic actor, smoothed targets from target actor and critics averaged after actor steps."""

    stochastic = False

    def __init__(self, obs_dim: int, act_dim: int, config: AgentConfig, device: torch.device) -> None:
        super().__init__(obs_dim, act_dim, config, device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)

    def target_value(self, next_obs: Tensor) -> Tensor:
        """Min over M target critics at the smoothed target action, ``[B]``."""
        config = self.config
        noise = (
            torch.randn(next_obs.shape[0], self.act_dim, device=self.device) * config.policy_noise
        ).clamp(-config.noise_clip, config.noise_clip)
        next_action = (self.actor_target.deterministic(next_obs) + noise).clamp(-1.0, 1.0)
        return self.critic_target(next_obs, next_action, self.sample_target_members()).amin(dim=0)

    def policy_loss(self, obs: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        q_pi = self.q_for_actor(obs, self.actor.deterministic(obs))
        return -q_pi.float().mean(), q_pi, {}

    def after_actor_step(self) -> None:
        polyak_update(self.critic_target.layer_params(), self.critic.layer_params(), self.config.tau)
        polyak_update(list(self.actor_target.parameters()), list(self.actor.parameters()), self.config.tau)

    def state_dict(self) -> dict[str, object]:
        return {**super().state_dict(), "actor_target": self.actor_target.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.actor_target.load_state_dict(state["actor_target"])


class CrossQ(Agent):
    """CrossQ: SAC's actor and temperature, no target networks, batch-renormalized networks.

    The critics evaluate ``(s, a)`` and ``(s', a' ~ pi(s'))`` as one batch of ``2B`` rows, so the
    batch statistics cover both distributions; the target is the detached min over M members of the
    second half. The actor's loss reads the critics with their running statistics.
    """

    batch_renorm = True

    def critic_loss(
        self, obs: Tensor, action: Tensor, reward: Tensor, next_obs: Tensor, discount: Tensor
    ) -> Tensor:
        with torch.no_grad():
            next_action, next_log_prob = self.actor.sample(next_obs)
        q_joint = self.critic(torch.cat((obs, next_obs)), torch.cat((action, next_action)))
        q, next_q = q_joint.split(obs.shape[0], dim=1)
        members = self.sample_target_members()
        next_q = next_q.detach() if members is None else next_q.detach().index_select(0, members)
        target = reward + discount * self.soft_value(next_q.float(), next_log_prob.float())
        return self.td_loss(q, target)

    def policy_loss(self, obs: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        return self.sac_policy_loss(obs)
