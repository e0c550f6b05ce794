"""Joystick teleoperation: the ROS-free mapping, and joy_node driving the actor from a scripted Joy."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest
import yaml

from rl_control.config import ConfigError, load_experiment
from rl_control.config.schema import ExperimentConfig
from rl_control.graph import JOY_NODE, graph_nodes
from rl_control.teleop import JoyMapping


def mapping(**overrides: object) -> JoyMapping:
    arguments: dict = {"axes": [1, 0], "axis_scales": [1.0, -0.5], "deadman_button": 4, "deadzone": 0.1}
    arguments.update(overrides)
    return JoyMapping(**arguments)


def test_axes_become_actions_only_while_the_deadman_is_held() -> None:
    joy = mapping()
    held = [0, 0, 0, 0, 1]
    command = joy.map([0.4, 0.8, 0.0], held)
    assert command.enable
    np.testing.assert_allclose(command.intervention, [0.8, -0.2])
    released = joy.map([0.4, 0.8, 0.0], [0, 0, 0, 0, 0])
    assert not released.enable and released.intervention is None
    idle = joy.map([0.05, -0.08, 0.9], held)  # inside the dead zone: the policy acts, robot enabled
    assert idle.enable and idle.intervention is None
    np.testing.assert_allclose(mapping(axis_scales=[3.0, 1.0]).map([0.0, 0.9], held).intervention, [1.0, 0.0])


def test_intervention_button_gates_the_override() -> None:
    joy = mapping(intervention_button=5)
    assert joy.map([0.0, 0.9], [0, 0, 0, 0, 1, 0]).intervention is None
    np.testing.assert_allclose(joy.map([0.0, 0.05], [0, 0, 0, 0, 1, 1]).intervention, [0.0, 0.0])
    assert joy.map([0.0, 0.9], [0, 0, 0, 0, 0, 1]).intervention is None  # no deadman, no override


def test_bad_samples_and_mappings_are_named() -> None:
    with pytest.raises(ValueError, match=r"2 axes; joy_node\.axes uses axis index 3"):
        mapping(axes=[3, 0]).map([0.0, 0.0], [0] * 5)
    with pytest.raises(ValueError, match="3 buttons; joy_node uses button index 4"):
        mapping().map([0.0, 0.0], [0, 0, 0])
    with pytest.raises(ValueError, match="non-finite"):
        mapping().map([0.0, float("nan")], [0] * 5)
    with pytest.raises(ValueError, match="axis_scales has 1 entries"):
        mapping(axis_scales=[1.0])


def write_experiment(tmp_path: Path, joy: dict) -> Path:
    document = {
        "/**": {"ros__parameters": {"task": "arm_reach", "run_dir": str(tmp_path / "run")}},
        "joy_node": {"ros__parameters": joy},
    }
    path = tmp_path / "joy.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def test_config_section_and_graph() -> None:
    assert not ExperimentConfig().joy_node.enabled
    assert JOY_NODE in graph_nodes("robot_finetune", with_sim=False, with_joy=True)
    assert JOY_NODE not in graph_nodes("sim_train", with_joy=True)


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="axis_scales"):
        load_experiment(write_experiment(tmp_path, {"axes": [0, 1], "axis_scales": [1.0]}))
    with pytest.raises(ConfigError, match="intervention_button"):
        load_experiment(
            write_experiment(tmp_path, {"axes": [0], "deadman_button": 2, "intervention_button": 2})
        )


@pytest.mark.ros
@pytest.mark.slow  # about 35 s: three node processes on a loaded 2-core machine
@pytest.mark.usefixtures("ros_domain")
def test_scripted_joystick_interventions_reach_the_learner_flagged_and_counted(probe, tmp_path: Path) -> None:
    """A scripted ``sensor_msgs/Joy`` publisher → joy_node → actor_node (training) → learner_node.

    Without the deadman the actor sends the safe command; holding it and pushing an axis overrides the
    actor's exploration; the transitions of those ticks reach the learner flagged: it counts exactly the
    intervention transitions the actor reports and keeps them, with the joystick's action, in its
    demonstration buffer (committed by the checkpoint on shutdown). Releasing the deadman stops them."""
    pytest.importorskip("rclpy")
    from sensor_msgs.msg import Joy
    from test_ros_actor import CONTROLLER, STARTUP_S, FakeRobot
    from test_ros_learner_node import diagnostic_values

    from rl_control.envs import RobotState, make_task
    from rl_control.learning.checkpoint import RunDirectory
    from rl_control.ros.joy_node import JOY_QOS
    from rl_control.testing.node_process import NodeProcess

    task = make_task("pendulum_swingup")
    run_dir = tmp_path / "run"
    document = {
        "/**": {"ros__parameters": {"controller": CONTROLLER, "run_dir": str(run_dir), "mode": "train"}},
        "actor_node": {
            "ros__parameters": {"reset_service": "", "state_timeout_s": 0.3, "require_enable": True}
        },
        "joy_node": {"ros__parameters": {"axes": [1], "axis_scales": [-1.0], "deadman_button": 0}},
        "learner_node": {  # never trains (the replay cannot reach learning_starts): it only stores
            "ros__parameters": {
                "preset": "sac",
                "agent": {"hidden_sizes": [16], "learning_starts": 10_000, "buffer_capacity": 5000},
                "checkpoint_every_s": 600.0,
            }
        },
    }
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(document), encoding="utf-8")
    robot = FakeRobot(probe, list(task.joint_names))
    joy_pub = probe.publisher(Joy, "/joy", JOY_QOS)
    sample = {"axes": [0.0, 0.0], "buttons": [0]}

    def publish_joy() -> None:
        joy_pub.publish(Joy(axes=sample["axes"], buttons=sample["buttons"]))

    def actor(key: str) -> int:
        return int(robot.diagnostic(key) or 0)

    def learner(key: str) -> int:
        return int(diagnostic_values(robot.diagnostics).get(key, -1))

    probe.node.create_timer(0.05, publish_joy)  # a joystick driver's autorepeat rate: 20 Hz
    joy = NodeProcess("joy_node", config, log_path=tmp_path / "joy.log")
    actor_node = NodeProcess("actor_node", config, log_path=tmp_path / "actor.log")
    learner_node = NodeProcess("learner_node", config, log_path=tmp_path / "learner.log")
    with joy, actor_node, learner_node:

        def output() -> str:
            return f"{actor_node.output()}\n{joy.output()}\n{learner_node.output()}"

        assert probe.spin_until(
            lambda: actor("disabled_ticks") > 0 and learner("env_steps") == 0, STARTUP_S
        ), output()
        assert actor("intervention_ticks") == 0 and actor("transitions_sent") == 0  # no deadman: no actions

        sample.update(axes=[0.0, -0.5], buttons=[1])  # deadman held, axis pushed: action -1 * -0.5 = 0.5
        assert probe.spin_until(lambda: actor("intervention_transitions") >= 40, 30.0), output()
        joystick_command = task.command(np.array([0.5]), RobotState(np.zeros(1), np.zeros(1), np.zeros(1)))
        assert any(np.isclose(msg.data[0], joystick_command[0]) for _, msg in robot.commands), output()

        sample.update(axes=[0.0, 0.0])  # deadman still held: the actor explores again
        random_before = actor("random_ticks")
        # 50 exploring ticks later the batch holding the last human row has gone out (25 rows a batch)
        assert probe.spin_until(lambda: actor("random_ticks") >= random_before + 50, 30.0), output()
        reported = actor("intervention_transitions")  # from the same diagnostics message: final
        assert 40 <= reported <= actor("intervention_ticks")
        assert probe.spin_until(lambda: learner("intervention_transitions") == reported, 30.0), (
            f"learner counts {learner('intervention_transitions')}, the actor reports {reported}\n{output()}"
        )
        assert learner("demo_transitions") == reported

        sample.update(buttons=[0])  # deadman released: the safe command, nothing more to learn from
        disabled = actor("disabled_ticks")
        assert probe.spin_until(lambda: actor("disabled_ticks") > disabled + 20, 30.0), output()
        assert actor("intervention_transitions") == reported
        learner_node.send_signal(signal.SIGINT)
        assert learner_node.wait(timeout_s=30.0) == 0, output()

    run = RunDirectory(run_dir)
    manifest = json.loads(run.manifests()[0].read_text())
    assert manifest["intervention_transitions"] == reported
    kept = [run.read_chunk(entry) for entry in manifest["demo_chunks"]]
    assert sum(len(chunk) for chunk in kept) == reported
    for chunk in kept:  # every kept row is a human's, with the joystick's action
        assert chunk.intervention.tolist() == [1.0] * len(chunk)
        np.testing.assert_array_equal(chunk.action, np.full((len(chunk), 1), 0.5, np.float32))
    replay = [run.read_chunk(entry) for entry in manifest["replay_chunks"]]
    assert sum(chunk.interventions for chunk in replay) == reported  # also in the online replay
