"""``rl-control launch``: start a node graph as processes without a ROS 2 distro.

Same nodes, names and parameters as ``launch/*.launch.py`` (both read :mod:`rl_control.graph`). Each
node runs as ``python -m rl_control.ros.<node> --ros-args -r __node:=<name> --params-file CONFIG -p ...``;
its output is streamed with a ``[name]`` prefix. Ctrl-C (or SIGTERM) stops every node cleanly; a node
that dies is reported, respawned when its spec says so (the learner resumes from its run directory),
and otherwise brings the graph down with a non-zero exit status.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from rl_control.config import ExperimentConfig, SharedConfig, load_experiment, parse_experiment
from rl_control.graph import NodeSpec, get_graph, graph_nodes, parameter_overrides

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 15.0


def resolved_config(
    config_file: Path, graph: str, node_overrides: dict[str, dict[str, str]]
) -> ExperimentConfig:
    """Validate ``config_file`` with the overrides each node will get; ConfigError before anything starts."""
    load_experiment(config_file)  # file-level errors first, with the file's own wording
    document = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
    shared_keys = {f.name for f in dataclasses.fields(SharedConfig)}
    for node, overrides in node_overrides.items():
        for key, value in overrides.items():
            section = "/**" if key in shared_keys else node
            document.setdefault(section, {"ros__parameters": {}})
            document[section].setdefault("ros__parameters", {})[key] = value
    return parse_experiment(document, file=str(config_file), base_dir=config_file.parent.resolve())


def write_overrides(directory: Path, spec: NodeSpec, overrides: dict[str, str]) -> Path | None:
    """A parameter file holding ``overrides`` under the node's own name, or None when there are none.

    ROS 2 lets a node-specific entry beat ``/**`` and ``-p`` whatever their order, and a later file's entry
    for the same node beat an earlier one; so overrides go in a second file, keyed by node name (what
    launch_ros does with the dict parameters of the launch files).
    """
    if not overrides:
        return None
    path = directory / f"{spec.name}_overrides.yaml"
    path.write_text(yaml.safe_dump({spec.name: {"ros__parameters": overrides}}), encoding="utf-8")
    return path


def node_command(spec: NodeSpec, config_file: Path, override_file: Path | None = None) -> list[str]:
    """The command line that runs one node."""
    command = [
        sys.executable,
        "-m",
        spec.module,
        "--ros-args",
        "-r",
        f"__node:={spec.name}",
        "--params-file",
        str(config_file),
    ]
    if override_file is not None:
        command += ["--params-file", str(override_file)]
    return command


@dataclass
class ManagedNode:
    """A node process and what the launcher knows of it."""

    spec: NodeSpec
    command: list[str]
    process: subprocess.Popen[str] | None = None
    restarts: int = 0
    reader: threading.Thread | None = field(default=None, repr=False)


class GraphProcesses:
    """Start, watch, respawn and stop the processes of a graph."""

    def __init__(
        self, nodes: list[ManagedNode], emit: Callable[[str, str], None], env: dict[str, str] | None = None
    ) -> None:
        self.nodes = nodes
        self.emit = emit
        self.env = dict(os.environ if env is None else env)
        self.env["PYTHONUNBUFFERED"] = "1"
        self.failed: str | None = None

    def start(self) -> None:
        for node in self.nodes:
            self._spawn(node)

    def _spawn(self, node: ManagedNode) -> None:
        node.process = subprocess.Popen(
            node.command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            env=self.env,
            start_new_session=True,  # Ctrl-C reaches the launcher only; it stops the nodes
        )
        node.reader = threading.Thread(target=self._pump, args=(node, node.process), daemon=True)
        node.reader.start()
        log.info("started %s (pid %d)", node.spec.name, node.process.pid)

    def _pump(self, node: ManagedNode, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.emit(node.spec.name, line.rstrip("\n"))

    def poll(self) -> None:
        """Handle nodes that exited: respawn or record the failure."""
        for node in self.nodes:
            assert node.process is not None
            code = node.process.poll()
            if code is None:
                continue
            if node.reader is not None:
                node.reader.join(timeout=1.0)
            if node.spec.respawn:
                node.restarts += 1
                log.warning(
                    "%s exited with status %s; respawning in %.1f s (restart %d)",
                    node.spec.name,
                    code,
                    node.spec.respawn_delay_s,
                    node.restarts,
                )
                time.sleep(node.spec.respawn_delay_s)
                self._spawn(node)
            elif self.failed is None:
                self.failed = f"{node.spec.name} exited with status {code}"
                log.error("node %s died (exit status %s): stopping the graph", node.spec.name, code)

    def stop(self) -> None:
        """SIGINT every node (they checkpoint and exit), then escalate to SIGTERM and SIGKILL."""
        for sig, grace in ((signal.SIGINT, STOP_TIMEOUT_S), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            alive = [n for n in self.nodes if n.process is not None and n.process.poll() is None]
            if not alive:
                break
            for node in alive:
                assert node.process is not None
                node.process.send_signal(sig)
            deadline = time.monotonic() + grace
            for node in alive:
                assert node.process is not None
                try:
                    node.process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.warning("%s did not stop on %s", node.spec.name, signal.Signals(sig).name)
        for node in self.nodes:
            if node.reader is not None:
                node.reader.join(timeout=2.0)


def run_launch(
    config_file: Path,
    *,
    graph: str = "sim_train",
    with_sim: bool = True,
    max_minutes: float = 15.0,
    progress: bool = True,
    stop_on_success: bool = True,
    task: str = "",
    sim_mode: str = "",
    policy_file: str = "",
) -> int:
    """Run ``graph`` with ``config_file`` until Ctrl-C, success, a dead node or ``max_minutes``.

    For training graphs, the final policy is exported to ``<run_dir>/policy.onnx`` and evaluated
    deterministically in simulation. Returns the exit status.
    """
    from rl_control.ros.launch_monitor import TrainingMonitor

    # DDS discovery stays on this machine (the launcher's own monitor node too) unless the user set otherwise.
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

    specs = graph_nodes(graph, with_sim=with_sim)
    overrides = {
        spec.name: parameter_overrides(
            graph, spec, task=task, sim_mode=sim_mode, policy_file=policy_file, with_sim=with_sim
        )
        for spec in specs
    }
    config = resolved_config(config_file, graph, overrides)
    override_dir = Path(tempfile.mkdtemp(prefix="rl_control_launch_"))
    nodes = [
        ManagedNode(
            spec, node_command(spec, config_file, write_overrides(override_dir, spec, overrides[spec.name]))
        )
        for spec in specs
    ]
    monitor = TrainingMonitor(config, graph=get_graph(graph).name, live=progress)
    processes = GraphProcesses(nodes, emit=monitor.node_output)

    stop_requested = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop_requested.set())
    deadline = time.monotonic() + max_minutes * 60.0
    reason = "time limit reached"
    monitor.start()
    processes.start()
    try:
        while not stop_requested.is_set():
            processes.poll()
            if processes.failed:
                reason = processes.failed
                break
            if stop_on_success and monitor.succeeded:
                reason = "success threshold reached"
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        else:
            reason = "stop requested"
    except KeyboardInterrupt:
        reason = "interrupted"
    finally:
        signal.signal(signal.SIGTERM, previous)
        log.info("stopping the graph: %s", reason)
        processes.stop()
        monitor.stop()
        shutil.rmtree(override_dir, ignore_errors=True)
    status = 1 if processes.failed else 0
    if "learner_node" in {spec.name for spec in specs}:
        status = max(status, monitor.finish(Path(config.shared.run_dir), reason))
    return status
