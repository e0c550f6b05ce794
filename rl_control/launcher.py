"""``rl-control launch``: start a node graph as processes without a ROS 2 distro.

Same nodes, names, namespaces and parameters as ``launch/*.launch.py`` (both read :mod:`rl_control.graph`).
Each node runs as ``python -m rl_control.ros.<node> --ros-args -r __node:=<name> [-r __ns:=<namespace>]
[-r <from>:=<to> ...] --params-file CONFIG --params-file OVERRIDES``; its output is streamed with a
``[namespace/name]`` prefix. Ctrl-C (or SIGTERM) stops every node cleanly; a node
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
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rl_control.config import ExperimentConfig, SharedConfig, load_experiment, parse_experiment
from rl_control.config.yaml_file import load_yaml_file
from rl_control.graph import (
    ROBOT_GRAPHS,
    SIM_NODE,
    GraphNode,
    NodeSpec,
    get_graph,
    graph_layout,
    layout_overrides,
)

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 15.0


def resolved_config(
    config_file: Path, graph: str, node_overrides: dict[str, dict[str, Any]]
) -> ExperimentConfig:
    """Validate ``config_file`` with the overrides each node will get; ConfigError before anything starts."""
    load_experiment(config_file)  # file-level errors first, with the file's own wording
    document = load_yaml_file(config_file) or {}
    shared_keys = {f.name for f in dataclasses.fields(SharedConfig)}
    for node, overrides in node_overrides.items():
        for key, value in overrides.items():
            section = "/**" if key in shared_keys else node
            document.setdefault(section, {"ros__parameters": {}})
            document[section].setdefault("ros__parameters", {})[key] = value
    return parse_experiment(document, file=str(config_file), base_dir=config_file.parent.resolve())


def write_overrides(directory: Path, node: NodeSpec | GraphNode, overrides: dict[str, Any]) -> Path | None:
    """A parameter file holding ``overrides`` under the node's fully qualified name, or None when none.

    ROS 2 lets a node-specific entry beat ``/**`` and ``-p`` whatever their order, and a later file's entry
    for the same node beat an earlier one; so overrides go in a second file, keyed by the node's fully
    qualified name (what launch_ros does with the dict parameters of the launch files).
    """
    node = node if isinstance(node, GraphNode) else GraphNode(node)
    if not overrides:
        return None
    path = directory / f"{node.label.replace('/', '__')}_overrides.yaml"
    path.write_text(yaml.safe_dump({node.name: {"ros__parameters": overrides}}), encoding="utf-8")
    return path


def node_command(
    node: NodeSpec | GraphNode, config_file: Path, override_file: Path | None = None
) -> list[str]:
    """The command line that runs one node (in its namespace, with its remappings)."""
    node = node if isinstance(node, GraphNode) else GraphNode(node)
    command = [sys.executable, "-m", node.spec.module, "--ros-args", "-r", f"__node:={node.spec.name}"]
    if node.namespace != "/":
        command += ["-r", f"__ns:={node.namespace}"]
    for source, target in node.remappings:
        command += ["-r", f"{source}:={target}"]
    command += ["--params-file", str(config_file)]
    if override_file is not None:
        command += ["--params-file", str(override_file)]
    return command


def managed_nodes(
    layout: tuple[GraphNode, ...], config_file: Path, overrides: dict[str, dict[str, Any]], directory: Path
) -> list[ManagedNode]:
    """The processes of ``layout``, each with its overrides file (written to ``directory``)."""
    return [
        ManagedNode(
            node.spec,
            node_command(node, config_file, write_overrides(directory, node, overrides[node.label])),
            label=node.label,
        )
        for node in layout
    ]


@dataclass
class ManagedNode:
    """A node process and what the launcher knows of it."""

    spec: NodeSpec
    command: list[str]
    process: subprocess.Popen[str] | None = None
    restarts: int = 0
    reader: threading.Thread | None = field(default=None, repr=False)
    #: the node's name in the output (``robot1/actor_node``); the spec's name when empty
    label: str = ""

    @property
    def name(self) -> str:
        """The node's name in the launcher's output and logs."""
        return self.label or self.spec.name


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
        log.info("started %s (pid %d)", node.name, node.process.pid)

    def _pump(self, node: ManagedNode, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.emit(node.name, line.rstrip("\n"))

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
                    node.name,
                    code,
                    node.spec.respawn_delay_s,
                    node.restarts,
                )
                time.sleep(node.spec.respawn_delay_s)
                self._spawn(node)
            elif self.failed is None:
                self.failed = f"{node.name} exited with status {code}"
                log.error("node %s died (exit status %s): stopping the graph", node.name, code)

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
                    log.warning("%s did not stop on %s", node.name, signal.Signals(sig).name)
        for node in self.nodes:
            if node.reader is not None:
                node.reader.join(timeout=2.0)


def apply_network_settings(settings: dict[str, str]) -> None:
    """Export the experiment file's DDS settings to this process (its monitor node) and the nodes it starts.

    Discovery stays on this machine unless the file or the environment says otherwise.
    """
    os.environ.update(settings)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    for name, value in settings.items():
        log.info("%s=%s (from the experiment file's launcher section)", name, value)


class NodeSelectionError(ValueError):
    """``--only`` names a node the graph does not have."""


def select_nodes(layout: tuple[GraphNode, ...], only: tuple[str, ...]) -> tuple[GraphNode, ...]:
    """The nodes of ``layout`` named in ``only`` (all of them when it is empty).

    A node name (``actor_node``) selects that node of every robot; a label (``robot2/actor_node``) one
    process. :class:`NodeSelectionError` names what matches nothing, with the graph's names and labels.
    """
    if not only:
        return layout
    unknown = [name for name in only if not any(name in (node.spec.name, node.label) for node in layout)]
    if unknown:
        names = sorted({node.spec.name for node in layout} | {node.label for node in layout})
        raise NodeSelectionError(
            f"--only {', '.join(unknown)}: not in this graph; its nodes: {', '.join(names)}"
        )
    return tuple(node for node in layout if node.spec.name in only or node.label in only)


def simulator_is_the_robot(layout: tuple[GraphNode, ...]) -> bool:
    """Whether the launcher's own evaluations in simulation stand for the robot this graph drives.

    The launcher evaluates each new policy in its own copy of the task in simulation. That says something
    about the robot being trained only when the robot is the simulator. A graph that drives a real robot
    (a driver or a ros2_control robot instead of sim_node) gets no such evaluations (they would only take
    CPU from the learner on the robot's computer) and runs until stopped or ``--max-minutes``, whatever
    the simulated return.
    """
    return any(node.spec.name == SIM_NODE.name for node in layout)


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
    namespace: str = "",
    robots: int = 1,
    only: tuple[str, ...] = (),
) -> int:
    """Run ``graph`` with ``config_file`` until Ctrl-C, success, a dead node or ``max_minutes``.

    ``namespace`` moves the whole graph; ``robots`` > 1 runs that many simulated robots feeding one learner
    (:func:`rl_control.graph.graph_layout`); ``only`` starts just those nodes of it (:func:`select_nodes`:
    the rest runs on other machines, found through DDS with the file's ``launcher`` settings).

    For training graphs, the final policy is exported to ``<run_dir>/policy.onnx`` and evaluated
    deterministically in simulation. Returns the exit status.
    """
    from rl_control.ros.launch_monitor import TrainingMonitor

    experiment = load_experiment(config_file)
    apply_network_settings(experiment.launcher.environment())
    with_driver = graph in ROBOT_GRAPHS and experiment.has_driver
    with_joy = graph in ROBOT_GRAPHS and experiment.joy_node.enabled
    layout = graph_layout(
        graph,
        with_sim=with_sim,
        with_driver=with_driver,
        with_joy=with_joy,
        namespace=namespace,
        robots=robots,
    )
    overrides = layout_overrides(
        graph,
        layout,
        config_file=config_file,
        task=task,
        sim_mode=sim_mode,
        policy_file=policy_file,
        with_sim=with_sim,
        with_driver=with_driver,
    )
    # validated as robot 1 sees it (the robots differ only in their seeds)
    config = resolved_config(
        config_file, graph, {node.spec.name: overrides[node.label] for node in layout if node.robot <= 1}
    )
    override_dir = Path(tempfile.mkdtemp(prefix="rl_control_launch_"))
    started = select_nodes(layout, only)
    nodes = managed_nodes(started, config_file, overrides, override_dir)
    simulated_robot = simulator_is_the_robot(layout)
    monitor = TrainingMonitor(
        config,
        graph=get_graph(graph).name,
        live=progress,
        namespace=layout[0].namespace,
        evaluate_policies=simulated_robot,
    )
    processes = GraphProcesses(nodes, emit=monitor.node_output)
    if stop_on_success and not simulated_robot:
        log.info(
            "this graph drives a robot: the launcher does not evaluate its policies in simulation and "
            "stops it on Ctrl-C or --max-minutes only"
        )
        stop_on_success = False

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
    if "learner_node" in {node.spec.name for node in started}:
        status = max(status, monitor.finish(Path(config.shared.run_dir), reason))
    return status


def stop_graph(launcher: subprocess.Popen[bytes]) -> None:
    """Ctrl-C an ``rl-control launch`` process (it stops its nodes); then kill whatever is left of it and of
    its nodes (each node runs in its own session: one left running would hold what it opened, e.g. a
    serial port, and publish into the next graph started on the same domain)."""
    listed = subprocess.run(["pgrep", "-P", str(launcher.pid)], capture_output=True, text=True, check=False)
    nodes = [int(pid) for pid in listed.stdout.split()]
    launcher.send_signal(signal.SIGINT)
    with suppress(subprocess.TimeoutExpired):
        launcher.wait(timeout=90)
    for pid in (launcher.pid, *nodes):
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with suppress(subprocess.TimeoutExpired):
        launcher.wait(timeout=10)
