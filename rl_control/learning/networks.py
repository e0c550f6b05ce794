"""Neural networks: a vectorized critic ensemble, the actor, and observation normalization.

The critic ensemble stores the weights of all N members stacked (``[N, in, out]``) and evaluates
them as one batched matrix product per layer, so N critics cost one kernel launch per layer and one
optimizer, instead of a Python loop over N modules.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor, nn
from torch.nn import functional

LOG_STD_MIN = -10.0
LOG_STD_MAX = 2.0
OBS_CLIP = 10.0


class CriticEnsemble(nn.Module):
    """N independent Q(s, a) MLPs evaluated as one batched computation.

    Layer ``i`` holds ``weight_i`` of shape ``[N, in, out]`` and ``bias_i`` of shape ``[N, 1, out]``;
    with ``layer_norm`` each hidden layer also has a per-member affine LayerNorm (``ln_gain_i``,
    ``ln_bias_i``). Hidden layers apply Linear -> Dropout -> LayerNorm -> ReLU (DroQ ordering).
    """

    def __init__(
        self,
        num_members: int,
        in_dim: int,
        hidden_sizes: list[int],
        *,
        layer_norm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_members = num_members
        self.layer_norm = layer_norm
        self.dropout = dropout
        sizes = [in_dim, *hidden_sizes, 1]
        self.num_layers = len(sizes) - 1
        for layer, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
            bound = 1.0 / math.sqrt(fan_in)  # the nn.Linear default initialisation, per member
            weight = torch.empty(num_members, fan_in, fan_out).uniform_(-bound, bound)
            bias = torch.empty(num_members, 1, fan_out).uniform_(-bound, bound)
            self.register_parameter(f"weight_{layer}", nn.Parameter(weight))
            self.register_parameter(f"bias_{layer}", nn.Parameter(bias))
            if layer_norm and layer < self.num_layers - 1:
                self.register_parameter(f"ln_gain_{layer}", nn.Parameter(torch.ones(num_members, 1, fan_out)))
                self.register_parameter(
                    f"ln_bias_{layer}", nn.Parameter(torch.zeros(num_members, 1, fan_out))
                )

    def layer_params(self) -> list[Tensor]:
        """Parameters in the flat order :func:`ensemble_q` expects."""
        params: list[Tensor] = []
        for layer in range(self.num_layers):
            params.append(getattr(self, f"weight_{layer}"))
            params.append(getattr(self, f"bias_{layer}"))
            if self.layer_norm and layer < self.num_layers - 1:
                params.append(getattr(self, f"ln_gain_{layer}"))
                params.append(getattr(self, f"ln_bias_{layer}"))
        return params

    def forward(self, obs: Tensor, action: Tensor, members: Tensor | None = None) -> Tensor:
        """Q-values ``[N, B]`` (``[len(members), B]`` for a subset) for ``obs [B, o]``, ``action [B, a]``."""
        params = self.layer_params()
        if members is not None:
            params = [p.index_select(0, members) for p in params]
        return ensemble_q(params, obs, action, self.layer_norm, self.dropout if self.training else 0.0)

    def forward_detached(self, obs: Tensor, action: Tensor) -> Tensor:
        """Q-values with the critic weights treated as constants (gradients flow only to the inputs)."""
        params = [p.detach() for p in self.layer_params()]
        return ensemble_q(params, obs, action, self.layer_norm, self.dropout if self.training else 0.0)


def ensemble_q(params: list[Tensor], obs: Tensor, action: Tensor, layer_norm: bool, dropout: float) -> Tensor:
    """Evaluate stacked member weights ``params`` (see :class:`CriticEnsemble`) on a shared batch."""
    x = torch.cat((obs, action), dim=-1)
    per_layer = 4 if layer_norm else 2
    num_hidden = (len(params) - 2) // per_layer
    index = 0
    for layer in range(num_hidden + 1):
        weight, bias = params[index], params[index + 1]
        # A shared [B, in] batch broadcasts against [N, in, out] weights -> [N, B, out].
        x = torch.baddbmm(bias, x, weight) if x.dim() == 3 else torch.matmul(x, weight).add_(bias)
        index += 2
        if layer == num_hidden:
            break
        if dropout > 0.0:
            x = functional.dropout(x, dropout, training=True)
        if layer_norm:
            gain, shift = params[index], params[index + 1]
            x = torch.addcmul(shift, functional.layer_norm(x, x.shape[-1:]), gain)
            index += 2
        x = torch.relu(x)
    return x.squeeze(-1)


class RunningNormalizer(nn.Module):
    """Running mean/variance of observations (parallel Welford update); frozen statistics at export."""

    def __init__(self, dim: int, enabled: bool) -> None:
        super().__init__()
        self.enabled = enabled
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("var", torch.ones(dim, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean32", torch.zeros(dim))
        self.register_buffer("inv_std32", torch.ones(dim))

    def update(self, batch: Tensor) -> None:
        """Fold a ``[B, dim]`` batch into the statistics (no-op when disabled)."""
        if not self.enabled or batch.shape[0] == 0:
            return
        batch = batch.to(self.mean.device, torch.float64)
        batch_mean = batch.mean(0)
        batch_var = batch.var(0, unbiased=False)
        batch_count = batch.shape[0]
        total = self.count + batch_count
        delta = batch_mean - self.mean
        self.mean += delta * batch_count / total
        self.var.copy_(
            (
                self.var * self.count
                + batch_var * batch_count
                + delta.square() * self.count * batch_count / total
            )
            / total
        )
        self.count.copy_(total)
        self.mean32.copy_(self.mean.float())
        self.inv_std32.copy_((self.var + 1e-8).rsqrt().float())

    def forward(self, obs: Tensor) -> Tensor:
        if not self.enabled:
            return obs
        return ((obs - self.mean32) * self.inv_std32).clamp(-OBS_CLIP, OBS_CLIP)


class Actor(nn.Module):
    """MLP policy trunk with a mean head and (for SAC) a state-dependent log-std head.

    Actions live in [-1, 1]: SAC squashes a Gaussian sample with tanh, TD3 applies tanh to the mean.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: list[int], stochastic: bool) -> None:
        super().__init__()
        self.stochastic = stochastic
        layers: list[nn.Module] = []
        in_dim = obs_dim
        for width in hidden_sizes:
            layers += [nn.Linear(in_dim, width), nn.ReLU()]
            in_dim = width
        self.trunk = nn.Sequential(*layers)
        self.mean_head = nn.Linear(in_dim, act_dim)
        self.log_std_head = nn.Linear(in_dim, act_dim) if stochastic else None

    def distribution_params(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """Pre-tanh mean and clamped log-std (SAC only)."""
        assert self.log_std_head is not None
        features = self.trunk(obs)
        log_std = self.log_std_head(features).clamp(LOG_STD_MIN, LOG_STD_MAX)
        return self.mean_head(features), log_std

    def sample(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """Reparameterized tanh-Gaussian sample and its log-probability ``[B]`` (SAC)."""
        mean, log_std = self.distribution_params(obs)
        noise = torch.randn_like(mean)
        pre_tanh = mean + log_std.exp() * noise
        action = torch.tanh(pre_tanh)
        # log N(pre_tanh; mean, std) - sum log(1 - tanh^2), the latter in a numerically stable form.
        log_prob = (-0.5 * noise.square() - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_prob = log_prob - (2.0 * (math.log(2.0) - pre_tanh - functional.softplus(-2.0 * pre_tanh))).sum(
            -1
        )
        return action, log_prob

    def deterministic(self, obs: Tensor) -> Tensor:
        """The mode of the policy: ``tanh(mean)``."""
        return torch.tanh(self.mean_head(self.trunk(obs)))
