"""The node graphs of rl_control: the one definition used by ``launch/*.launch.py`` and ``rl-control launch``.

Both launchers start, for a graph, exactly :func:`graph_nodes`, each node named ``spec.name``, given the
experiment YAML as its parameter file plus :func:`parameter_overrides`, and respawned when
``spec.respawn`` (the learner: it resumes from its run directory).
"""

from __future__ import annotations

from dataclasses import dataclass, field

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


def graph_nodes(graph: str, *, with_sim: bool = True) -> tuple[NodeSpec, ...]:
    """The nodes of ``graph``; ``with_sim=False`` drops sim_node where the graph allows it."""
    spec = get_graph(graph)
    if with_sim or not spec.sim_optional:
        return spec.nodes
    return tuple(node for node in spec.nodes if node is not SIM_NODE)


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
) -> dict[str, str]:
    """Parameters given to ``node`` on top of the experiment YAML when it runs in ``graph``.

    Empty arguments leave the YAML's values; ``task`` is shared, ``sim_mode`` goes to sim_node and actor_node
    (which must pace alike; without a sim node the actor runs realtime) and ``policy_file`` to actor_node
    (the launch arguments of the same names).
    """
    overrides = dict(get_graph(graph).shared_overrides)
    if task:
        overrides["task"] = task
    if sim_mode and node in (SIM_NODE, ACTOR_NODE):  # the actor paces itself the same way (lockstep/realtime)
        overrides["sim_mode"] = sim_mode
    if node is ACTOR_NODE and SIM_NODE not in graph_nodes(graph, with_sim=with_sim):
        overrides["sim_mode"] = "realtime"  # a real robot: the actor runs on its own clock
    if policy_file and node is ACTOR_NODE:
        overrides["policy_file"] = policy_file
    return overrides


def launch_description(graph: str):  # -> launch.LaunchDescription (ROS 2 distro only)
    """The ROS 2 launch description of ``graph``; ``launch/*.launch.py`` return this.

    Launch arguments: ``config`` (experiment YAML), ``task``, ``sim_mode``, ``policy_file`` and, for graphs
    whose simulator is optional, ``with_sim``.
    """
    from launch import LaunchDescription
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
            description="ONNX policy for actor_node ('' = the config's / the learner's)",
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
        return [
            Node(
                package=PACKAGE,
                executable=node.executable,
                name=node.name,
                output="screen",
                parameters=[
                    value("config"),
                    parameter_overrides(
                        graph,
                        node,
                        task=value("task"),
                        sim_mode=value("sim_mode"),
                        policy_file=value("policy_file"),
                        with_sim=with_sim,
                    ),
                ],
                respawn=node.respawn,
                respawn_delay=node.respawn_delay_s,
            )
            for node in graph_nodes(graph, with_sim=with_sim)
        ]

    return LaunchDescription([*arguments, OpaqueFunction(function=nodes)])
