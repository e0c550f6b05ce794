"""SAC and TD3 update rules over one vectorized critic ensemble.

One *critic update* fits all N critics to a target built from the min over a random subset of M
target critics (REDQ); the *actor update* (with the SAC temperature update) follows every
``utd_ratio * actor_delay`` critic updates. Minibatches for many updates are sampled at once by the
caller and arrive as stacked tensors ``[U, B, ...]``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from rl_control.learning.config import AgentConfig
from rl_control.learning.networks import Actor, CriticEnsemble, RunningNormalizer


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> cuda when available, else cpu; anything else is passed to ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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


class Agent:
    """Networks, target networks, optimizers and the update rules of SAC/TD3 with a critic ensemble."""

    def __init__(self, obs_dim: int, act_dim: int, config: AgentConfig, device: torch.device) -> None:
        self.config = config
        self.obs_dim = obs_dim
        self.act_dim = act_dim
        self.device = device
        self.is_sac = config.algorithm == "sac"
        self.normalizer = RunningNormalizer(obs_dim, config.normalize_observations).to(device)
        self.actor = Actor(obs_dim, act_dim, config.hidden_sizes, stochastic=self.is_sac).to(device)
        self.critic = CriticEnsemble(
            config.num_critics,
            obs_dim + act_dim,
            config.hidden_sizes,
            layer_norm=config.critic_layer_norm,
            dropout=config.critic_dropout,
        ).to(device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_target = None if self.is_sac else copy.deepcopy(self.actor).requires_grad_(False)
        self.log_alpha = torch.tensor(math.log(config.init_temperature), device=device, requires_grad=True)
        self.target_entropy = config.target_entropy if config.target_entropy != 0.0 else -float(act_dim)
        fused = device.type in ("cpu", "cuda")
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=config.actor_lr, fused=fused)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr, fused=fused)
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=config.temperature_lr, fused=fused)
        self._critic_params = self.critic.layer_params()
        self._critic_target_params = self.critic_target.layer_params()
        self._actor_params = list(self.actor.parameters())
        self._actor_target_params = [] if self.actor_target is None else list(self.actor_target.parameters())

    # -- acting -------------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool) -> Tensor:
        """Actions in [-1, 1] for raw observations ``[B, obs_dim]``."""
        norm = self.normalizer(obs)
        if deterministic:
            return self.actor.deterministic(norm)
        if self.is_sac:
            return self.actor.sample(norm)[0]
        noise = torch.randn(norm.shape[0], self.act_dim, device=self.device) * self.config.exploration_noise
        return (self.actor.deterministic(norm) + noise).clamp(-1.0, 1.0)

    # -- updates ------------------------------------------------------------------------------
    def critic_update(
        self, obs: Tensor, action: Tensor, reward: Tensor, next_obs: Tensor, discount: Tensor
    ) -> Tensor:
        """One gradient step of the whole ensemble on normalized observations; returns the loss (detached)."""
        config = self.config
        with torch.no_grad():
            target = reward + discount * self.target_value(next_obs)
        q = self.critic(obs, action)
        loss = 0.5 * (q - target).square().mean(dim=1).sum()
        self.critic_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_optimizer.step()
        if self.is_sac:
            torch._foreach_lerp_(self._critic_target_params, self._critic_params, config.tau)
        return loss.detach()

    def target_value(self, next_obs: Tensor) -> Tensor:
        """Soft (SAC) or smoothed (TD3) target value from a random subset of M target critics, ``[B]``."""
        config = self.config
        if self.is_sac:
            next_action, next_log_prob = self.actor.sample(next_obs)
        else:
            assert self.actor_target is not None
            noise = (
                torch.randn(next_obs.shape[0], self.act_dim, device=self.device) * config.policy_noise
            ).clamp(-config.noise_clip, config.noise_clip)
            next_action = (self.actor_target.deterministic(next_obs) + noise).clamp(-1.0, 1.0)
        members = self.sample_target_members()
        next_q = self.critic_target(next_obs, next_action, members).amin(dim=0)
        if self.is_sac:
            next_q = next_q - self.log_alpha.exp() * next_log_prob
        return next_q

    def sample_target_members(self) -> Tensor | None:
        """Indices of the M target critics used for this update (``None`` = all N)."""
        if self.config.num_target_critics >= self.config.num_critics:
            return None
        return torch.randperm(self.config.num_critics, device=self.device)[: self.config.num_target_critics]

    def actor_update(self, obs: Tensor, demo_action: Tensor | None = None) -> dict[str, Tensor]:
        """One actor step (and, for SAC, one temperature step) on normalized observations.

        With ``demo_action`` (actions of the last ``len(demo_action)`` rows, from demonstrations) and
        ``demo_bc_weight > 0`` the actor loss adds a behaviour-cloning term on those rows, kept only
        where the critics value the demonstrated action above the policy's (Q-filter, Nair et al. 2018,
        unless ``demo_bc_q_filter`` is off), scaled by the batch's mean |Q|.
        """
        if self.is_sac:
            action, log_prob = self.actor.sample(obs)
        else:
            action, log_prob = self.actor.deterministic(obs), None
        q = self.critic.forward_detached(obs, action)
        # Twin critics: pessimistic min (SAC/TD3); larger ensembles: the ensemble mean (REDQ).
        q_pi = q.amin(dim=0) if self.config.num_critics <= 2 else q.mean(dim=0)
        metrics: dict[str, Tensor] = {}
        if self.is_sac:
            assert log_prob is not None
            alpha = self.log_alpha.detach().exp()
            actor_loss = (alpha * log_prob - q_pi).mean()
            alpha_loss = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
            self.alpha_optimizer.zero_grad(set_to_none=True)
            alpha_loss.backward()
            self.alpha_optimizer.step()
            metrics["alpha"] = alpha
            metrics["entropy"] = -log_prob.detach().mean()
        else:
            actor_loss = -q_pi.mean()
        if demo_action is not None and self.config.demo_bc_weight > 0.0:
            actor_loss = actor_loss + self.config.demo_bc_weight * self._behaviour_cloning_loss(
                obs, q_pi, demo_action
            )
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optimizer.step()
        if not self.is_sac:
            torch._foreach_lerp_(self._critic_target_params, self._critic_params, self.config.tau)
            torch._foreach_lerp_(self._actor_target_params, self._actor_params, self.config.tau)
        metrics["actor_loss"] = actor_loss.detach()
        return metrics

    def _behaviour_cloning_loss(self, obs: Tensor, q_pi: Tensor, demo_action: Tensor) -> Tensor:
        rows = demo_action.shape[0]
        demo_obs = obs[-rows:]
        error = (self.actor.deterministic(demo_obs) - demo_action).square().sum(dim=-1)
        if not self.config.demo_bc_q_filter:
            return q_pi.detach().abs().mean() * error.mean()
        with torch.no_grad():
            q_demo = self.critic.forward_detached(demo_obs, demo_action)
            q_demo = q_demo.amin(dim=0) if self.config.num_critics <= 2 else q_demo.mean(dim=0)
            keep = (q_demo > q_pi[-rows:].detach()).float()
        # Scaled by the mean |Q| (as in TD3+BC, Fujimoto & Gu 2021): the weight is free of the reward scale.
        return q_pi.detach().abs().mean() * (keep * error).mean()

    def update(self, batches: Minibatches, first_update: int) -> dict[str, float]:
        """Run ``len(batches)`` critic updates, interleaving actor updates on the global schedule.

        ``first_update`` is the global index of the first critic update; an actor update follows
        critic update ``i`` whenever ``(i + 1) % (utd_ratio * actor_delay) == 0``.
        """
        period = self.config.utd_ratio * self.config.actor_delay
        obs = self.normalizer(batches.obs)
        next_obs = self.normalizer(batches.next_obs)
        critic_losses = []
        actor_metrics: dict[str, Tensor] = {}
        for i in range(len(batches)):
            critic_losses.append(
                self.critic_update(
                    obs[i], batches.action[i], batches.reward[i], next_obs[i], batches.discount[i]
                )
            )
            if (first_update + i + 1) % period == 0:
                demo_action = batches.action[i, -batches.demo_rows :] if batches.demo_rows else None
                actor_metrics = self.actor_update(obs[i], demo_action)
        metrics = {"critic_loss": torch.stack(critic_losses).mean()} if critic_losses else {}
        metrics.update(actor_metrics)
        return {name: float(value) for name, value in metrics.items()}

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, object]:
        """Tensors and plain values only (loadable with ``torch.load(weights_only=True)``)."""
        state: dict[str, object] = {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "normalizer": self.normalizer.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "alpha_optimizer": self.alpha_optimizer.state_dict(),
        }
        if self.actor_target is not None:
            state["actor_target"] = self.actor_target.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` output; learning rates stay those of the current config."""
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        self.normalizer.load_state_dict(state["normalizer"])
        if self.actor_target is not None:
            self.actor_target.load_state_dict(state["actor_target"])
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
