"""Helpers shared by the rl_control nodes: startup/config loading, signal handling, diagnostics."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.clock import Clock, ClockType
from rclpy.executors import Executor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from rl_control.config.errors import ConfigError
from rl_control.ros.messages import DIAGNOSTICS_QOS, DIAGNOSTICS_TOPIC
from rl_control.ros.node_parameters import SchemaParameters

logger = logging.getLogger(__name__)

OK = 0
WARN = 1
ERROR = 2
_LEVEL_BYTES = {OK: DiagnosticStatus.OK, WARN: DiagnosticStatus.WARN, ERROR: DiagnosticStatus.ERROR}


@dataclass
class Status:
    """One diagnostic status: severity (OK/WARN/ERROR), a one-line message and key/value figures."""

    level: int = OK
    message: str = "ok"
    values: dict[str, Any] = field(default_factory=dict)


def format_value(value: Any) -> str:
    """Render a diagnostic value compactly (floats with 4 significant digits)."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value)


class DiagnosticsPublisher:
    """Publishes ``/diagnostics`` at a fixed wall-clock period from a ``collect()`` callback."""

    def __init__(
        self,
        node: Node,
        collect: Callable[[], Status | Iterable[tuple[str, Status]]],
        *,
        period_s: float = 1.0,
        hardware_id: str = "",
    ) -> None:
        self._node = node
        self._collect = collect
        self._hardware_id = hardware_id
        self._publisher = node.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, DIAGNOSTICS_QOS)
        self._timer = node.create_timer(period_s, self.publish, clock=Clock(clock_type=ClockType.STEADY_TIME))

    def build(self) -> DiagnosticArray:
        """Collect the current statuses into a message (names prefixed by the namespaced node name)."""
        collected = self._collect()
        named = [("", collected)] if isinstance(collected, Status) else list(collected)
        msg = DiagnosticArray()
        msg.header.stamp = self._node.get_clock().now().to_msg()
        for suffix, status in named:
            entry = DiagnosticStatus()
            entry.level = _LEVEL_BYTES[status.level]
            # the node's name with its namespace (robot1/actor_node): robots of one graph stay apart
            name = self._node.get_fully_qualified_name().lstrip("/")
            entry.name = f"{name}{': ' + suffix if suffix else ''}"
            entry.message = status.message
            entry.hardware_id = self._hardware_id
            entry.values = [KeyValue(key=str(k), value=format_value(v)) for k, v in status.values.items()]
            msg.status.append(entry)
        return msg

    def publish(self) -> None:
        """Collect and publish one diagnostics message."""
        try:
            msg = self.build()
        except Exception:  # a diagnostics bug must never take the node down
            logger.exception("collecting diagnostics failed")
            return
        self._publisher.publish(msg)


class RateMeter:
    """Counts events and reports their rate over the time since the last ``rate()`` call."""

    def __init__(self) -> None:
        self._count = 0
        self._total = 0
        self._since = time.monotonic()

    def tick(self, n: int = 1) -> None:
        self._count += n
        self._total += n

    @property
    def total(self) -> int:
        return self._total

    def rate(self) -> float:
        """Events per second since the previous call; resets the window."""
        now = time.monotonic()
        elapsed = max(now - self._since, 1e-9)
        value = self._count / elapsed
        self._count = 0
        self._since = now
        return value


class ThrottledLog:
    """Log a repeated problem at most once per ``period_s`` with the number of occurrences."""

    def __init__(self, log: Callable[[str], Any], period_s: float = 2.0) -> None:
        self._log = log
        self._period_s = period_s
        self._last = -float("inf")
        self._suppressed = 0

    def __call__(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last >= self._period_s:
            extra = f" ({self._suppressed} similar messages suppressed)" if self._suppressed else ""
            self._log(message + extra)
            self._last = now
            self._suppressed = 0
        else:
            self._suppressed += 1


class NodeApp(Protocol):
    """What a node's application object provides to :func:`run_node`."""

    @property
    def fatal_error(self) -> str | None:
        """Set (to a message) by a worker thread that died; :func:`run_node` then exits with code 1."""

    def shutdown(self) -> None:
        """Stop threads and persist state; called once, before the node is destroyed."""


#: an executor turn's longest wait for work: how soon a node's spin loop sees a stop request
SPIN_TIMEOUT_S = 0.05


def run_node(
    node_name: str,
    build_app: Callable[[Node, Any], NodeApp],
    args: list[str] | None = None,
    *,
    spin_timeout_s: float | Callable[[Any], float] = SPIN_TIMEOUT_S,
    executor_factory: Callable[[], Executor] = SingleThreadedExecutor,
    node_factory: Callable[..., Node] = Node,
) -> int:
    """Run one rl_control node until SIGINT/SIGTERM; returns the process exit code.

    Creates the node, validates its parameter overrides (``--params-file``, ``-p``) with
    :func:`rl_control.config.config_from_node`, declares every parameter of the node from the schema
    (:class:`~rl_control.ros.node_parameters.SchemaParameters`), builds the application with
    ``build_app(node, config)``, spins (an executor from ``executor_factory``, waiting at most
    ``spin_timeout_s`` per turn, or what it returns for the config; the node from ``node_factory``, e.g. a
    lifecycle node), and calls ``app.shutdown()`` on a signal. Config and setup errors give exit code 2
    with a clear message on stderr.
    """
    from rl_control.config import config_from_node

    logging.basicConfig(level=logging.INFO, format=f"[{node_name}] %(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv if args is None else args)
    from rl_control.config.schema import params_file_from_argv

    params_file = params_file_from_argv(argv)
    if params_file is not None and not Path(params_file).is_file():
        print(f"{node_name}: configuration error: {params_file}: config file not found", file=sys.stderr)
        return 2
    try:
        rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
    except RuntimeError as exc:  # rcl's RCLError, e.g. a parameter file ROS cannot parse
        print(f"{node_name}: cannot start ROS: {exc}", file=sys.stderr, flush=True)
        return 2
    stop = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    node: Node | None = None
    app: NodeApp | None = None
    try:
        node = node_factory(node_name)
        try:
            config = config_from_node(node, node_name, argv)  # its section, whatever its namespace or name
            # declares every parameter with its descriptor
            SchemaParameters(node, config, file=params_file, section=node_name)
            app = build_app(node, config)
        except (ConfigError, ValueError, OSError) as exc:  # OSError: e.g. run_dir exists and resume false
            print(f"{node_name}: configuration error: {exc}", file=sys.stderr, flush=True)
            return 2
        executor = executor_factory()
        executor.add_node(node)
        timeout_s = spin_timeout_s(config) if callable(spin_timeout_s) else spin_timeout_s
        node.get_logger().info(f"{node_name} running")
        while not stop.is_set() and rclpy.ok() and app.fatal_error is None:
            executor.spin_once(timeout_sec=timeout_s)
        if app.fatal_error is not None:
            print(f"{node_name}: {app.fatal_error}", file=sys.stderr, flush=True)
            return 1
        node.get_logger().info(f"{node_name} shutting down")
        return 0
    finally:
        if app is not None:
            app.shutdown()
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
