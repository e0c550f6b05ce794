"""The node graphs of rl_control: the one definition used by ``launch/*.launch.py`` and ``rl-control launch``.

Both launchers start, for a graph, exactly :func:`graph_nodes`, each node named ``spec.name``, given the
experiment YAML as its parameter file plus :func:`parameter_overrides`, and respawned when
``spec.respawn`` (the learner: it resumes from its run directory).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rl_control.config.schema import ActorNodeConfig, SimNodeConfig, load_experiment
from rl_control.paths import resolve_policy_file
from rl_control.topics import CLOCK_TOPIC, LEARNER_TOPICS, in_namespace

PACKAGE = "rl_control"


@dataclass(frozen=True)
class NodeSpec:
    """One node of a graph."""

    name: str
    executable: str
    respawn: bool = False
    respawn_delay_s: float = 2.0

    @property
    def module(self) -> str:
        """Python module whose ``main()`` runs the node (``python -m`` form of the console script)."""
        return f"{PACKAGE}.ros.{self.executable}"


SIM_NODE = NodeSpec("sim_node", "sim_node")
ACTOR_NODE = NodeSpec("actor_node", "actor_node")
LEARNER_NODE = NodeSpec("learner_node", "learner_node", respawn=True)
DRIVER_NODE = NodeSpec("driver_node", "driver_node")
JOY_NODE = NodeSpec("joy_node", "joy_node")
#: Graphs that run on a real robot's topics: with a driver configured, driver_node provides them.
ROBOT_GRAPHS = ("deploy", "robot_finetune")


@dataclass(frozen=True)
class GraphSpec:
    """A named graph: its nodes and the shared parameters it forces (e.g. ``mode: deploy``)."""

    name: str
    description: str
    nodes: tuple[NodeSpec, ...]
    shared_overrides: dict[str, str] = field(default_factory=dict)
    sim_optional: bool = False


GRAPHS: dict[str, GraphSpec] = {
    spec.name: spec
    for spec in (
        GraphSpec(
            "sim_train",
            "MuJoCo sim + actor + online learner (training in simulation)",
            (SIM_NODE, ACTOR_NODE, LEARNER_NODE),
            {"mode": "train"},
        ),
        GraphSpec(
            "deploy",
            "actor with a fixed ONNX policy, deterministic; sim_node unless a robot is used",
            (SIM_NODE, ACTOR_NODE),
            {"mode": "deploy"},
            sim_optional=True,
        ),
        GraphSpec(
            "robot_finetune",
            "actor + online learner against a real robot's topics",
            (ACTOR_NODE, LEARNER_NODE),
            {"mode": "train"},
        ),
    )
}


def graph_nodes(
    graph: str, *, with_sim: bool = True, with_driver: bool = False, with_joy: bool = False
) -> tuple[NodeSpec, ...]:
    """The nodes of ``graph``; ``with_sim=False`` drops sim_node (ValueError where the graph needs it).

    ``with_driver`` (the experiment file configures ``driver_node``): the robot graphs (deploy,
    robot_finetune) start driver_node in place of sim_node. ``with_joy`` (the file maps ``joy_node.axes``):
    the robot graphs also start joy_node, the joystick's deadman and interventions.
    """
    if with_joy and graph in ROBOT_GRAPHS:
        return (*graph_nodes(graph, with_sim=with_sim, with_driver=with_driver), JOY_NODE)
    spec = get_graph(graph)
    if with_driver and graph in ROBOT_GRAPHS:
        return (DRIVER_NODE, *(node for node in spec.nodes if node is not SIM_NODE))
    if not with_sim and SIM_NODE in spec.nodes and not spec.sim_optional:
        optional = ", ".join(name for name, other in GRAPHS.items() if other.sim_optional)
        raise ValueError(
            f"graph {graph!r} runs in simulation and needs sim_node; running without the simulator "
            f"(--no-sim, with_sim:=false) applies to: {optional}"
        )
    if with_sim:
        return spec.nodes
    return tuple(node for node in spec.nodes if node is not SIM_NODE)


@dataclass(frozen=True)
class GraphNode:
    """One node process of a graph: which node, in which namespace, with which topic remappings."""

    spec: NodeSpec
    namespace: str = "/"
    remappings: tuple[tuple[str, str], ...] = ()
    #: 1..N for the nodes of robot N in a multi-robot graph; 0 for a single robot's graph and the learner
    robot: int = 0

    @property
    def name(self) -> str:
        """The node's fully qualified name (``/robot1/actor_node``): its section in a parameter file."""
        return f"{self.namespace.rstrip('/')}/{self.spec.name}"

    @property
    def label(self) -> str:
        """The node's name in the launcher's output (``robot1/actor_node``)."""
        return self.name.lstrip("/")


def normalize_namespace(namespace: str) -> str:
    """``namespace`` as an absolute ROS namespace (``robot1`` -> ``/robot1``; ``''`` -> ``/``)."""
    stripped = namespace.strip().strip("/")
    if stripped and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*", stripped):
        raise ValueError(
            f"invalid namespace {namespace!r}: expected ROS names (letters, digits, '_') separated by '/'"
        )
    return "/" + stripped


def robot_namespace(namespace: str, robot: int) -> str:
    """The namespace of robot ``robot`` (1..N) of a multi-robot graph in ``namespace``."""
    return f"{normalize_namespace(namespace).rstrip('/')}/robot{robot}"


def graph_layout(
    graph: str,
    *,
    with_sim: bool = True,
    with_driver: bool = False,
    with_joy: bool = False,
    namespace: str = "",
    robots: int = 1,
) -> tuple[GraphNode, ...]:
    """Every node process of ``graph`` with its namespace and remappings (both launchers start these).

    One robot: every node in ``namespace``. ``robots`` > 1 (simulated training graphs only): one learner in
    ``namespace`` and, for each robot k, a sim_node + actor_node pair in ``<namespace>/robot<k>``; each
    actor's learner topics are remapped to the learner's (transitions from every robot reach the one
    learner, which tracks each publisher's sequence; every actor receives its policy), and each robot's
    ``/clock`` to ``<namespace>/robot<k>/clock`` (each simulator has its own time).
    """
    nodes = graph_nodes(graph, with_sim=with_sim, with_driver=with_driver, with_joy=with_joy)
    root = normalize_namespace(namespace)
    if robots < 1:
        raise ValueError(f"robots must be at least 1, got {robots}")
    if robots == 1:
        return tuple(GraphNode(spec, root) for spec in nodes)
    if SIM_NODE not in nodes or LEARNER_NODE not in nodes:
        multi = ", ".join(
            name for name, spec in GRAPHS.items() if {SIM_NODE, LEARNER_NODE} <= set(spec.nodes)
        )
        raise ValueError(f"several robots (robots={robots}) need a simulated training graph: {multi}")
    layout = [GraphNode(LEARNER_NODE, root)]
    for robot in range(1, robots + 1):
        own = robot_namespace(root, robot)
        clock = ((CLOCK_TOPIC, f"{own}/clock"),)
        learner = tuple((topic, in_namespace(topic, root)) for topic in LEARNER_TOPICS)
        layout.append(GraphNode(SIM_NODE, own, clock, robot))
        layout.append(GraphNode(ACTOR_NODE, own, learner + clock, robot))
    return tuple(layout)


def file_configures_driver(config_file: str) -> bool:
    """True when the experiment file has a ``driver_node`` section with servo ids (validated).

    A missing file is False here: the nodes report it, naming the file."""
    from pathlib import Path

    from rl_control.config import load_experiment

    return Path(config_file).is_file() and load_experiment(config_file).has_driver


def file_configures_joy(config_file: str) -> bool:
    """True when the experiment file maps joystick axes (``joy_node.axes``, validated); False if missing."""
    from pathlib import Path

    from rl_control.config import load_experiment

    return Path(config_file).is_file() and load_experiment(config_file).joy_node.enabled


def get_graph(graph: str) -> GraphSpec:
    """The :class:`GraphSpec` named ``graph`` (ValueError listing the known graphs otherwise)."""
    try:
        return GRAPHS[graph]
    except KeyError:
        raise ValueError(f"unknown graph {graph!r}; known graphs: {', '.join(GRAPHS)}") from None


def parameter_overrides(
    graph: str,
    node: NodeSpec,
    *,
    task: str = "",
    sim_mode: str = "",
    policy_file: str = "",
    with_sim: bool = True,
    config_file: str | Path = "",
    with_driver: bool = False,
    robot: int = 0,
    robots: int = 1,
) -> dict[str, Any]:
    """Parameters given to ``node`` on top of the experiment YAML when it runs in ``graph``.

    Empty arguments leave the YAML's values; ``task`` is shared, ``sim_mode`` goes to sim_node and
    ``policy_file`` to actor_node (the launch arguments of the same names). The actor gets the pacing and
    the episode-reset mechanism the graph needs (see :func:`actor_overrides`; ``config_file`` is the
    experiment YAML, read for the simulator's mode and the actor's configured pacing; with driver_node in
    the graph, the actor's episode resets go to its ``~/reset`` service: the home pose).

    Time: every node of a graph with a simulator runs on its ``/clock`` (``use_sim_time``), except the
    learner of a multi-robot graph (``robots`` > 1), which follows no single robot's clock;
    graphs on a robot's hardware keep wall time. Robot k of a multi-robot graph gets ``seed + k - 1``.
    """
    overrides: dict[str, Any] = dict(get_graph(graph).shared_overrides)
    in_simulation = SIM_NODE in graph_nodes(graph, with_sim=with_sim, with_driver=with_driver)
    if in_simulation and not (robots > 1 and node is LEARNER_NODE):
        overrides["use_sim_time"] = True
    if robot > 1:
        seed = load_experiment(config_file).shared.seed if config_file else 0
        overrides["seed"] = seed + robot - 1
    if task:
        overrides["task"] = task
    if sim_mode and node is SIM_NODE:
        overrides["sim_mode"] = sim_mode
    if node is ACTOR_NODE:
        overrides.update(
            actor_overrides(
                graph,
                with_sim=with_sim,
                sim_mode=sim_mode,
                config_file=config_file,
                with_driver=with_driver,
            )
        )
        if policy_file:  # a file, or the name of a shipped policy (rl_control.paths.packaged_policy)
            overrides["policy_file"] = resolve_policy_file(policy_file)
    return overrides


def layout_overrides(
    graph: str, layout: tuple[GraphNode, ...], *, config_file: str | Path = "", **launch: Any
) -> dict[str, dict[str, Any]]:
    """:func:`parameter_overrides` of every node of ``layout``, keyed by :attr:`GraphNode.label`.

    ``launch`` holds the launch arguments of :func:`parameter_overrides` (``task``, ``sim_mode``,
    ``policy_file``, ``with_sim``, ``with_driver``); the robot count is the layout's.
    """
    robots = max(1, max(node.robot for node in layout))
    return {
        node.label: parameter_overrides(
            graph, node.spec, config_file=config_file, robot=node.robot, robots=robots, **launch
        )
        for node in layout
    }


def actor_overrides(
    graph: str,
    *,
    with_sim: bool = True,
    sim_mode: str = "",
    config_file: str | Path = "",
    with_driver: bool = False,
) -> dict[str, str]:
    """The actor's pacing and reset mechanism in ``graph``, one value each, decided here for both launchers.

    A lockstep sim_node needs a lockstep actor; otherwise the actor keeps its configured pacing (realtime or
    triggered), never lockstep, since nothing steps in lockstep then. Without a sim_node no simulator service
    exists: ``reset_service`` is emptied, so an episode end starts the next episode at once, unless
    driver_node runs: then episodes reset through its ``~/reset`` service (home pose).
    """
    experiment = load_experiment(config_file) if config_file else None
    configured = experiment.actor_node.pacing if experiment else ActorNodeConfig().pacing
    nodes = graph_nodes(graph, with_sim=with_sim, with_driver=with_driver)
    if SIM_NODE not in nodes:
        reset_service = f"{DRIVER_NODE.name}/reset" if DRIVER_NODE in nodes else ""
        return {
            "pacing": "realtime" if configured == "lockstep" else configured,
            "reset_service": reset_service,
        }
    simulator = sim_mode or (experiment.sim_node.sim_mode if experiment else SimNodeConfig().sim_mode)
    if simulator == "lockstep":
        return {"pacing": "lockstep"}
    return {"pacing": "realtime" if configured == "lockstep" else configured}


def launch_description(graph: str):  # -> launch.LaunchDescription (ROS 2 distro only)
    """The ROS 2 launch description of ``graph``; ``launch/*.launch.py`` return this.

    Launch arguments: ``config`` (experiment YAML), ``task``, ``sim_mode``, ``policy_file``, ``namespace``,
    ``robots`` (several simulated robots, see :func:`graph_layout`) and, for graphs whose simulator is
    optional, ``with_sim``.
    """
    from launch import LaunchDescription  # type: ignore[attr-defined]
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    from rl_control.paths import config_path

    spec = get_graph(graph)
    arguments = [
        DeclareLaunchArgument(
            "config",
            default_value=str(config_path("pendulum_sim.yaml")),
            description="experiment YAML (ROS 2 parameter file)",
        ),
        DeclareLaunchArgument("task", default_value="", description="task override ('' = the config's)"),
        DeclareLaunchArgument(
            "sim_mode",
            default_value="",
            description="sim_node mode override: lockstep or realtime ('' = the config's)",
        ),
        DeclareLaunchArgument(
            "policy_file",
            default_value="",
            description="ONNX policy for actor_node, or a shipped policy's name (quadruped_walk); '' = the "
            "config's / the learner's",
        ),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the whole graph"),
        DeclareLaunchArgument(
            "robots",
            default_value="1",
            description="simulated robots (sim_node + actor_node in <namespace>/robot<k>), one learner",
        ),
    ]
    if spec.sim_optional:
        arguments.append(
            DeclareLaunchArgument(
                "with_sim",
                default_value="true",
                choices=["true", "false"],
                description="start sim_node (false: a real robot's topics)",
            )
        )

    def nodes(context, *_args, **_kwargs):
        def value(name: str) -> str:
            return LaunchConfiguration(name).perform(context)

        with_sim = value("with_sim") == "true" if spec.sim_optional else True
        with_driver = graph in ROBOT_GRAPHS and file_configures_driver(value("config"))
        with_joy = graph in ROBOT_GRAPHS and file_configures_joy(value("config"))
        robots = int(value("robots") or "1")
        layout = graph_layout(
            graph,
            with_sim=with_sim,
            with_driver=with_driver,
            with_joy=with_joy,
            namespace=value("namespace"),
            robots=robots,
        )
        overrides = layout_overrides(
            graph,
            layout,
            config_file=value("config"),
            task=value("task"),
            sim_mode=value("sim_mode"),
            policy_file=value("policy_file"),
            with_sim=with_sim,
            with_driver=with_driver,
        )
        return [
            Node(
                package=PACKAGE,
                executable=node.spec.executable,
                name=node.spec.name,
                namespace=node.namespace,
                remappings=list(node.remappings),
                output="screen",
                parameters=[value("config"), overrides[node.label]],
                respawn=node.spec.respawn,
                respawn_delay=node.spec.respawn_delay_s,
            )
            for node in layout
        ]

    return LaunchDescription([*arguments, OpaqueFunction(function=nodes)])
