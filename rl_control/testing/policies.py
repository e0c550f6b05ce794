"""Hand-built ONNX policies with a known behaviour or failure, for node tests and fault scenarios.

Each is a real ONNX graph in the rl_control policy format that onnxruntime runs like an exported policy
(the failing ones: pendulum, observation 3, action 1, joint ``hinge``); no torch needed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from types import TracebackType

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from rl_control.policy.runtime import FORMAT

#: The fault: a policy taking 120 ms per call (at 50 Hz the loop fell to 10 Hz).
SLOW_CALL_S = 0.12


def graph_policy(
    action: float, *, version: int, nan_when: str = "", matmul_size: int = 0, pad_bytes: int = 0
) -> bytes:
    """A deterministic pendulum policy (obs 3, act 1) returning ``action``, built as an ONNX graph.

    ``nan_when="nonzero"``: NaN for every observation but the zero one; ``"fast"``: NaN once the joint
    velocity (obs[2]) exceeds 5 rad/s. ``matmul_size=N`` adds an N x N matrix product computed from the
    observation on every call (slow); ``pad_bytes`` adds an unused initializer (a large message).
    """
    nodes = [
        helper.make_node("ReduceSum", ["obs"], ["obs_sum"], keepdims=1),  # [batch, 1]
        helper.make_node("Mul", ["obs_sum", "zero"], ["zero_from_obs"]),
    ]
    weights = [
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.array([action], np.float32), "bias"),
    ]
    term = "zero_from_obs"
    if nan_when == "nonzero":  # sqrt(-|sum(obs)|)
        nodes += [
            helper.make_node("Abs", ["obs_sum"], ["obs_abs"]),
            helper.make_node("Neg", ["obs_abs"], ["obs_neg"]),
            helper.make_node("Sqrt", ["obs_neg"], ["term"]),
        ]
        term = "term"
    elif nan_when == "fast":  # sqrt(-relu(velocity - 5))
        weights += [
            numpy_helper.from_array(np.array([2], np.int64), "start"),
            numpy_helper.from_array(np.array([3], np.int64), "end"),
            numpy_helper.from_array(np.array([1], np.int64), "axis"),
            numpy_helper.from_array(np.array(5.0, np.float32), "limit"),
        ]
        nodes += [
            helper.make_node("Slice", ["obs", "start", "end", "axis"], ["velocity"]),
            helper.make_node("Sub", ["velocity", "limit"], ["excess"]),
            helper.make_node("Relu", ["excess"], ["excess_pos"]),
            helper.make_node("Neg", ["excess_pos"], ["excess_neg"]),
            helper.make_node("Sqrt", ["excess_neg"], ["term"]),
        ]
        term = "term"
    if matmul_size:
        weights += [
            numpy_helper.from_array(np.array(1e-3, np.float32), "small"),
            numpy_helper.from_array(np.array([matmul_size, matmul_size], np.int64), "square"),
        ]
        nodes += [
            helper.make_node("ReduceSum", ["obs"], ["all_sum"], keepdims=0),
            helper.make_node("Mul", ["all_sum", "zero"], ["all_zero"]),
            helper.make_node("Add", ["all_zero", "small"], ["fill"]),
            helper.make_node("Expand", ["fill", "square"], ["matrix"]),
            helper.make_node("MatMul", ["matrix", "matrix"], ["product"]),
            helper.make_node("ReduceSum", ["product"], ["product_sum"], keepdims=0),
            helper.make_node("Mul", ["product_sum", "zero"], ["product_zero"]),
            helper.make_node("Add", [term, "product_zero"], ["slow_term"]),
        ]
        term = "slow_term"
    if pad_bytes:
        weights.append(numpy_helper.from_array(np.ones(pad_bytes // 4, np.float32), "padding"))
    nodes.append(helper.make_node("Add", [term, "bias"], ["action"]))
    graph = helper.make_graph(
        nodes,
        "test_policy",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("action", TensorProto.FLOAT, ["batch", 1])],
        initializer=weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    metadata = {"format": FORMAT, "obs_dim": "3", "act_dim": "1", "policy_version": str(version)}
    helper.set_model_props(model, {**metadata, "stochastic": "false", "joint_names": '["hinge"]'})
    return model.SerializeToString()


def linear_policy(weights: np.ndarray, *, version: int, joint_names: list[str] | None = None) -> bytes:
    """A deterministic policy ``action = obs @ weights`` (``weights``: ``[obs_dim, act_dim]``) as ONNX.

    E.g. a policy echoing part of its observation into its action, so a test reads what the actor observed
    from the command it publishes.
    """
    obs_dim, act_dim = weights.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["obs", "weights"], ["action"])],
        "linear_policy",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", obs_dim])],
        [helper.make_tensor_value_info("action", TensorProto.FLOAT, ["batch", act_dim])],
        initializer=[numpy_helper.from_array(weights.astype(np.float32), "weights")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    metadata = {
        "format": FORMAT,
        "obs_dim": str(obs_dim),
        "act_dim": str(act_dim),
        "policy_version": str(version),
        "stochastic": "false",
        "joint_names": json.dumps(joint_names or []),
    }
    helper.set_model_props(model, metadata)
    return model.SerializeToString()


def slow_policy(version: int) -> tuple[bytes, float]:
    """A policy whose every call takes at least :data:`SLOW_CALL_S` here (calibrated), and that time."""
    size = 600
    while True:
        data = graph_policy(0.1, version=version, matmul_size=size)
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        obs = np.ones((1, 3), np.float32)
        start = time.perf_counter()
        session.run(None, {"obs": obs})
        elapsed = time.perf_counter() - start
        if elapsed >= SLOW_CALL_S:
            return data, elapsed
        size = int(size * 1.3)


_HUGE_PUBLISHER = """
import array, os, sys, time
import rclpy
from std_msgs.msg import MultiArrayDimension, UInt8MultiArray
from rl_control.ros.messages import POLICY_QOS, POLICY_TOPIC
size, hold_s = int(sys.argv[1]), float(sys.argv[2])
os.nice(19)
rclpy.init()
node = rclpy.create_node("huge_policy_publisher")
publisher = node.create_publisher(UInt8MultiArray, POLICY_TOPIC, POLICY_QOS)
msg = UInt8MultiArray()
msg.layout.dim = [MultiArrayDimension(label="onnx:version=77", size=size, stride=1)]
msg.data = array.array("B", bytes(size))
time.sleep(2.0)  # discovery
publisher.publish(msg)
print("published", time.monotonic(), flush=True)
time.sleep(hold_s)
"""


class HugePolicyPublisher:
    """A child process that publishes one ``size``-byte (not ONNX) policy message after 2 s of discovery.

    A process of its own at the lowest priority: it stands for a sender on another machine, so neither its
    serialization nor its sending takes CPU time from the actor or the process measuring the actor's
    commands on a 2-core machine (the receiving side is what is measured). Use as a context manager;
    :meth:`published_at` is the publish time (``time.monotonic``, the same clock in every process).
    """

    def __init__(self, size: int, hold_s: float = 10.0) -> None:
        self.size = size
        self.hold_s = hold_s
        self._process: subprocess.Popen[str] | None = None
        self._output = ""

    def __enter__(self) -> HugePolicyPublisher:
        self._process = subprocess.Popen(
            [sys.executable, "-c", _HUGE_PUBLISHER, str(self.size), str(self.hold_s)],
            stdout=subprocess.PIPE,
            text=True,
        )
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._process is not None:
            self._process.kill()
            self._output = self._process.communicate()[0]

    def published_at(self) -> float:
        """When the message was published (after the context exited); ValueError if it never was."""
        for line in self._output.splitlines():
            if line.startswith("published "):
                return float(line.split()[1])
        raise ValueError(f"the {self.size}-byte policy message was never published: {self._output!r}")
