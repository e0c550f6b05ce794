"""A small in-process ROS client with its own context, for tests and benchmarks that talk to nodes."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import numpy as np
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.qos import QoSProfile


def command_rows(received: list[tuple[float, Any]], since: float = 0.0) -> np.ndarray:
    """The ``data`` of the commands (``Float64MultiArray``) in a :meth:`RosProbe.collect` list received at
    or after ``since``, one row each."""
    return np.array([list(msg.data) for t, msg in received if t >= since])


class RosProbe:
    """Subscribe, publish and call services from a private rclpy context (never the global one)."""

    def __init__(self, name: str = "rl_control_probe") -> None:
        self.context = Context()
        self.context.init()
        self.node = Node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def collect(self, msg_type: Any, topic: str, qos: QoSProfile) -> list[tuple[float, Any]]:
        """Subscribe to ``topic``; the returned list fills with ``(monotonic receipt time, message)``."""
        received: list[tuple[float, Any]] = []
        self.node.create_subscription(
            msg_type, topic, lambda msg: received.append((time.monotonic(), msg)), qos
        )
        return received

    def publisher(self, msg_type: Any, topic: str, qos: QoSProfile) -> Publisher:
        return self.node.create_publisher(msg_type, topic, qos)

    def spin_for(self, seconds: float) -> None:
        """Process callbacks for ``seconds``."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            self.executor.spin_once(timeout_sec=min(remaining, 0.05))

    def spin_until(self, condition: Callable[[], bool], timeout_s: float) -> bool:
        """Process callbacks until ``condition()`` holds; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while not condition():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.executor.spin_once(timeout_sec=min(remaining, 0.05))
        return True

    def call(self, srv_type: Any, name: str, request: Any, timeout_s: float = 10.0) -> Any:
        """Call a service and return its response; ``TimeoutError`` naming the service otherwise."""
        client: Any = self.node.create_client(srv_type, name)
        try:
            if not self.spin_until(client.service_is_ready, timeout_s):
                raise TimeoutError(f"service {name} not available after {timeout_s} s")
            future = client.call_async(request)
            if not self.spin_until(future.done, timeout_s):
                raise TimeoutError(f"service {name} did not answer within {timeout_s} s")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()

    def __enter__(self) -> RosProbe:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
