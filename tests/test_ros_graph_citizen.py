"""A good ROS 2 citizen, checked with plain rclpy clients against nodes in other processes: namespaces and
renames keep the experiment file's sections, the actor is a lifecycle node, simulation graphs share one time
base, and several robots feed one learner."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.srv import GetParameters
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray

from rl_control.ros import messages
from rl_control.testing.experiment import TEST_CONTROLLER, write_actor_experiment
from rl_control.testing.node_process import NodeProcess, isolated_ros_domain
from rl_control.testing.probe import RosProbe, command_rows

pytestmark = [pytest.mark.ros, pytest.mark.usefixtures("ros_domain")]

CONTROLLER = TEST_CONTROLLER
STARTUP_S = 90.0  # node start-up is slow on a loaded 2-core machine


def write_policy(tmp_path: Path, action: float) -> Path:
    from rl_control.testing.exported_policy import constant_exported_policy

    path = tmp_path / "policy.onnx"
    path.write_bytes(constant_exported_policy(3, 1, action))
    return path


class JointStatePublisher:
    """Publishes a pendulum's joint state on ``topic`` at 100 Hz from the probe's executor."""

    def __init__(self, probe: RosProbe, topic: str) -> None:
        self.probe = probe
        self.publisher = probe.publisher(JointState, topic, messages.STATE_QOS)
        probe.node.create_timer(0.01, self._publish)

    def _publish(self) -> None:
        msg = JointState()
        msg.header.stamp = self.probe.node.get_clock().now().to_msg()
        msg.name = ["hinge"]
        msg.position = [0.3]
        msg.velocity = [0.0]
        msg.effort = [0.0]
        self.publisher.publish(msg)


def command_values(received: list, since: float = 0.0) -> np.ndarray:
    return command_rows(received, since).reshape(-1, 1)


def test_a_namespaced_renamed_actor_keeps_its_section_and_topics(probe: RosProbe, tmp_path: Path) -> None:
    """``-r __ns:=/robot1 -r __node:=my_actor``: the actor reads ``actor_node:`` (its policy_file) and uses
    the robot's topics in the namespace; before, it waited for a learner with the section lost."""
    policy = write_policy(tmp_path, 0.5)
    config = write_actor_experiment(
        tmp_path,
        state_timeout_s=0.5,
        shared={"task": "pendulum_swingup", "mode": "deploy", "control_rate_hz": 100.0},
        actor={"policy_file": str(policy), "transition_batch_size": 7},
    )
    JointStatePublisher(probe, "/robot1/joint_states")
    commands = probe.collect(Float64MultiArray, f"/robot1/{CONTROLLER}/commands", messages.COMMAND_QOS)
    root_commands = probe.collect(Float64MultiArray, f"/{CONTROLLER}/commands", messages.COMMAND_QOS)
    diagnostics = probe.collect(DiagnosticArray, messages.DIAGNOSTICS_TOPIC, messages.DIAGNOSTICS_QOS)
    actor = NodeProcess(
        "actor_node",
        config,
        node_name="my_actor",
        extra_ros_args=("-r", "__ns:=/robot1"),
        log_path=tmp_path / "actor.log",
    )
    with actor.start():
        assert probe.spin_until(lambda: len(commands) >= 20, STARTUP_S), actor.output()
        values = command_values(commands)
        assert np.all(values[-10:] > 0.1), values[-10:]  # the policy's action, not the safe command
        response = probe.call(
            GetParameters,
            "/robot1/my_actor/get_parameters",
            GetParameters.Request(names=["policy_file", "transition_batch_size"]),
        )
        assert [v.string_value for v in response.values[:1]] == [str(policy)]
        assert response.values[1].integer_value == 7
        assert probe.spin_until(
            lambda: any(m.status[0].name == "robot1/my_actor" for _, m in diagnostics), 10.0
        )
    assert "policy v" in actor.output() and "waiting for" not in actor.output()
    assert not root_commands  # nothing outside the namespace


def change_state(probe: RosProbe, node: str, transition: int) -> bool:
    request = ChangeState.Request(transition=Transition(id=transition))
    return bool(probe.call(ChangeState, f"{node}/change_state", request, timeout_s=30.0).success)


def lifecycle_state(probe: RosProbe, node: str) -> int:
    return int(probe.call(GetState, f"{node}/get_state", GetState.Request()).current_state.id)


def test_the_actor_is_a_lifecycle_node(probe: RosProbe, tmp_path: Path) -> None:
    """From a plain rclpy client: configure (no commands yet) -> activate (policy commands) -> deactivate
    (one safe command, then none) -> activate (commands resume) -> cleanup."""
    policy = write_policy(tmp_path, 0.5)
    config = write_actor_experiment(
        tmp_path,
        state_timeout_s=0.5,
        shared={"task": "pendulum_swingup", "mode": "deploy", "control_rate_hz": 100.0},
        actor={"policy_file": str(policy), "autostart": False, "safe_command": "zero"},
    )
    JointStatePublisher(probe, messages.JOINT_STATES_TOPIC)
    commands = probe.collect(Float64MultiArray, messages.command_topic(CONTROLLER), messages.COMMAND_QOS)
    with NodeProcess("actor_node", config, log_path=tmp_path / "actor.log").start() as actor:
        assert actor.wait_for_output("actor_node running", STARTUP_S), actor.output()
        assert lifecycle_state(probe, "/actor_node") == State.PRIMARY_STATE_UNCONFIGURED
        assert change_state(probe, "/actor_node", Transition.TRANSITION_CONFIGURE), actor.output()
        assert lifecycle_state(probe, "/actor_node") == State.PRIMARY_STATE_INACTIVE
        probe.spin_for(1.0)
        assert not commands, "an inactive actor commanded the robot"

        assert change_state(probe, "/actor_node", Transition.TRANSITION_ACTIVATE), actor.output()
        assert probe.spin_until(lambda: len(commands) >= 20, 30.0), actor.output()
        assert np.all(command_values(commands)[-10:] > 0.1)

        assert change_state(probe, "/actor_node", Transition.TRANSITION_DEACTIVATE), actor.output()
        probe.spin_for(0.5)
        stopped_at = len(commands)
        assert command_values(commands)[-1, 0] == 0.0  # the safe command last
        probe.spin_for(1.0)
        assert len(commands) == stopped_at, "an inactive actor kept commanding"

        since = time.monotonic()
        assert change_state(probe, "/actor_node", Transition.TRANSITION_ACTIVATE), actor.output()
        assert probe.spin_until(lambda: len(command_values(commands, since)) >= 10, 30.0), actor.output()
        assert np.all(command_values(commands, since)[-5:] > 0.1)

        assert change_state(probe, "/actor_node", Transition.TRANSITION_DEACTIVATE)
        assert change_state(probe, "/actor_node", Transition.TRANSITION_CLEANUP), actor.output()
        assert lifecycle_state(probe, "/actor_node") == State.PRIMARY_STATE_UNCONFIGURED


def stamp_s(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def test_a_simulation_graph_stamps_everything_in_sim_time(probe: RosProbe, tmp_path: Path) -> None:
    """sim_node publishes /clock; with use_sim_time (what both launchers set in simulation graphs) the
    stamps of /joint_states and of every node's /diagnostics are simulated time, not wall time."""
    policy = write_policy(tmp_path, 0.2)
    config = write_actor_experiment(
        tmp_path,
        state_timeout_s=0.5,
        shared={"task": "pendulum_swingup", "mode": "deploy", "control_rate_hz": 50.0, "use_sim_time": True},
        actor={"policy_file": str(policy)},
        sim={"real_time_factor": 0.5},  # simulated time runs at half the wall clock: the two differ
    )
    clock = probe.collect(Clock, messages.CLOCK_TOPIC, messages.CLOCK_QOS)
    states = probe.collect(JointState, messages.JOINT_STATES_TOPIC, messages.STATE_QOS)
    diagnostics = probe.collect(DiagnosticArray, messages.DIAGNOSTICS_TOPIC, messages.DIAGNOSTICS_QOS)

    def diagnostics_of(node: str) -> list:
        return [msg for _, msg in diagnostics if msg.status and msg.status[0].name.startswith(node)]

    sim = NodeProcess("sim_node", config, log_path=tmp_path / "sim.log")
    actor = NodeProcess("actor_node", config, log_path=tmp_path / "actor.log")
    with sim.start(), actor.start():
        started = time.monotonic()
        assert probe.spin_until(
            lambda: len(diagnostics_of("actor_node")) >= 3 and len(diagnostics_of("sim_node")) >= 3, STARTUP_S
        ), f"{sim.output()}\n{actor.output()}"
        wall_elapsed = time.monotonic() - started
    sim_now = stamp_s(clock[-1][1].clock)
    assert 0.0 < sim_now < wall_elapsed + 10.0  # simulated seconds since start, not seconds since 1970
    for node in ("actor_node", "sim_node"):
        stamp = stamp_s(diagnostics_of(node)[-1].header.stamp)
        assert 0.0 < stamp <= sim_now + 1.0, (node, stamp, sim_now)
    assert abs(stamp_s(states[-1][1].header.stamp) - sim_now) < 1.0


class Launcher:
    """``rl-control launch CONFIG ARGS`` as a child process (own environment), its output collected."""

    def __init__(self, config: Path, *args: str, env: dict[str, str] | None = None) -> None:
        command = [sys.executable, "-m", "rl_control.cli", "launch", str(config), *args]
        command += ["--no-progress", "--no-stop-on-success", "--max-minutes", "4"]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(
            target=lambda: self.lines.extend(self.process.stdout or ()), daemon=True
        )
        self._reader.start()

    def logged(self, node: str, pattern: str) -> bool:
        """True once ``node`` (its output prefix) printed a line matching ``pattern``."""
        return any(line.startswith(f"[{node}]") and re.search(pattern, line) for line in list(self.lines))

    def tail(self) -> str:
        return "".join(self.lines[-80:])

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=60.0)
        self._reader.join(timeout=5.0)


def training_experiment(tmp_path: Path, **launcher: object) -> Path:
    """A small pendulum training experiment (lockstep, tiny networks) with an optional launcher section."""
    document: dict[str, dict] = {
        "/**": {
            "ros__parameters": {
                "task": "pendulum_swingup",
                "controller": "forward_effort_controller",
                "run_dir": str(tmp_path / "run"),
                "control_rate_hz": 50.0,
            }
        },
        "sim_node": {"ros__parameters": {"sim_mode": "lockstep"}},
        # The default lockstep throttle (max_policy_lag_steps 200): without it two lockstep robots flood
        # the learner (80 000 queued env steps in 200 s, once with only one publisher logged in that time).
        "actor_node": {"ros__parameters": {"transition_batch_size": 10}},
        "learner_node": {
            "ros__parameters": {"agent": {"hidden_sizes": [16], "batch_size": 16, "learning_starts": 50}}
        },
    }
    if launcher:
        document["launcher"] = {"ros__parameters": launcher}
    config = tmp_path / "experiment.yaml"
    config.write_text(yaml.safe_dump(document), encoding="utf-8")
    return config


def wait_for(condition, launchers: list[Launcher], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not condition():
        if any(launcher.process.poll() is not None for launcher in launchers):
            break
        time.sleep(0.5)
    return bool(condition())


def test_two_robots_feed_one_learner_and_both_receive_its_policy(tmp_path: Path) -> None:
    """``rl-control launch --robots 2``: sim + actor pairs in /robot1 and /robot2, one learner; the learner
    counts each actor as a publisher of transitions and both actors install its policy."""
    launcher = Launcher(training_experiment(tmp_path), "--robots", "2")

    def publisher_lines() -> list[str]:
        lines = list(launcher.lines)
        return [line for line in lines if line.startswith("[learner_node]") and "new publisher" in line]

    def both_robots_seen() -> bool:
        publishers = publisher_lines()
        installed = [
            node
            for node in ("robot1/actor_node", "robot2/actor_node")
            if launcher.logged(node, r"policy v\d+ active")
        ]
        return len(publishers) >= 2 and len(installed) == 2

    try:
        assert wait_for(both_robots_seen, [launcher], 200.0), f"{publisher_lines()}\n{launcher.tail()}"
        assert any("/robot2/forward_effort_controller/commands" in line for line in launcher.lines)
    finally:
        launcher.stop()


@pytest.mark.slow  # two launchers: about 40 s on a shared 2-core machine
def test_a_graph_split_over_two_launchers_meets_on_the_experiment_files_domain(
    tmp_path: Path, ros_domain: int
) -> None:
    """The learner on one "machine", the robot on another (``--only``), each launcher started in a different
    ``ROS_DOMAIN_ID``: the file's ``launcher.ros_domain_id`` brings them together; transitions reach the
    learner and its policy reaches the actor."""
    config = training_experiment(tmp_path, ros_domain_id=ros_domain, discovery_range="localhost")
    with isolated_ros_domain() as learner_env_domain, isolated_ros_domain() as robot_env_domain:
        learner_env = {**os.environ, "ROS_DOMAIN_ID": str(learner_env_domain)}
        robot_env = {**os.environ, "ROS_DOMAIN_ID": str(robot_env_domain)}
        learner = Launcher(config, "--only", "learner_node", env=learner_env)
        robot = Launcher(config, "--only", "sim_node,actor_node", env=robot_env)
        try:
            assert wait_for(
                lambda: (
                    learner.logged("learner_node", "new publisher")
                    and robot.logged("actor_node", r"policy v\d+ active")
                ),
                [learner, robot],
                200.0,
            ), f"learner:\n{learner.tail()}\nrobot:\n{robot.tail()}"
            assert not any(line.startswith(("[sim_node]", "[actor_node]")) for line in learner.lines)
            assert not any(line.startswith("[learner_node]") for line in robot.lines)
        finally:
            robot.stop()
            learner.stop()


def test_only_refuses_a_node_the_graph_does_not_have(tmp_path: Path) -> None:
    config = training_experiment(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "rl_control.cli", "launch", str(config), "--only", "learner_nod"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert (
        "--only learner_nod: not in this graph; its nodes: actor_node, learner_node, sim_node"
        in result.stderr
    )
