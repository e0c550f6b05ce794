"""The onnxruntime session of one exported rl_control policy, tuned for single-observation calls.

Only onnxruntime and numpy are imported: the actor process loads this, never torch (the export side lives in
:mod:`rl_control.learning.onnx_policy`). The graph contract checked here (format tag, input/output names,
float32 tensors, ``obs_dim``/``act_dim`` metadata matching the tensor shapes) is the one the export writes:

- deterministic graph: input ``obs [batch, obs_dim]`` -> output ``action [batch, act_dim]``;
- stochastic graph: inputs ``obs``, ``noise [batch, act_dim]`` (standard normal) -> ``action``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort

FORMAT = "rl_control.policy.v1"
OBS_INPUT = "obs"
NOISE_INPUT = "noise"
ACTION_OUTPUT = "action"
FLOAT_TENSOR = "tensor(float)"


class InvalidPolicyError(ValueError):
    """ONNX bytes that are corrupt or do not follow the rl_control policy contract."""


class Policy(Protocol):
    """What the actor needs from a policy (:class:`OnnxPolicy` satisfies it; tests use small fakes)."""

    obs_dim: int
    act_dim: int
    version: int
    stochastic: bool

    def __call__(self, obs: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray: ...


def _session_options() -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def _last_dim(arg: Any) -> int:
    """The static last dimension of a ``[batch, n]`` tensor, -1 if it is not one."""
    shape = arg.shape
    return shape[-1] if len(shape) == 2 and isinstance(shape[-1], int) else -1


class OnnxPolicy:
    """onnxruntime session for one rl_control policy, tuned for single-observation calls.

    ``policy(obs)`` is deterministic; ``policy(obs, noise)`` with ``noise ~ N(0, 1)`` explores
    (stochastic graphs only). Inputs and outputs are bound to preallocated buffers once, so a call
    copies the observation in, runs the graph and copies the action out.
    """

    def __init__(self, model_bytes: bytes, source: str = "<bytes>") -> None:
        try:
            self.session = ort.InferenceSession(
                model_bytes, _session_options(), providers=["CPUExecutionProvider"]
            )
        except Exception as error:
            raise InvalidPolicyError(f"{source}: not a readable ONNX model ({error})") from error
        metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        if metadata.get("format") != FORMAT:
            raise InvalidPolicyError(
                f"{source}: not an rl_control policy (metadata format={metadata.get('format')!r})"
            )
        inputs = {arg.name: arg for arg in self.session.get_inputs()}
        outputs = self.session.get_outputs()
        stochastic = metadata.get("stochastic") == "true"
        expected_inputs = [OBS_INPUT, NOISE_INPUT] if stochastic else [OBS_INPUT]
        output_names = [arg.name for arg in outputs]
        if sorted(inputs) != sorted(expected_inputs) or output_names != [ACTION_OUTPUT]:
            raise InvalidPolicyError(
                f"{source}: inputs {sorted(inputs)} / outputs {output_names} do not match the contract "
                f" (inputs {expected_inputs}, outputs [{ACTION_OUTPUT!r}])"
            )
        for arg in [*inputs.values(), *outputs]:
            if arg.type != FLOAT_TENSOR:
                raise InvalidPolicyError(f"{source}: {arg.name!r} is not float32")
        try:
            obs_dim, act_dim = int(metadata["obs_dim"]), int(metadata["act_dim"])
            version = int(metadata.get("policy_version", "0"))
            joint_names = [str(name) for name in json.loads(metadata.get("joint_names", "[]"))]
        except (KeyError, ValueError, TypeError) as error:
            raise InvalidPolicyError(f"{source}: metadata lacks valid obs_dim/act_dim ({error})") from error
        if _last_dim(inputs[OBS_INPUT]) != obs_dim or _last_dim(outputs[0]) != act_dim:
            raise InvalidPolicyError(f"{source}: tensor shapes disagree with metadata obs_dim/act_dim")
        self.obs_dim = obs_dim
        self.act_dim = act_dim
        self.metadata = metadata
        self.version = version
        self.stochastic = stochastic
        self.joint_names = joint_names
        self._obs = np.zeros((1, obs_dim), np.float32)
        self._noise = np.zeros((1, act_dim), np.float32)
        self._action = np.zeros((1, act_dim), np.float32)
        self._binding = self.session.io_binding()
        self._bind(OBS_INPUT, self._obs)
        if stochastic:
            self._bind(NOISE_INPUT, self._noise)
        self._binding.bind_output(
            ACTION_OUTPUT, "cpu", 0, np.float32, list(self._action.shape), self._action.ctypes.data
        )

    def _bind(self, name: str, array: np.ndarray) -> None:
        self._binding.bind_input(name, "cpu", 0, np.float32, list(array.shape), array.ctypes.data)

    @classmethod
    def from_bytes(cls, data: bytes) -> OnnxPolicy:
        """A policy from ONNX bytes (e.g. a policy message); raises :class:`InvalidPolicyError`."""
        return cls(data)

    @classmethod
    def from_file(cls, path: Path | str) -> OnnxPolicy:
        """A policy from an ONNX file; raises :class:`InvalidPolicyError` naming the file."""
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
