"""One graph definition: the ROS 2 launch files and ``rl-control launch`` start the same nodes.

``launch``/``launch_ros`` are not on PyPI, so the launch files run here against minimal stand-ins that
record what they are asked to build; the real packages take the same calls in a ROS 2 distro.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from rl_control.graph import GRAPHS, graph_nodes, parameter_overrides
from rl_control.launcher import node_command, resolved_config, write_overrides
from rl_control.paths import share_dir


class _Recorder:
    def __init__(self, *args, **kwargs) -> None:
        self.args = args
        self.kwargs = kwargs


class _LaunchConfiguration:
    values: ClassVar[dict[str, str]] = {}

    def __init__(self, name: str) -> None:
        self.name = name

    def perform(self, _context) -> str:
        return self.values[self.name]


@pytest.fixture
def fake_launch(monkeypatch: pytest.MonkeyPatch) -> type[_LaunchConfiguration]:
    modules = {
        "launch": types.ModuleType("launch"),
        "launch.actions": types.ModuleType("launch.actions"),
        "launch.substitutions": types.ModuleType("launch.substitutions"),
        "launch_ros": types.ModuleType("launch_ros"),
        "launch_ros.actions": types.ModuleType("launch_ros.actions"),
    }
    modules["launch"].LaunchDescription = lambda entities: list(entities)
    modules["launch.actions"].DeclareLaunchArgument = type("DeclareLaunchArgument", (_Recorder,), {})
    modules["launch.actions"].OpaqueFunction = type("OpaqueFunction", (_Recorder,), {})
    modules["launch.substitutions"].LaunchConfiguration = _LaunchConfiguration
    modules["launch_ros.actions"].Node = type("Node", (_Recorder,), {})
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    return _LaunchConfiguration


def run_launch_file(graph: str, arguments: dict[str, str], launch_configuration) -> tuple[set[str], list]:
    path = share_dir() / "launch" / f"{graph}.launch.py"
    spec = importlib.util.spec_from_file_location(f"launch_file_{graph}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    entities = module.generate_launch_description()
    declared = {e.args[0] for e in entities if type(e).__name__ == "DeclareLaunchArgument"}
    (opaque,) = [e for e in entities if type(e).__name__ == "OpaqueFunction"]
    launch_configuration.values = {name: "" for name in declared} | arguments
    return declared, opaque.kwargs["function"](context=None)


@pytest.mark.parametrize("graph", sorted(GRAPHS))
def test_launch_files_start_the_graph_nodes(graph: str, fake_launch, tmp_path: Path) -> None:
    config = str(share_dir() / "config" / "pendulum_sim.yaml")
    declared, nodes = run_launch_file(graph, {"config": config, "with_sim": "true"}, fake_launch)
    assert {"config", "task", "sim_mode", "policy_file"} <= declared
    expected = graph_nodes(graph)
    assert [(n.kwargs["name"], n.kwargs["executable"]) for n in nodes] == [
        (s.name, s.executable) for s in expected
    ]
    for node, spec in zip(nodes, expected, strict=True):
        assert node.kwargs["package"] == "rl_control"
        assert node.kwargs["parameters"][0] == config
        overrides = parameter_overrides(graph, spec, config_file=config)
        assert node.kwargs["parameters"][1] == overrides
        assert node.kwargs["respawn"] == spec.respawn
        override_file = write_overrides(tmp_path, spec, overrides)
        command = node_command(spec, Path(config), override_file)
        assert command[2] == spec.module and f"__node:={spec.name}" in command
        assert command[-2:] == ["--params-file", str(override_file)]


@pytest.mark.ros
def test_launcher_overrides_beat_the_node_section_of_the_config(tmp_path: Path) -> None:
    """ROS 2 prefers a node's own section to /** and to -p: the overrides must win all the same."""
    import rclpy

    from rl_control.graph import SIM_NODE

    config = share_dir() / "config" / "pendulum_sim.yaml"  # sim_node: sim_mode: lockstep
    overrides = parameter_overrides("deploy", SIM_NODE, sim_mode="realtime", task="pendulum_balance")
    command = node_command(SIM_NODE, config, write_overrides(tmp_path, SIM_NODE, overrides))
    context = rclpy.Context()
    context.init(args=command[command.index("--ros-args") :])
    try:
        node = rclpy.create_node(
            "placeholder", context=context, automatically_declare_parameters_from_overrides=True
        )
        values = {name: node.get_parameter(name).value for name in ("sim_mode", "task", "mode")}
        node.destroy_node()
    finally:
        context.shutdown()
    assert values == {"sim_mode": "realtime", "task": "pendulum_balance", "mode": "deploy"}


def test_deploy_without_sim_and_with_a_policy(fake_launch) -> None:
    config = str(share_dir() / "config" / "pendulum_sim.yaml")  # sim_node: sim_mode: lockstep
    _, nodes = run_launch_file(
        "deploy", {"config": config, "with_sim": "false", "policy_file": "/p.onnx"}, fake_launch
    )
    assert [n.kwargs["name"] for n in nodes] == ["actor_node"]
    # on a robot the actor paces itself, whatever the file says about the simulator, and calls no
    # simulator service
    assert nodes[0].kwargs["parameters"][1] == {
        "mode": "deploy",
        "policy_file": "/p.onnx",
        "pacing": "realtime",
        "reset_service": "",
    }
    assert [s.name for s in graph_nodes("deploy", with_sim=False)] == ["actor_node"]
    with pytest.raises(ValueError, match="'sim_train' runs in simulation and needs sim_node"):
        graph_nodes("sim_train", with_sim=False)


def _experiment_file(tmp_path: Path, sim: dict, actor: dict) -> Path:
    path = tmp_path / "experiment.yaml"
    document = {"sim_node": {"ros__parameters": sim}, "actor_node": {"ros__parameters": actor}}
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("graph", "with_sim", "sim", "actor", "launch_sim_mode", "expected"),
    [
        # a lockstep simulator steps once per command: the actor acts once per state, whatever it says
        ("sim_train", True, {"sim_mode": "lockstep"}, {"pacing": "triggered"}, "", {"pacing": "lockstep"}),
        ("sim_train", True, {}, {}, "", {"pacing": "lockstep"}),  # sim_node's default is lockstep
        # a realtime simulator: the actor's own choice holds, lockstep becomes realtime
        ("sim_train", True, {"sim_mode": "realtime"}, {"pacing": "triggered"}, "", {"pacing": "triggered"}),
        ("deploy", True, {"sim_mode": "realtime"}, {"pacing": "lockstep"}, "", {"pacing": "realtime"}),
        # the launch argument beats the file
        ("deploy", True, {"sim_mode": "realtime"}, {}, "lockstep", {"pacing": "lockstep"}),
        # no simulator: never lockstep, never a simulator service
        (
            "robot_finetune",
            True,
            {"sim_mode": "lockstep"},
            {},
            "",
            {"pacing": "realtime", "reset_service": ""},
        ),
        ("deploy", False, {}, {"pacing": "triggered"}, "", {"pacing": "triggered", "reset_service": ""}),
    ],
)
def test_the_graph_sets_the_actors_pacing_and_reset_mechanism(
    tmp_path: Path, graph: str, with_sim: bool, sim: dict, actor: dict, launch_sim_mode: str, expected: dict
) -> None:
    from rl_control.graph import actor_overrides

    config = _experiment_file(tmp_path, sim, actor)
    overrides = actor_overrides(graph, with_sim=with_sim, sim_mode=launch_sim_mode, config_file=config)
    assert overrides == expected


def test_launch_files_are_installed_for_every_graph() -> None:
    shipped = {p.name.removesuffix(".launch.py") for p in (share_dir() / "launch").glob("*.launch.py")}
    assert shipped == set(GRAPHS)


def test_node_modules_exist() -> None:
    for graph in GRAPHS:
        for spec in graph_nodes(graph):
            assert importlib.util.find_spec(spec.module) is not None, spec.module


def test_launcher_validates_overrides_before_starting(tmp_path: Path) -> None:
    from rl_control.config import ConfigError

    config = share_dir() / "config" / "pendulum_sim.yaml"
    resolved = resolved_config(config, "deploy", {"sim_node": {"mode": "deploy", "sim_mode": "realtime"}})
    assert resolved.shared.mode == "deploy" and resolved.sim_node.sim_mode == "realtime"
    with pytest.raises(ConfigError, match="policy_file"):
        resolved_config(config, "deploy", {"actor_node": {"policy_file": str(tmp_path / "missing.onnx")}})


def test_launcher_reports_a_dead_node_and_respawns_a_respawning_one() -> None:
    from rl_control.graph import NodeSpec
    from rl_control.launcher import GraphProcesses, ManagedNode

    lines: list[tuple[str, str]] = []
    crash = [sys.executable, "-c", "print('bye'); raise SystemExit(3)"]
    flaky = ManagedNode(NodeSpec("flaky", "learner_node", respawn=True, respawn_delay_s=0.0), crash)
    dying = ManagedNode(NodeSpec("dying", "actor_node"), crash)
    processes = GraphProcesses([flaky, dying], emit=lambda name, line: lines.append((name, line)))
    processes.start()
    for node in (flaky, dying):
        node.process.wait(timeout=30)
    processes.poll()
    assert processes.failed == "dying exited with status 3"
    assert flaky.restarts == 1 and flaky.process.poll() in (None, 3)  # respawned, not a failure
    processes.stop()
    assert ("dying", "bye") in lines and ("flaky", "bye") in lines


def test_a_configured_driver_replaces_sim_node_in_the_robot_graphs() -> None:
    from rl_control.graph import DRIVER_NODE, file_configures_driver
    from rl_control.paths import config_path

    assert file_configures_driver(str(config_path("arm_dynamixel.yaml")))
    assert not file_configures_driver(str(config_path("arm_sim.yaml")))
    names = {graph: [s.name for s in graph_nodes(graph, with_driver=True)] for graph in GRAPHS}
    assert names == {
        "sim_train": ["sim_node", "actor_node", "learner_node"],  # training in simulation stays there
        "deploy": ["driver_node", "actor_node"],
        "robot_finetune": ["driver_node", "actor_node", "learner_node"],
    }
    actor = next(s for s in graph_nodes("deploy") if s.name == "actor_node")
    overrides = parameter_overrides("deploy", actor, with_driver=True)
    assert overrides == {"mode": "deploy", "pacing": "realtime", "reset_service": "driver_node/reset"}
    assert parameter_overrides("robot_finetune", DRIVER_NODE, with_driver=True) == {"mode": "train"}


def test_simulation_graphs_run_on_sim_time_and_robot_graphs_on_wall_time() -> None:
    from rl_control.graph import ACTOR_NODE, DRIVER_NODE, LEARNER_NODE, SIM_NODE

    for spec in (SIM_NODE, ACTOR_NODE, LEARNER_NODE):
        assert parameter_overrides("sim_train", spec)["use_sim_time"] is True
    assert parameter_overrides("deploy", ACTOR_NODE)["use_sim_time"] is True
    assert "use_sim_time" not in parameter_overrides("deploy", ACTOR_NODE, with_sim=False)
    assert "use_sim_time" not in parameter_overrides("deploy", DRIVER_NODE, with_driver=True)
    assert "use_sim_time" not in parameter_overrides("robot_finetune", ACTOR_NODE)
    # several robots: each robot on its own clock, the learner on none
    assert "use_sim_time" not in parameter_overrides("sim_train", LEARNER_NODE, robots=2)


def test_a_namespace_moves_the_whole_graph_and_robots_share_one_learner() -> None:
    from rl_control.config import load_experiment
    from rl_control.graph import SIM_NODE, graph_layout

    layout = graph_layout("deploy", namespace="lab/arm")
    assert [(node.name, node.remappings) for node in layout] == [
        ("/lab/arm/sim_node", ()),
        ("/lab/arm/actor_node", ()),
    ]
    layout = graph_layout("sim_train", namespace="/lab", robots=2)
    assert [node.name for node in layout] == [
        "/lab/learner_node",
        "/lab/robot1/sim_node",
        "/lab/robot1/actor_node",
        "/lab/robot2/sim_node",
        "/lab/robot2/actor_node",
    ]
    actor2 = layout[4]
    assert dict(actor2.remappings) == {
        "rl_control/transitions": "/lab/rl_control/transitions",
        "rl_control/policy": "/lab/rl_control/policy",
        "rl_control/learner_progress": "/lab/rl_control/learner_progress",
        "/clock": "/lab/robot2/clock",
    }
    assert dict(layout[3].remappings) == {"/clock": "/lab/robot2/clock"}
    command = node_command(actor2, Path("x.yaml"))
    assert command[6:8] == ["-r", "__ns:=/lab/robot2"]
    assert "rl_control/transitions:=/lab/rl_control/transitions" in command
    with pytest.raises(ValueError, match=r"several robots .* need a simulated training graph: sim_train"):
        graph_layout("deploy", robots=2)
    with pytest.raises(ValueError, match="invalid namespace"):
        graph_layout("sim_train", namespace="robot 1")
    config = share_dir() / "config" / "pendulum_sim.yaml"
    seed = parameter_overrides("sim_train", SIM_NODE, config_file=config, robot=2, robots=2)["seed"]
    assert seed == load_experiment(config).shared.seed + 1


def test_only_a_graph_training_the_simulator_stops_on_the_launchers_simulated_success() -> None:
    """The launcher evaluates policies in simulation: that says nothing of a real robot being fine-tuned."""
    from rl_control.graph import graph_layout
    from rl_control.launcher import simulator_is_the_robot

    assert simulator_is_the_robot(graph_layout("sim_train"))
    assert simulator_is_the_robot(graph_layout("sim_train", robots=2))
    assert not simulator_is_the_robot(graph_layout("robot_finetune"))  # a ros2_control robot
    assert not simulator_is_the_robot(graph_layout("robot_finetune", with_driver=True))  # a Dynamixel arm
