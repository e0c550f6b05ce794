"""ONNX export of the actor (the onnxruntime side is :mod:`rl_control.policy.runtime`).

Graph contract (opset :data:`OPSET`, all tensors float32, dynamic batch dimension ``batch``):

- deterministic graph: input ``obs [batch, obs_dim]`` -> output ``action [batch, act_dim]``
- stochastic graph: inputs ``obs [batch, obs_dim]``, ``noise [batch, act_dim]`` (standard normal)
  -> output ``action [batch, act_dim]``; zero noise gives the deterministic action.

The graph is a trace of the one action function :class:`~rl_control.learning.networks.Policy`
(observation normalization with frozen running statistics clipped at +-10, the actor, the squashing
into [-1, 1]), and the export check compares onnxruntime against that same function.

Metadata (``metadata_props``, all strings): ``format``, ``obs_dim``, ``act_dim``, ``joint_names``
(JSON list), ``policy_version``, ``preset``, ``algorithm``, ``stochastic`` (``"true"``/``"false"``),
``input_names`` and ``output_names`` (JSON lists), ``exploration_noise`` (TD3 noise std in action
units), ``observation_normalization`` (``"true"``/``"false"``), plus caller-supplied keys (the policy
contract, :mod:`rl_control.policy.contract`).
"""

from __future__ import annotations

import operator

import numpy as np
import onnx
import torch
import torch.fx
from onnx import TensorProto, helper, numpy_helper
from torch import Tensor
from torch.nn import functional

from rl_control.learning.networks import Actor, Policy, RunningNormalizer
from rl_control.policy.contract import normalization_metadata
from rl_control.policy.runtime import ACTION_OUTPUT, NOISE_INPUT, OBS_INPUT, OnnxPolicy

OPSET = 17
VERIFY_TOLERANCE = 1e-5


class ExportError(RuntimeError):
    """An exported graph failed verification (checker or onnxruntime-vs-torch comparison)."""


def _constant(name: str, array: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name)


# Torch operations of the traced action function and the ONNX operator each becomes.
_ONNX_OPS: dict[object, str] = {
    operator.add: "Add",
    operator.sub: "Sub",
    operator.mul: "Mul",
    operator.truediv: "Div",
    torch.tanh: "Tanh",
    torch.relu: "Relu",
    torch.exp: "Exp",
    functional.relu: "Relu",
    "add": "Add",
    "sub": "Sub",
    "mul": "Mul",
    "tanh": "Tanh",
    "relu": "Relu",
    "exp": "Exp",
}


class _Traced(str):
    """The ONNX name of a value that depends on the graph inputs (anything else is a constant)."""


class _GraphBuilder:
    """Turns a torch.fx trace of :class:`Policy` into ONNX nodes; constant subexpressions are folded."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module
        self.nodes: list[onnx.NodeProto] = []
        self.weights: list[TensorProto] = []
        self.values: dict[str, object] = {}

    def build(self, graph: torch.fx.Graph, stochastic: bool) -> None:
        for node in graph.nodes:
            if node.op == "placeholder":
                is_obs = node.name.startswith(OBS_INPUT)
                self.values[node.name] = (
                    _Traced(OBS_INPUT) if is_obs else (_Traced(NOISE_INPUT) if stochastic else None)
                )
            elif node.op == "get_attr":
                owner, _, name = str(node.target).rpartition(".")
                self.values[node.name] = getattr(self.module.get_submodule(owner), name)
            elif node.op == "output":
                self._emit("Identity", [self._value(self.values[node.args[0].name])], ACTION_OUTPUT)
            else:
                self._operation(node)

    def _operation(self, node: torch.fx.Node) -> None:
        args = [self.values.get(arg.name) if isinstance(arg, torch.fx.Node) else arg for arg in node.args]
        kwargs = {
            key: self.values.get(arg.name) if isinstance(arg, torch.fx.Node) else arg
            for key, arg in node.kwargs.items()
        }
        if not any(isinstance(value, _Traced) for value in [*args, *kwargs.values()]):
            self.values[node.name] = self._evaluate(node, args, kwargs)  # constant folding
            return
        if node.op == "call_module":
            submodule = self.module.get_submodule(str(node.target))
            if isinstance(submodule, torch.nn.Linear):
                weight = self._constant(f"{node.name}_weight", submodule.weight.detach().T)
                bias = self._constant(f"{node.name}_bias", submodule.bias.detach())
                self._emit("MatMul", [self._value(args[0]), weight], f"{node.name}_matmul")
                self._emit("Add", [f"{node.name}_matmul", bias], node.name)
                return
            if isinstance(submodule, torch.nn.ReLU):
                self._emit("Relu", [self._value(args[0])], node.name)
                return
            raise ExportError(f"cannot export module {type(submodule).__name__} ({node.target})")
        target = node.target
        if target in ("clamp", torch.clamp):
            low = kwargs.get("min", args[1] if len(args) > 1 else None)
            high = kwargs.get("max", args[2] if len(args) > 2 else None)
            inputs = [self._value(args[0]), self._value(low), self._value(high)]
            self._emit("Clip", inputs, node.name)
            return
        if target not in _ONNX_OPS:
            raise ExportError(f"cannot export operation {target!r} of the action function")
        self._emit(_ONNX_OPS[target], [self._value(arg) for arg in args], node.name)

    def _evaluate(self, node: torch.fx.Node, args: list, kwargs: dict) -> object:
        with torch.no_grad():
            if node.op == "call_module":
                return self.module.get_submodule(str(node.target))(*args, **kwargs)
            if node.op == "call_method":
                return getattr(args[0], str(node.target))(*args[1:], **kwargs)
            return node.target(*args, **kwargs)  # type: ignore[operator]

    def _value(self, value: object) -> str:
        """ONNX name of a traced value, a constant tensor or a Python number (as an initializer)."""
        if isinstance(value, _Traced):
            return value
        if isinstance(value, Tensor | int | float):
            return self._constant(f"const_{len(self.weights)}", torch.as_tensor(value).detach())
        raise ExportError(f"cannot export the value {value!r} of the action function")

    def _constant(self, name: str, tensor: Tensor) -> _Traced:
        self.weights.append(_constant(name, tensor.detach().float().cpu().numpy()))
        return _Traced(name)

    def _emit(self, op: str, inputs: list[str], output: str) -> None:
        self.nodes.append(helper.make_node(op, inputs, [output], name=output))
        self.values[output] = _Traced(output)


def build_actor_graph(
    actor: Actor,
    normalizer: RunningNormalizer,
    *,
    stochastic: bool,
    exploration_noise: float,
    metadata: dict[str, str],
) -> onnx.ModelProto:
    """Trace the action function :class:`Policy` ``act(obs, noise)`` into an ONNX model with ``metadata``.

    The deterministic graph is the trace with ``noise=None``. Batch-renormalized layers are exported
    with their running statistics (evaluation mode).
    """
    policy = Policy(actor, normalizer, exploration_noise)
    first_layer = next((m for m in actor.trunk if isinstance(m, torch.nn.Linear)), actor.mean_head)
    obs_dim = first_layer.in_features
    act_dim = actor.mean_head.out_features
    was_training = actor.training
    actor.eval()
    try:
        concrete = {} if stochastic else {NOISE_INPUT: None}
        traced = torch.fx.symbolic_trace(policy, concrete_args=concrete)
        builder = _GraphBuilder(policy)
        builder.build(traced.graph, stochastic)
    finally:
        actor.train(was_training)
    inputs = [helper.make_tensor_value_info(OBS_INPUT, TensorProto.FLOAT, ["batch", obs_dim])]
    if stochastic:
        inputs.append(helper.make_tensor_value_info(NOISE_INPUT, TensorProto.FLOAT, ["batch", act_dim]))
    outputs = [helper.make_tensor_value_info(ACTION_OUTPUT, TensorProto.FLOAT, ["batch", act_dim])]
    graph = helper.make_graph(builder.nodes, "rl_control_actor", inputs, outputs, initializer=builder.weights)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="rl_control"
    )
    model.ir_version = 8
    helper.set_model_props(model, {**metadata, **normalization_metadata(normalizer.enabled)})
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
    """Check the model and compare onnxruntime with the torch action function; return the max abs error.

    Raises :class:`ExportError` if the checker fails or the error exceeds :data:`VERIFY_TOLERANCE`.
    """
    try:
        onnx.checker.check_model(onnx.load_from_string(model_bytes), full_check=True)
    except Exception as exc:
        raise ExportError(f"exported policy fails onnx.checker: {exc}") from exc
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
    was_training = actor.training
    actor.eval()
    try:
        with torch.no_grad():
            torch_noise = torch.from_numpy(noise).to(device) if stochastic else None
            reference = Policy(actor, normalizer, exploration_noise)(
                torch.from_numpy(obs).to(device), torch_noise
            )
    finally:
        actor.train(was_training)
    error = float(np.max(np.abs(onnx_action - reference.cpu().numpy())))
    if not np.isfinite(error) or error > VERIFY_TOLERANCE:
        raise ExportError(f"onnxruntime output differs from torch by {error:.3g} (> {VERIFY_TOLERANCE})")
    return error
