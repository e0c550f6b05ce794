"""Critic ensemble, targets, replay semantics and demonstration mixing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from rl_control.learning import (
    DemonstrationError,
    Learner,
    TransitionBatch,
    load_demonstrations,
    preset_config,
)
from rl_control.learning import agent as agent_module
from rl_control.learning.agent import (
    SAC,
    CrossQ,
    make_agent,
    polyak_update,
    resolve_device,
    resolve_precision,
)
from rl_control.learning.networks import BatchRenorm, CriticEnsemble
from rl_control.learning.replay import ReplayBuffer
from rl_control.transitions import validate

OBS_DIM, ACT_DIM = 3, 2


def make_batch(rows: int, seed: int = 0, obs_value: float | None = None) -> TransitionBatch:
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(rows, OBS_DIM)) if obs_value is None else np.full((rows, OBS_DIM), obs_value)
    return TransitionBatch(
        obs=obs,
        action=rng.uniform(-1, 1, (rows, ACT_DIM)),
        reward=rng.normal(size=rows),
        next_obs=rng.normal(size=(rows, OBS_DIM)),
        terminated=np.zeros(rows),
        truncated=np.zeros(rows),
    )


def member_as_sequential(ensemble: CriticEnsemble, member: int) -> nn.Module:
    """An ordinary nn.Sequential holding one member's weights (the loop reference)."""
    layers: list[nn.Module] = []
    for layer in range(ensemble.num_layers):
        weight = getattr(ensemble, f"weight_{layer}")[member]
        linear = nn.Linear(weight.shape[0], weight.shape[1])
        linear.weight.data.copy_(weight.T)
        linear.bias.data.copy_(getattr(ensemble, f"bias_{layer}")[member, 0])
        layers.append(linear)
        if layer < ensemble.num_layers - 1:
            if ensemble.layer_norm:
                norm = nn.LayerNorm(weight.shape[1])
                norm.weight.data.copy_(getattr(ensemble, f"ln_gain_{layer}")[member, 0])
                norm.bias.data.copy_(getattr(ensemble, f"ln_bias_{layer}")[member, 0])
                layers.append(norm)
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


@pytest.mark.parametrize("layer_norm", [False, True])
def test_vectorized_ensemble_equals_loop_of_independent_critics(layer_norm: bool) -> None:
    torch.manual_seed(0)
    ensemble = CriticEnsemble(5, OBS_DIM + ACT_DIM, [16, 8], layer_norm=layer_norm)
    with torch.no_grad():  # give LayerNorm affine parameters non-trivial, per-member values
        for param in ensemble.parameters():
            param.add_(0.1 * torch.randn_like(param))
    obs, action = torch.randn(7, OBS_DIM), torch.rand(7, ACT_DIM) * 2 - 1
    vectorized = ensemble(obs, action)
    looped = torch.stack(
        [member_as_sequential(ensemble, m)(torch.cat((obs, action), -1)).squeeze(-1) for m in range(5)]
    )
    assert vectorized.shape == (5, 7)
    torch.testing.assert_close(vectorized, looped, rtol=1e-5, atol=1e-5)
    # Gradients too: the loss of member 2 only moves member 2's weights.
    vectorized[2].sum().backward()
    grad = ensemble.weight_1.grad
    assert grad is not None and grad[2].abs().sum() > 0
    assert torch.count_nonzero(grad[[0, 1, 3, 4]]) == 0
    subset = ensemble(obs, action, torch.tensor([4, 1]))
    torch.testing.assert_close(subset, vectorized[[4, 1]].detach())


def test_target_uses_exactly_m_sampled_members() -> None:
    torch.manual_seed(0)
    config = preset_config("redq", hidden_sizes=[16, 16], device="cpu")
    agent = make_agent(OBS_DIM, ACT_DIM, config, torch.device("cpu"))
    assert isinstance(agent, SAC)
    members = agent.sample_target_members()
    assert members is not None and len(members) == 2 and len(set(members.tolist())) == 2
    chosen = torch.tensor([3, 7])
    agent.sample_target_members = lambda: chosen  # type: ignore[method-assign]
    next_obs = torch.randn(32, OBS_DIM)
    torch.manual_seed(1)
    baseline = agent.target_value(next_obs)
    with torch.no_grad():  # change every member that is not chosen: the target must not move
        for param in agent.critic_target.parameters():
            others = [m for m in range(10) if m not in chosen.tolist()]
            param[others] += 5.0
    torch.manual_seed(1)
    torch.testing.assert_close(agent.target_value(next_obs), baseline, rtol=0, atol=0)
    with torch.no_grad():
        agent.critic_target.bias_2[7] += 5.0  # a chosen member moves the min
    torch.manual_seed(1)
    assert not torch.equal(agent.target_value(next_obs), baseline)
    # And the value is the min of those two members minus the entropy term.
    torch.manual_seed(1)
    action, log_prob = agent.actor.sample(next_obs)
    manual = agent.critic_target(next_obs, action, chosen).amin(0) - agent.log_alpha.exp() * log_prob
    torch.manual_seed(1)
    torch.testing.assert_close(agent.target_value(next_obs), manual.detach())


def test_truncation_bootstraps_and_termination_does_not() -> None:
    buffer = ReplayBuffer(8, OBS_DIM, ACT_DIM)
    batch = make_batch(3)
    batch.terminated = np.array([0.0, 1.0, 0.0], np.float32)
    batch.truncated = np.array([0.0, 0.0, 1.0], np.float32)
    buffer.add(validate(batch, OBS_DIM, ACT_DIM)[0])
    one_step = buffer.gather(np.array([0, 1, 2]), n_step=1, gamma=0.9)
    np.testing.assert_allclose(one_step["discount"], [0.9, 0.0, 0.9])
    # n-step: stops at episode ends, discount gamma**k, zero only after a true termination.
    rewards = np.array([1.0, 2.0, 4.0, 8.0, 16.0], np.float32)
    buffer = ReplayBuffer(16, OBS_DIM, ACT_DIM)
    stream = make_batch(5)
    stream.reward = rewards
    stream.truncated = np.array([0, 1, 0, 0, 0], np.float32)  # episode 1 truncated after row 1
    stream.terminated = np.array([0, 0, 0, 1, 0], np.float32)  # episode 2 terminates at row 3
    buffer.add(validate(stream, OBS_DIM, ACT_DIM)[0])
    out = buffer.gather(np.array([0, 2, 3, 4]), n_step=3, gamma=0.5)
    np.testing.assert_allclose(out["reward"], [1 + 0.5 * 2, 4 + 0.5 * 8, 8, 16])
    np.testing.assert_allclose(out["discount"], [0.25, 0.0, 0.0, 0.5])  # row 4: newest, bootstraps
    np.testing.assert_array_equal(out["next_obs"], buffer.next_obs[[1, 3, 3, 4]])


def test_symmetric_sampling_draws_exact_demo_share(tmp_path: Path) -> None:
    config = preset_config("rlpd", hidden_sizes=[8], batch_size=64, learning_starts=0, device="cpu")
    learner = Learner.create_or_resume(tmp_path / "run", OBS_DIM, ACT_DIM, config)
    learner.add_transitions(make_batch(500, obs_value=1.0))
    demos = make_batch(40, seed=3, obs_value=-1.0)
    demos.truncated[-1] = 1.0
    demos.to_npz(tmp_path / "demos.npz")
    assert learner.add_demonstrations(tmp_path / "demos.npz") == 40
    minibatches = learner.sample(20)
    from_demos = (minibatches.obs[..., 0] < 0).sum(dim=1)
    assert minibatches.obs.shape == (20, 64, OBS_DIM)
    assert torch.all(from_demos == 32)
    learner.config.demo_fraction = 0.25
    assert torch.all((learner.sample(5).obs[..., 0] < 0).sum(dim=1) == 16)


def test_demonstration_file_is_validated(tmp_path: Path) -> None:
    good = make_batch(10)
    good.to_npz(tmp_path / "good.npz")
    loaded = load_demonstrations(tmp_path / "good.npz", OBS_DIM, ACT_DIM)
    assert len(loaded) == 10 and loaded.truncated[-1] == 1.0  # closed so n-step never crosses files
    with pytest.raises(DemonstrationError, match=r"'obs' has shape \(10, 3\), expected \(B, 4\)"):
        load_demonstrations(tmp_path / "good.npz", 4, ACT_DIM)
    np.savez(tmp_path / "missing.npz", obs=good.obs)
    with pytest.raises(DemonstrationError, match="missing array"):
        load_demonstrations(tmp_path / "missing.npz", OBS_DIM, ACT_DIM)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DemonstrationError, match="not a readable npz"):
        load_demonstrations(tmp_path / "junk.npz", OBS_DIM, ACT_DIM)


def test_bad_transitions_are_rejected_with_the_field_named(tmp_path: Path) -> None:
    learner = Learner.create_or_resume(tmp_path, OBS_DIM, ACT_DIM, preset_config("sac", hidden_sizes=[8]))
    batch = make_batch(4)
    batch.reward[2] = np.nan
    with pytest.raises(ValueError, match=r"'reward' has non-finite values in row\(s\) \[2\]"):
        learner.add_transitions(batch)
    with pytest.raises(ValueError, match=r"'action' has shape \(4, 3\)"):
        learner.add_transitions(TransitionBatch(**{**make_batch(4).__dict__, "action": np.zeros((4, 3))}))
    assert learner.env_steps == 0 and len(learner.replay) == 0


def test_training_changes_weights_and_counts_updates(tmp_path: Path) -> None:
    config = preset_config("droq", hidden_sizes=[16, 16], batch_size=32, utd_ratio=3, learning_starts=10)
    learner = Learner.create_or_resume(tmp_path, OBS_DIM, ACT_DIM, config)
    learner.add_transitions(make_batch(5))
    assert not learner.ready and learner.train(1) == {}
    learner.add_transitions(make_batch(20, seed=1))
    before = learner.agent.actor.mean_head.weight.detach().clone()
    metrics = learner.train(4)
    assert learner.num_updates == 12
    assert {"critic_loss", "actor_loss", "alpha", "entropy"} <= set(metrics)
    assert all(np.isfinite(v) for v in metrics.values())
    assert not torch.equal(before, learner.agent.actor.mean_head.weight)
    action = learner.act(np.zeros(OBS_DIM), deterministic=True)
    assert action.shape == (ACT_DIM,) and np.all(np.abs(action) <= 1.0)


@pytest.mark.parametrize("cuda", [False, True])
def test_auto_device_takes_cuda_only_where_present(monkeypatch: pytest.MonkeyPatch, cuda: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert resolve_device("auto").type == ("cuda" if cuda else "cpu")
    assert resolve_device("cpu").type == "cpu"  # an explicit device is taken as given


def test_behaviour_cloning_term_is_q_filtered() -> None:
    torch.manual_seed(0)
    config = preset_config("sac", hidden_sizes=[16], demo_bc_weight=1.0, device="cpu")
    agent = make_agent(OBS_DIM, ACT_DIM, config, torch.device("cpu"))
    obs, demo_action = torch.randn(8, OBS_DIM), torch.rand(4, ACT_DIM) * 2 - 1
    q_demo = agent.critic(obs[-4:], demo_action).amin(0).detach()
    q_pi = torch.full((8,), 3.0)
    q_pi[-4:] = q_demo + 1.0  # the policy's actions look better everywhere: nothing to clone
    assert agent._behaviour_cloning_loss(obs, q_pi, demo_action).item() == 0.0
    q_pi[-4:] = q_demo - 1.0
    q_pi[-2:] = q_demo[-2:] + 1.0  # only the first two demonstration rows pass the filter
    error = (agent.actor.deterministic(obs[-4:]) - demo_action).square().sum(-1)
    expected = q_pi.abs().mean() * (error[:2].sum() / 4)
    torch.testing.assert_close(agent._behaviour_cloning_loss(obs, q_pi, demo_action), expected)
    agent.config.demo_bc_q_filter = False  # unfiltered: every demonstration row is cloned
    torch.testing.assert_close(
        agent._behaviour_cloning_loss(obs, q_pi, demo_action), q_pi.abs().mean() * error.mean()
    )


def test_polyak_update_moves_targets_by_tau() -> None:
    target, source = [torch.zeros(3), torch.ones(2)], [torch.full((3,), 2.0), torch.full((2,), 3.0)]
    polyak_update(target, source, 0.25)
    torch.testing.assert_close(target[0], torch.full((3,), 0.5))
    torch.testing.assert_close(target[1], torch.full((2,), 1.5))
    assert torch.equal(source[0], torch.full((3,), 2.0))


def test_batch_renorm_uses_batch_statistics_in_training_and_running_ones_in_evaluation() -> None:
    norm = BatchRenorm((2, 1, 4))  # two ensemble members with their own statistics
    x = torch.randn(2, 64, 4) * torch.tensor([1.0, 5.0]).view(2, 1, 1) + 3.0
    out = norm(x)
    torch.testing.assert_close(out.mean(1), torch.zeros(2, 4), atol=1e-5, rtol=0)
    torch.testing.assert_close(norm.running_mean, 0.01 * x.mean(1, keepdim=True))
    assert int(norm.steps) == 1
    norm.eval()
    frozen = norm(x)
    expected = (x - norm.running_mean) / (norm.running_var + 1e-3).sqrt()
    torch.testing.assert_close(frozen, expected)
    assert int(norm.steps) == 1  # evaluation leaves the statistics alone


def test_batch_renorm_corrects_towards_the_running_statistics_after_the_warm_up() -> None:
    from rl_control.learning.networks import BRN_D_MAX, BRN_EPS, BRN_R_MAX, BRN_WARMUP_STEPS

    norm = BatchRenorm((3,))
    with torch.no_grad():
        norm.running_mean.copy_(torch.tensor([0.0, 1.0, -50.0]))
        norm.running_var.copy_(torch.tensor([1.0, 100.0, 1.0]))
        norm.gain.copy_(torch.tensor([2.0, 1.0, 0.5]))
        norm.bias.copy_(torch.tensor([0.1, 0.0, -0.2]))
    x = torch.randn(64, 3) * 2.0 + 1.0
    mean, std = x.mean(0), (x.var(0, unbiased=False) + BRN_EPS).sqrt()
    running_std = (norm.running_var + BRN_EPS).sqrt()
    r = (std / running_std).clamp(1 / BRN_R_MAX, BRN_R_MAX)  # feature 1: clipped at 1/3
    d = ((mean - norm.running_mean) / running_std).clamp(-BRN_D_MAX, BRN_D_MAX)  # feature 2: clipped at 5
    warming_up = norm(x)  # before the warm-up ends: plain batch normalization
    torch.testing.assert_close(warming_up, (x - mean) / std * norm.gain + norm.bias)
    norm.steps.fill_(BRN_WARMUP_STEPS)
    with torch.no_grad():  # the statistics the correction reads are those before this batch
        norm.running_mean.copy_(torch.tensor([0.0, 1.0, -50.0]))
        norm.running_var.copy_(torch.tensor([1.0, 100.0, 1.0]))
    renormalized = norm(x)
    torch.testing.assert_close(renormalized, ((x - mean) / std * r + d) * norm.gain + norm.bias)
    assert float(d[2]) == BRN_D_MAX and float(r[1]) == pytest.approx(1 / BRN_R_MAX)
    renormalized.sum().backward()  # r and d are constants: gradients reach the affine parameters
    assert norm.gain.grad is not None and torch.isfinite(norm.gain.grad).all()


def test_crossq_has_no_targets_and_normalizes_the_joint_batch(tmp_path: Path) -> None:
    config = preset_config(
        "crossq", hidden_sizes=[16, 16], critic_hidden_sizes=[32], batch_size=32, learning_starts=10
    )
    learner = Learner.create_or_resume(tmp_path, OBS_DIM, ACT_DIM, config)
    agent = learner.agent
    assert isinstance(agent, CrossQ) and not hasattr(agent, "critic_target")
    assert agent.critic.weight_0.shape == (2, OBS_DIM + ACT_DIM, 32)
    learner.add_transitions(make_batch(40))
    # The critic sees the current and the next observations as one batch: its first normalization layer
    # tracks their joint mean.
    batches = learner.sample(1)
    obs, next_obs = agent.normalizer(batches.obs[0]), agent.normalizer(batches.next_obs[0])
    agent.critic_step(obs, batches.action[0], batches.reward[0], next_obs, batches.discount[0])
    assert agent.critic.input_norm is not None
    joint_obs_mean = torch.cat((obs, next_obs)).mean(0)
    torch.testing.assert_close(agent.critic.input_norm.running_mean[0, 0, :OBS_DIM], 0.01 * joint_obs_mean)
    metrics = learner.train(6)
    assert {"critic_loss", "actor_loss", "alpha"} <= set(metrics)
    assert all(np.isfinite(value) for value in metrics.values())
    actor_norm = agent.actor.trunk[0]  # the observation's normalization, then Linear, ReLU, normalization
    assert isinstance(actor_norm, BatchRenorm) and int(actor_norm.steps) == 2  # actor every 3rd update
    assert [type(m) for m in agent.actor.trunk[1:4]] == [nn.Linear, nn.ReLU, BatchRenorm]
    assert not agent.actor.training  # acting and export read the running statistics


def test_bf16_precision_trains_with_finite_losses_and_fp32_weights(tmp_path: Path) -> None:
    config = preset_config(
        "crossq",
        hidden_sizes=[16],
        critic_hidden_sizes=[32],
        batch_size=16,
        learning_starts=8,
        precision="bf16",
    )
    learner = Learner.create_or_resume(tmp_path, OBS_DIM, ACT_DIM, config)
    assert learner.agent.compute_dtype == torch.bfloat16
    learner.add_transitions(make_batch(30))
    metrics = learner.train(6)
    assert all(np.isfinite(value) for value in metrics.values())
    assert learner.agent.critic.weight_0.dtype == torch.float32  # autocast: master weights stay fp32
    assert preset_config("sac", precision="fp32").precision == "fp32"


@pytest.mark.parametrize("amx", [True, False])
def test_auto_precision_takes_bf16_only_where_it_pays(monkeypatch: pytest.MonkeyPatch, amx: bool) -> None:
    """On a CPU with AMX: bf16 for wide critics, fp32 for narrow ones (autocast's casts cost more there);
    without AMX: fp32 always. Forced settings win."""
    monkeypatch.setattr(agent_module, "_cpu_flags", lambda: {"avx512f", "amx_bf16"} if amx else {"avx2"})
    cpu = torch.device("cpu")
    wide = torch.bfloat16 if amx else torch.float32
    assert resolve_precision(preset_config("crossq", critic_hidden_sizes=[512, 512]), cpu) == wide
    assert resolve_precision(preset_config("sac", hidden_sizes=[1024, 1024]), cpu) == wide
    assert resolve_precision(preset_config("droq", hidden_sizes=[128, 128]), cpu) == torch.float32
    assert resolve_precision(preset_config("crossq", critic_hidden_sizes=[256, 256]), cpu) == torch.float32
    assert resolve_precision(preset_config("droq", precision="bf16"), cpu) == torch.bfloat16
    assert resolve_precision(preset_config("crossq", precision="fp32"), cpu) == torch.float32


def with_interventions(batch: TransitionBatch, rows: list[int]) -> TransitionBatch:
    flags = np.zeros(len(batch), np.float32)
    flags[rows] = 1.0
    return TransitionBatch(**{**vars(batch), "intervention": flags})


def test_intervention_rows_are_kept_in_the_demo_buffer_and_sampled_with_it(tmp_path: Path) -> None:
    config = preset_config("rlpd", hidden_sizes=[8], batch_size=64, learning_starts=0, device="cpu")
    learner = Learner.create_or_resume(tmp_path / "run", OBS_DIM, ACT_DIM, config)
    online = with_interventions(make_batch(10, obs_value=1.0), [2, 3, 4, 7])
    online.obs[[2, 3, 4, 7]] = -1.0  # the human's rows, recognisable in minibatches
    online.terminated[3] = 1.0
    learner.add_transitions(online)
    assert (
        len(learner.replay) == 10
        and learner.replay.intervention[:10].tolist() == online.intervention.tolist()
    )
    assert (learner.intervention_transitions, learner.demo_buffer_rows, learner.num_demonstrations) == (
        4,
        4,
        0,
    )
    demos = learner.demos.rows(0, 4)
    np.testing.assert_array_equal(demos.action, np.float32(online.action[[2, 3, 4, 7]]))
    assert demos.intervention.tolist() == [1.0] * 4
    # each run of consecutive human rows ends there (row 4: truncated; row 3 already terminated)
    assert demos.terminated.tolist() == [0, 1, 0, 0] and demos.truncated.tolist() == [0, 0, 1, 1]
    assert learner.replay.truncated[:10].sum() == 0  # the online replay keeps the stream as it was
    minibatches = learner.sample(10)  # rlpd: half of each minibatch from the demo buffer
    assert torch.all((minibatches.obs[..., 0] < 0).sum(dim=1) >= 32)
    assert minibatches.demo_rows == 32
    for seed in range(200):  # single-row appends: the demo buffer grows geometrically, not row by row
        learner.add_transitions(with_interventions(make_batch(1, seed=seed), [0]))
    assert learner.demo_buffer_rows == 204 and learner.demos.capacity < 2 * 204
    np.testing.assert_array_equal(learner.demos.rows(0, 4).action, demos.action)


@pytest.mark.slow  # inductor compiles C++ kernels: tens of seconds on 2 cores
def test_compiled_critic_loss_matches_the_eager_one(tmp_path: Path) -> None:
    # TD3 without target smoothing noise: the critic step draws no random numbers, so eager and compiled
    # steps from the same weights on the same minibatch must give the same loss and gradients. (Parameters
    # after the step are compared only to within one Adam step: for a gradient near zero Adam's normalized
    # step turns a rounding difference of the fused kernels into a step of either sign.)
    # fp32: under bf16 autocast (precision auto on AMX CPUs) inductor keeps other intermediates in fp32.
    overrides = {
        "hidden_sizes": [16, 16],
        "batch_size": 32,
        "learning_starts": 10,
        "policy_noise": 0.0,
        "precision": "fp32",
    }
    learners = []
    for name, compiled in (("eager", False), ("compiled", True)):
        torch.manual_seed(0)
        learner = Learner.create_or_resume(
            tmp_path / name, OBS_DIM, ACT_DIM, preset_config("td3", compile=compiled, **overrides)
        )
        learner.add_transitions(make_batch(40))
        learners.append(learner)
    eager, compiled = (learner.agent for learner in learners)
    torch.manual_seed(1)
    batches = learners[0].sample(1)
    args = (eager.normalizer(batches.obs[0]), batches.action[0], batches.reward[0])
    args += (eager.normalizer(batches.next_obs[0]), batches.discount[0])
    torch.testing.assert_close(compiled.critic_step(*args), eager.critic_step(*args))
    one_adam_step = 2 * eager.config.critic_lr
    for ours, theirs in zip(compiled.critic.parameters(), eager.critic.parameters(), strict=True):
        assert ours.grad is not None and theirs.grad is not None
        torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(ours, theirs, rtol=0.0, atol=one_adam_step)
    assert compiled._critic_loss is not compiled.critic_loss  # the compiled function was used


def test_a_failing_compilation_falls_back_to_eager_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A machine without inductor's C++ compiler: `compile: true` warns once and trains eagerly."""
    calls = []

    def broken_compile(function):
        def compiled(*args):
            calls.append(len(args))
            raise RuntimeError("InvalidCxxCompiler: no working C++ compiler found")

        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    config = preset_config("sac", compile=True, hidden_sizes=[16, 16], batch_size=16, learning_starts=10)
    learner = Learner.create_or_resume(tmp_path / "run", OBS_DIM, ACT_DIM, config)
    learner.add_transitions(make_batch(40))
    with caplog.at_level("WARNING", logger="rl_control.learning.agent"):
        metrics = learner.train(3)
    assert learner.num_updates == 3 and np.isfinite(metrics["critic_loss"])
    assert len(calls) == 1, "after the failure the compiled function is not tried again"
    assert "InvalidCxxCompiler" in caplog.text and "without compiling" in caplog.text
