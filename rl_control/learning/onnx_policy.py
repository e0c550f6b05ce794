"""ONNX export of the actor and the onnxruntime policy wrapper used at control rate.

Graph contract (opset :data:`OPSET`, all tensors float32, dynamic batch dimension ``batch``):

- deterministic graph: input ``obs [batch, obs_dim]`` -> output ``action [batch, act_dim]``
- stochastic graph: inputs ``obs [batch, obs_dim]``, ``noise [batch, act_dim]`` (standard normal)
  -> output ``action [batch, act_dim]``; zero noise gives the deterministic action.

Observation normalization (frozen running statistics, clipped at +-10) and the squashing of actions
into [-1, 1] are part of the graph. Metadata (``metadata_props``, all strings): ``format``,
``obs_dim``, ``act_dim``, ``joint_names`` (JSON list), ``policy_version``, ``preset``,
``algorithm``, ``stochastic`` (``"true"``/``"false"``), ``input_names`` and ``output_names``
(JSON lists), ``exploration_noise`` (TD3 noise std in action units), plus caller-supplied keys.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper

from rl_control.learning.networks import LOG_STD_MAX, LOG_STD_MIN, OBS_CLIP, Actor, RunningNormalizer

OPSET = 17
FORMAT = "rl_control.policy.v1"
OBS_INPUT = "obs"
NOISE_INPUT = "noise"
ACTION_OUTPUT = "action"
VERIFY_TOLERANCE = 1e-5


class InvalidPolicyError(ValueError):
    """ONNX bytes that are corrupt or do not follow the rl_control policy contract."""


class ExportError(RuntimeError):
    """An exported graph failed verification (checker or onnxruntime-vs-torch comparison)."""


def _constant(name: str, array: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name)


def build_actor_graph(
    actor: Actor,
    normalizer: RunningNormalizer,
    *,
    stochastic: bool,
    exploration_noise: float,
    metadata: dict[str, str],
) -> onnx.ModelProto:
    """Translate the actor (+ normalization + squashing) into an ONNX model with ``metadata``."""
    obs_dim = actor.trunk[0].in_features if len(actor.trunk) else actor.mean_head.in_features
    act_dim = actor.mean_head.out_features
    nodes: list[onnx.NodeProto] = []
    weights: list[TensorProto] = []
    current = OBS_INPUT
    if normalizer.enabled:
        weights += [
            _constant("obs_mean", normalizer.mean32.cpu().numpy()),
            _constant("obs_inv_std", normalizer.inv_std32.cpu().numpy()),
            _constant("obs_clip_low", np.array(-OBS_CLIP)),
            _constant("obs_clip_high", np.array(OBS_CLIP)),
        ]
        nodes += [
            helper.make_node("Sub", [current, "obs_mean"], ["obs_centered"]),
            helper.make_node("Mul", ["obs_centered", "obs_inv_std"], ["obs_scaled"]),
            helper.make_node("Clip", ["obs_scaled", "obs_clip_low", "obs_clip_high"], ["obs_normalized"]),
        ]
        current = "obs_normalized"
    linears = [module for module in actor.trunk if isinstance(module, torch.nn.Linear)]
    for index, linear in enumerate(linears):
        weights += [
            _constant(f"trunk{index}_weight", linear.weight.detach().cpu().numpy().T),
            _constant(f"trunk{index}_bias", linear.bias.detach().cpu().numpy()),
        ]
        nodes += [
            helper.make_node("MatMul", [current, f"trunk{index}_weight"], [f"trunk{index}_matmul"]),
            helper.make_node("Add", [f"trunk{index}_matmul", f"trunk{index}_bias"], [f"trunk{index}_linear"]),
            helper.make_node("Relu", [f"trunk{index}_linear"], [f"trunk{index}_out"]),
        ]
        current = f"trunk{index}_out"
    heads = [("mean", actor.mean_head)]
    if actor.log_std_head is not None:
        heads.append(("log_std_raw", actor.log_std_head))
    for name, linear in heads:
        weights += [
            _constant(f"{name}_weight", linear.weight.detach().cpu().numpy().T),
            _constant(f"{name}_bias", linear.bias.detach().cpu().numpy()),
        ]
        nodes += [
            helper.make_node("MatMul", [current, f"{name}_weight"], [f"{name}_matmul"]),
            helper.make_node("Add", [f"{name}_matmul", f"{name}_bias"], [name]),
        ]
    inputs = [helper.make_tensor_value_info(OBS_INPUT, TensorProto.FLOAT, ["batch", obs_dim])]
    if not stochastic:
        nodes.append(helper.make_node("Tanh", ["mean"], [ACTION_OUTPUT]))
    else:
        inputs.append(helper.make_tensor_value_info(NOISE_INPUT, TensorProto.FLOAT, ["batch", act_dim]))
        if actor.log_std_head is not None:  # SAC: tanh(mean + exp(log_std) * noise)
            weights += [
                _constant("log_std_low", np.array(LOG_STD_MIN)),
                _constant("log_std_high", np.array(LOG_STD_MAX)),
            ]
            nodes += [
                helper.make_node("Clip", ["log_std_raw", "log_std_low", "log_std_high"], ["log_std"]),
                helper.make_node("Exp", ["log_std"], ["std"]),
                helper.make_node("Mul", ["std", NOISE_INPUT], ["scaled_noise"]),
                helper.make_node("Add", ["mean", "scaled_noise"], ["pre_tanh"]),
                helper.make_node("Tanh", ["pre_tanh"], [ACTION_OUTPUT]),
            ]
        else:  # TD3: clip(tanh(mean) + sigma * noise, -1, 1)
            weights += [
                _constant("noise_scale", np.array(exploration_noise)),
                _constant("action_low", np.array(-1.0)),
                _constant("action_high", np.array(1.0)),
            ]
            nodes += [
                helper.make_node("Tanh", ["mean"], ["mean_action"]),
                helper.make_node("Mul", [NOISE_INPUT, "noise_scale"], ["scaled_noise"]),
                helper.make_node("Add", ["mean_action", "scaled_noise"], ["noisy_action"]),
                helper.make_node("Clip", ["noisy_action", "action_low", "action_high"], [ACTION_OUTPUT]),
            ]
    outputs = [helper.make_tensor_value_info(ACTION_OUTPUT, TensorProto.FLOAT, ["batch", act_dim])]
    graph = helper.make_graph(nodes, "rl_control_actor", inputs, outputs, initializer=weights)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="rl_control"
    )
    model.ir_version = 8
    helper.set_model_props(model, metadata)
    return model


def verify_export(
    model_bytes: bytes,
    actor: Actor,
    normalizer: RunningNormalizer,
    *,
    stochastic: bool,
    exploration_noise: float,
    samples: int = 64,
    seed: int = 0,
) -> float:
    """Check the model and compare onnxruntime with torch on random inputs; return the max abs error.

    Raises :class:`ExportError` if the checker fails or the error exceeds :data:`VERIFY_TOLERANCE`.
    """
    try:
        onnx.checker.check_model(onnx.load_from_string(model_bytes), full_check=True)
    except Exception as error:
        raise ExportError(f"exported policy fails onnx.checker: {error}") from error
    policy = OnnxPolicy.from_bytes(model_bytes)
    generator = np.random.default_rng(seed)
    obs_dim, act_dim = policy.obs_dim, policy.act_dim
    # Observations spread around the normalizer statistics, including some beyond the clip range.
    mean = normalizer.mean32.cpu().numpy() if normalizer.enabled else np.zeros(obs_dim, np.float32)
    scale = 1.0 / normalizer.inv_std32.cpu().numpy() if normalizer.enabled else np.ones(obs_dim, np.float32)
    obs = (mean + scale * generator.normal(0.0, 3.0, (samples, obs_dim))).astype(np.float32)
    noise = generator.standard_normal((samples, act_dim)).astype(np.float32)
    feeds = {OBS_INPUT: obs}
    if stochastic:
        feeds[NOISE_INPUT] = noise
    onnx_action = policy.session.run([ACTION_OUTPUT], feeds)[0]
    device = next(actor.parameters()).device
    with torch.no_grad():
        normalized = normalizer(torch.from_numpy(obs).to(device))
        if not stochastic:
            reference = actor.deterministic(normalized)
        elif actor.log_std_head is not None:
            mean_t, log_std = actor.distribution_params(normalized)
            reference = torch.tanh(mean_t + log_std.exp() * torch.from_numpy(noise).to(device))
        else:
            reference = (
                actor.deterministic(normalized) + exploration_noise * torch.from_numpy(noise).to(device)
            ).clamp(-1.0, 1.0)
    error = float(np.max(np.abs(onnx_action - reference.cpu().numpy())))
    if not np.isfinite(error) or error > VERIFY_TOLERANCE:
        raise ExportError(f"onnxruntime output differs from torch by {error:.3g} (> {VERIFY_TOLERANCE})")
    return error


class OnnxPolicy:
    """onnxruntime session for one rl_control policy, tuned for single-observation calls.

    ``policy(obs)`` is deterministic; ``policy(obs, noise)`` with ``noise ~ N(0, 1)`` explores
    (stochastic graphs only). Inputs and outputs are bound to preallocated buffers once, so a call
    copies the observation in, runs the graph and copies the action out.
    """

    def __init__(self, model_bytes: bytes, source: str = "<bytes>") -> None:
        try:
            model = onnx.load_from_string(model_bytes)
        except Exception as error:
            raise InvalidPolicyError(f"{source}: not a readable ONNX model ({error})") from error
        metadata = {prop.key: prop.value for prop in model.metadata_props}
        if metadata.get("format") != FORMAT:
            raise InvalidPolicyError(
                f"{source}: not an rl_control policy (metadata format={metadata.get('format')!r})"
            )
        inputs = {value.name: value for value in model.graph.input}
        outputs = [value.name for value in model.graph.output]
        stochastic = metadata.get("stochastic") == "true"
        expected_inputs = [OBS_INPUT, NOISE_INPUT] if stochastic else [OBS_INPUT]
        if sorted(inputs) != sorted(expected_inputs) or outputs != [ACTION_OUTPUT]:
            raise InvalidPolicyError(
                f"{source}: inputs {sorted(inputs)} / outputs {outputs} do not match the contract "
                f"(inputs {expected_inputs}, outputs [{ACTION_OUTPUT!r}])"
            )
        for value in [*model.graph.input, *model.graph.output]:
            if value.type.tensor_type.elem_type != TensorProto.FLOAT:
                raise InvalidPolicyError(f"{source}: {value.name!r} is not float32")
        try:
            obs_dim, act_dim = int(metadata["obs_dim"]), int(metadata["act_dim"])
            version = int(metadata.get("policy_version", "0"))
        except (KeyError, ValueError) as error:
            raise InvalidPolicyError(f"{source}: metadata lacks valid obs_dim/act_dim ({error})") from error
        if _static_dim(inputs[OBS_INPUT]) != obs_dim or _static_dim(model.graph.output[0]) != act_dim:
            raise InvalidPolicyError(f"{source}: tensor shapes disagree with metadata obs_dim/act_dim")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        except Exception as error:
            raise InvalidPolicyError(f"{source}: onnxruntime rejects the model ({error})") from error
        self.obs_dim = obs_dim
        self.act_dim = act_dim
        self.metadata = metadata
        self.version = version
        self.stochastic = stochastic
        self.joint_names: list[str] = json.loads(metadata.get("joint_names", "[]"))
        self._obs = np.zeros((1, obs_dim), np.float32)
        self._noise = np.zeros((1, act_dim), np.float32)
        self._action = np.zeros((1, act_dim), np.float32)
        self._binding = self.session.io_binding()
        self._bind(self._binding, OBS_INPUT, self._obs)
        if stochastic:
            self._bind(self._binding, NOISE_INPUT, self._noise)
        self._binding.bind_output(
            ACTION_OUTPUT, "cpu", 0, np.float32, list(self._action.shape), self._action.ctypes.data
        )

    @staticmethod
    def _bind(binding: ort.IOBinding, name: str, array: np.ndarray) -> None:
        binding.bind_input(name, "cpu", 0, np.float32, list(array.shape), array.ctypes.data)

    @classmethod
    def from_bytes(cls, data: bytes) -> OnnxPolicy:
        return cls(data)

    @classmethod
    def from_file(cls, path: Path | str) -> OnnxPolicy:
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as error:
            raise InvalidPolicyError(f"{path}: cannot read policy ({error})") from error
        return cls(data, source=str(path))

    def __call__(self, obs: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray:
        """Action ``[act_dim]`` in [-1, 1] for one observation; ``noise=None`` means deterministic."""
        if np.shape(obs) != self._obs.shape[1:]:
            raise ValueError(f"observation has shape {np.shape(obs)}, the policy expects ({self.obs_dim},)")
        self._obs[0] = obs
        if self.stochastic:
            if noise is None:
                self._noise.fill(0.0)
            elif np.shape(noise) != self._noise.shape[1:]:
                raise ValueError(f"noise has shape {np.shape(noise)}, the policy expects ({self.act_dim},)")
            else:
                self._noise[0] = noise
        elif noise is not None:
            raise ValueError("this policy was exported deterministic; it takes no noise input")
        self.session.run_with_iobinding(self._binding)
        action = self._action[0].copy()
        if not np.isfinite(action).all():
            raise ValueError("policy produced a non-finite action (non-finite observation or noise?)")
        return action


def _static_dim(value: onnx.ValueInfoProto) -> int:
    dims = value.type.tensor_type.shape.dim
    return dims[-1].dim_value if len(dims) == 2 else -1
