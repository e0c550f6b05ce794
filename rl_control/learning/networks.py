"""Neural networks: a vectorized critic ensemble, the actor, the policy function, normalization layers.

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
#: Batch renormalization (Ioffe 2017) as configured by CrossQ (Bhatt et al. 2024): running statistics
#: move by this fraction per training batch, the correction factors r and d are clipped to these bounds
#: and stay off (plain batch normalization) for the first ``BRN_WARMUP_STEPS`` training batches.
BRN_MOMENTUM = 0.01
BRN_R_MAX = 3.0
BRN_D_MAX = 5.0
BRN_WARMUP_STEPS = 100_000
BRN_EPS = 1e-3


class BatchRenorm(nn.Module):
    """Batch renormalization over dimension -2 of ``[..., B, features]`` with stats shaped ``shape``.

    ``shape`` is ``(features,)`` for a plain MLP and ``(N, 1, features)`` for an N-member ensemble
    (independent statistics and affine parameters per member). Training mode normalizes with the
    batch statistics (renormalized towards the running ones after the warm-up) and updates the running
    statistics; evaluation mode is the fixed affine map of the running statistics (what is exported).
    """

    running_mean: Tensor
    running_var: Tensor
    steps: Tensor

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(shape))
        self.bias = nn.Parameter(torch.zeros(shape))
        self.register_buffer("running_mean", torch.zeros(shape))
        self.register_buffer("running_var", torch.ones(shape))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return self.frozen(x, self.gain, self.bias)
        keep = x.dim() == self.running_mean.dim()
        mean = x.mean(-2, keepdim=keep)
        centered = x - mean
        # the biased variance from the centred values (half the time of Tensor.var over dim -2 on a CPU)
        var = (centered * centered).mean(-2, keepdim=keep)
        std = (var + BRN_EPS).sqrt()
        with torch.no_grad():
            # The correction (r, d) after the warm-up, the identity (1, 0) before it, chosen without a
            # Python branch on the step count (torch.compile traces one graph) and folded into the
            # per-feature affine map, so the batch-sized tensor sees one multiply-add either way.
            warm = self.steps >= BRN_WARMUP_STEPS
            running_std = (self.running_var + BRN_EPS).sqrt()
            r = torch.where(warm, (std / running_std).clamp(1.0 / BRN_R_MAX, BRN_R_MAX), 1.0)
            d = torch.where(
                warm, ((mean - self.running_mean) / running_std).clamp(-BRN_D_MAX, BRN_D_MAX), 0.0
            )
            self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), BRN_MOMENTUM)
            self.running_var.lerp_(var.detach().to(self.running_var.dtype), BRN_MOMENTUM)
            self.steps += 1
        # (normalized * r + d) * gain + bias
        return torch.addcmul(torch.addcmul(self.bias, d, self.gain), centered / std, self.gain * r)

    def frozen(self, x: Tensor, gain: Tensor, bias: Tensor) -> Tensor:
        """The evaluation-mode map with the running statistics (``gain``/``bias`` may be detached)."""
        scale = gain * (self.running_var + BRN_EPS).rsqrt()
        return (x - self.running_mean) * scale + bias


class CriticEnsemble(nn.Module):
    """N independent Q(s, a) MLPs evaluated as one batched computation.

    Layer ``i`` holds ``weight_i`` of shape ``[N, in, out]`` and ``bias_i`` of shape ``[N, 1, out]``;
    with ``layer_norm`` each hidden layer also has a per-member affine LayerNorm (``ln_gain_i``,
    ``ln_bias_i``). Hidden layers apply Linear -> Dropout -> LayerNorm -> ReLU (DroQ ordering). With
    ``batch_renorm`` (CrossQ) the input and every hidden layer's output (after the ReLU, as in the
    CrossQ reference) are batch-renormalized per member (``input_norm``, ``hidden_norms``).
    """

    def __init__(
        self,
        num_members: int,
        in_dim: int,
        hidden_sizes: list[int],
        *,
        layer_norm: bool = False,
        dropout: float = 0.0,
        batch_renorm: bool = False,
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
        self.input_norm: BatchRenorm | None = None
        self.hidden_norms = nn.ModuleList()
        if batch_renorm:
            self.input_norm = BatchRenorm((num_members, 1, in_dim))
            self.hidden_norms.extend(BatchRenorm((num_members, 1, width)) for width in hidden_sizes)

    def layer_params(self) -> list[Tensor]:
        """Linear and LayerNorm parameters in the flat order :meth:`evaluate` expects."""
        params: list[Tensor] = []
        for layer in range(self.num_layers):
            params.append(getattr(self, f"weight_{layer}"))
            params.append(getattr(self, f"bias_{layer}"))
            if self.layer_norm and layer < self.num_layers - 1:
                params.append(getattr(self, f"ln_gain_{layer}"))
                params.append(getattr(self, f"ln_bias_{layer}"))
        return params

    def forward(self, obs: Tensor, action: Tensor, members: Tensor | None = None) -> Tensor:
        """Q-values ``[N, B]`` (``[len(members), B]`` for a subset) for ``obs [B, o]``, ``action [B, a]``.

        In training mode batch-renormalized critics normalize with (and update) batch statistics.
        """
        params = self.layer_params()
        if members is not None:
            if self.input_norm is not None:
                raise ValueError("member subsets are not supported with batch renormalization")
            params = [p.index_select(0, members) for p in params]
        return self.evaluate(params, obs, action, self.training, detached=False)

    def forward_detached(self, obs: Tensor, action: Tensor) -> Tensor:
        """Q-values with the critic weights treated as constants (gradients flow only to the inputs).

        Batch renormalization uses the running statistics here and leaves them unchanged.
        """
        params = [p.detach() for p in self.layer_params()]
        return self.evaluate(params, obs, action, self.training, detached=True)

    def evaluate(
        self, params: list[Tensor], obs: Tensor, action: Tensor, training: bool, detached: bool
    ) -> Tensor:
        """Evaluate stacked member weights ``params`` (see :meth:`layer_params`) on a shared batch."""
        x = torch.cat((obs, action), dim=-1)
        dropout = self.dropout if training else 0.0
        if self.input_norm is not None:
            x = self._renormalize(self.input_norm, x.expand(self.num_members, *x.shape), detached)
        index = 0
        for layer in range(self.num_layers):
            weight, bias = params[index], params[index + 1]
            # A shared [B, in] batch broadcasts against [N, in, out] weights -> [N, B, out].
            x = torch.baddbmm(bias, x, weight) if x.dim() == 3 else torch.matmul(x, weight).add_(bias)
            index += 2
            if layer == self.num_layers - 1:
                break
            if dropout > 0.0:
                x = functional.dropout(x, dropout, training=True)
            if self.layer_norm:
                gain, shift = params[index], params[index + 1]
                x = torch.addcmul(shift, functional.layer_norm(x, x.shape[-1:]), gain)
                index += 2
            x = torch.relu(x)
            if self.hidden_norms:
                norm = self.hidden_norms[layer]
                assert isinstance(norm, BatchRenorm)
                x = self._renormalize(norm, x, detached)
        return x.squeeze(-1)

    @staticmethod
    def _renormalize(norm: BatchRenorm, x: Tensor, detached: bool) -> Tensor:
        if detached:
            return norm.frozen(x, norm.gain.detach(), norm.bias.detach())
        return norm(x)


class RunningNormalizer(nn.Module):
    """Running mean/variance of observations (parallel Welford update); frozen statistics at export."""

    mean: Tensor
    var: Tensor
    count: Tensor
    mean32: Tensor
    inv_std32: Tensor

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
    With ``batch_renorm`` (CrossQ) the observation and every hidden layer's output (after the ReLU)
    are batch-renormalized.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden_sizes: list[int],
        stochastic: bool,
        *,
        batch_renorm: bool = False,
    ) -> None:
        super().__init__()
        self.stochastic = stochastic
        layers: list[nn.Module] = [BatchRenorm((obs_dim,))] if batch_renorm else []
        in_dim = obs_dim
        for width in hidden_sizes:
            layers += [nn.Linear(in_dim, width), nn.ReLU()]
            if batch_renorm:
                layers.append(BatchRenorm((width,)))
            in_dim = width
        self.trunk = nn.Sequential(*layers)
        self.mean_head = nn.Linear(in_dim, act_dim)
        self.log_std_head = nn.Linear(in_dim, act_dim) if stochastic else None

    def squashed_gaussian(self, obs: Tensor, noise: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(tanh(mean + exp(log_std) * noise), the pre-tanh value, log_std)`` (SAC)."""
        assert self.log_std_head is not None
        features = self.trunk(obs)
        log_std = self.log_std_head(features).clamp(LOG_STD_MIN, LOG_STD_MAX)
        pre_tanh = self.mean_head(features) + log_std.exp() * noise
        return torch.tanh(pre_tanh), pre_tanh, log_std

    def sample(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """Reparameterized tanh-Gaussian sample and its log-probability ``[B]`` (SAC)."""
        noise = torch.randn(obs.shape[0], self.mean_head.out_features, device=obs.device, dtype=obs.dtype)
        action, pre_tanh, log_std = self.squashed_gaussian(obs, noise)
        # log N(pre_tanh; mean, std) - sum log(1 - tanh^2), the latter in a numerically stable form.
        log_prob = (-0.5 * noise.square() - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_prob = log_prob - (2.0 * (math.log(2.0) - pre_tanh - functional.softplus(-2.0 * pre_tanh))).sum(
            -1
        )
        return action, log_prob

    def deterministic(self, obs: Tensor) -> Tensor:
        """The mode of the policy: ``tanh(mean)``."""
        return torch.tanh(self.mean_head(self.trunk(obs)))


class Policy(nn.Module):
    """The action formula ``act(obs, noise)`` shared by acting, ONNX export and export verification.

    Raw observations are normalized with the frozen running statistics; ``noise ~ N(0, 1)`` of shape
    ``[B, act_dim]`` explores (SAC: inside the tanh; TD3: ``exploration_noise`` times it added to the
    action, clipped to [-1, 1]); ``noise=None`` gives the deterministic action.
    """

    def __init__(self, actor: Actor, normalizer: RunningNormalizer, exploration_noise: float) -> None:
        super().__init__()
        self.actor = actor
        self.normalizer = normalizer
        self.exploration_noise = exploration_noise

    def forward(self, obs: Tensor, noise: Tensor | None = None) -> Tensor:
        normalized = self.normalizer(obs)
        if noise is None:
            return self.actor.deterministic(normalized)
        if self.actor.stochastic:
            return self.actor.squashed_gaussian(normalized, noise)[0]
        return (self.actor.deterministic(normalized) + self.exploration_noise * noise).clamp(-1.0, 1.0)
