"""Policy authority across processes: an actor_node child against a fake robot and a hostile publisher."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

pytest.importorskip("rclpy")

from test_ros_actor import STARTUP_S, FakeRobot, start_actor

from rl_control.envs import make_task
from rl_control.policy.authority import sign_policy
from rl_control.testing.experiment import write_actor_experiment
from rl_control.testing.policies import HugePolicyPublisher, graph_policy, slow_policy
from rl_control.testing.probe import RosProbe

pytestmark = pytest.mark.ros

KEY = b"test key shared by learner and actor"


def publish_signed(robot: FakeRobot, data: bytes, version: int, key: bytes = KEY) -> None:
    from rl_control.ros import messages

    robot.policy_pub.publish(messages.encode_policy(data, version, sign_policy(key, data, version)))


def test_graph_policies_behave_as_described() -> None:
    def run(data: bytes, obs: list[float]) -> float:
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        return float(session.run(None, {"obs": np.array([obs], np.float32)})[0][0, 0])

    onnx.checker.check_model(onnx.load_from_string(graph_policy(0.5, version=1, nan_when="fast")))
    assert run(graph_policy(0.5, version=1), [1.0, 2.0, 3.0]) == pytest.approx(0.5)
    assert run(graph_policy(0.5, version=1, nan_when="nonzero"), [0.0, 0.0, 0.0]) == pytest.approx(0.5)
    assert np.isnan(run(graph_policy(0.5, version=1, nan_when="nonzero"), [1.0, 0.0, 0.0]))
    assert run(graph_policy(-0.25, version=1, nan_when="fast"), [1.0, 0.0, 4.0]) == pytest.approx(-0.25)
    assert np.isnan(run(graph_policy(-0.25, version=1, nan_when="fast"), [1.0, 0.0, 6.0]))


def test_deploy_mode_with_policy_file_ignores_the_policy_topic(probe: RosProbe, tmp_path: Path) -> None:
    """The fault: any process on the domain replaced the deployed policy."""
    task = make_task("pendulum_swingup")
    policy_file = tmp_path / "deployed.onnx"
    policy_file.write_bytes(graph_policy(0.5, version=3))
    config = write_actor_experiment(
        tmp_path,
        shared={"task": "pendulum_swingup", "mode": "deploy", "control_rate_hz": 50.0},
        actor={"policy_file": str(policy_file)},
    )
    robot = FakeRobot(probe, list(task.joint_names))
    high = task.command_high[0]
    with start_actor(config, tmp_path) as actor:
        assert robot.wait_commands(lambda c: abs(c[0] - 0.5 * high) < 1e-3, STARTUP_S, 0.0), actor.output()
        robot.publish_policy(graph_policy(-0.9, version=99), version=99)  # a hostile publisher
        since = time.monotonic()
        probe.spin_for(3.0)
        values = robot.command_values(since)
        assert len(values) > 50 and np.allclose(values[:, 0], 0.5 * high, atol=1e-3)
        assert probe.spin_until(lambda: robot.diagnostic("policy_updates") == "ignored", 5.0)
        assert robot.diagnostic("policy_version") == "3"
        assert robot.diagnostic("policies_rejected") == "0"
        assert "policy updates ignored" in actor.output()


def test_signed_only_probe_set_and_budget(probe: RosProbe, tmp_path: Path) -> None:
    """One actor requiring signed policies goes through every refusal and keeps its policy (the rollback of a
    policy gone bad: the ``policy_rollback_after_invalid_ticks`` fault scenario)."""
    task = make_task("pendulum_swingup")
    key_file = tmp_path / "policy.key"
    key_file.write_bytes(KEY)
    key_file.chmod(0o600)
    config = write_actor_experiment(
        tmp_path,
        shared={
            "task": "pendulum_swingup",
            "mode": "deploy",
            "control_rate_hz": 50.0,
            "policy_key_file": str(key_file),
        },
        actor={"require_signed_policies": True, "rollback_invalid_ticks": 5},
    )
    robot = FakeRobot(probe, list(task.joint_names))
    robot.position[:] = 0.4  # real observations are non-zero
    high = task.command_high[0]
    slow, slow_call_s = slow_policy(version=4)

    def rejected(count: int) -> bool:
        return probe.spin_until(lambda: robot.diagnostic("policies_rejected") == str(count), 30.0)

    with start_actor(config, tmp_path) as actor:
        assert robot.wait_commands(lambda c: c[0] == 0.0, STARTUP_S, 0.0), actor.output()  # no policy: safe
        probe.spin_for(1.0)  # the actor sees real observations (its probe set)

        robot.publish_policy(graph_policy(0.5, version=1), version=1)  # unsigned
        assert rejected(1), actor.output()
        publish_signed(robot, graph_policy(0.5, version=2), 2, key=b"some other key, 16+ bytes")
        assert rejected(2), actor.output()
        publish_signed(robot, graph_policy(0.5, version=1), 1)
        assert robot.wait_commands(lambda c: abs(c[0] - 0.5 * high) < 1e-3, 30.0, 0.0), actor.output()

        publish_signed(robot, graph_policy(-0.5, version=3, nan_when="nonzero"), 3)
        assert rejected(3), actor.output()
        publish_signed(robot, slow, 4)
        assert rejected(4), actor.output()
        output = actor.output()
        assert "policy v2 has a wrong hmac-sha256 signature" in output
        assert "policy v1 is not signed and signed policies are required" in output
        # OnnxPolicy itself raises on a non-finite action
        assert "policy v3 failed on recent observation #1: policy produced a non-finite action" in output
        assert (
            "policy v4 is too slow: 3 of 3 calls took longer than the inference budget of 5.00 ms" in output
        ), f"slow policy: {slow_call_s * 1e3:.0f} ms per call here\n{output}"
        assert robot.diagnostic("policy_version") == "1"
        since = time.monotonic()
        probe.spin_for(0.5)
        assert np.allclose(robot.command_values(since)[:, 0], 0.5 * high, atol=1e-3)  # v1 kept running


@pytest.mark.slow
@pytest.mark.xfail(
    reason="known miss (issue 10): a 50 MB policy admitted past the cap still delays a 50 Hz tick by ~60-70 "
    "ms on an idle machine (pipe read and session build hold the GIL)",
    strict=False,
)
def test_a_50_mb_policy_admitted_past_the_size_cap_does_not_stall_the_control_loop(
    probe: RosProbe, tmp_path: Path
) -> None:
    """The fault: a 200 MB message stalled the 50 Hz loop 667 ms. With the cap raised, a 50 MB message crosses
    the pipe into the actor and is refused by its loader. Largest gap between commands, measured while it
    arrives, against the largest gap of the same actor just before (reference). The default cap refuses it
    in the receiver process: the ``policy_50mb_message`` fault scenario (test_faults_policy_nodes.py)."""
    max_policy_bytes, refusal = 64 * 2**20, "cannot load ONNX"
    task = make_task("pendulum_swingup")
    rate_hz = 50.0
    period_s = 1.0 / rate_hz
    config = write_actor_experiment(
        tmp_path,
        shared={"task": "pendulum_swingup", "mode": "deploy", "control_rate_hz": rate_hz},
        actor={"max_policy_bytes": max_policy_bytes},
    )
    robot = FakeRobot(probe, list(task.joint_names))
    high = task.command_high[0]

    def largest_gap(start: float, end: float) -> float:
        times = np.array([t for t, _ in robot.commands if start <= t <= end])
        assert len(times) > 0.8 * rate_hz * (end - start), f"{len(times)} commands in {end - start:.1f} s"
        return float(np.max(np.diff(times)))

    with start_actor(config, tmp_path) as actor:
        robot.publish_policy(graph_policy(0.5, version=1), version=1)
        assert robot.wait_commands(lambda c: abs(c[0] - 0.5 * high) < 1e-3, STARTUP_S, 0.0), actor.output()
        reference_start = time.monotonic()
        probe.spin_for(8.0)
        reference_end = time.monotonic()
        with HugePolicyPublisher(50 * 2**20) as publisher:
            assert probe.spin_until(lambda: robot.diagnostic("policies_rejected") == "1", 60.0), (
                actor.output()
            )
            probe.spin_for(1.0)
            window_end = time.monotonic()
        published_at = publisher.published_at()
        reference = largest_gap(reference_start, reference_end)
        during = largest_gap(published_at, window_end)
        print(
            f"largest command gap at {rate_hz:g} Hz: {during * 1e3:.1f} ms while a 50 MB policy message "
            f"arrived, {reference * 1e3:.1f} ms in the {reference_end - reference_start:.0f} s before "
            f"(reference)"
        )
        assert refusal in actor.output()
        assert robot.diagnostic("policy_version") == "1"
        assert during <= max(2 * period_s, reference + period_s), (
            f"a tick was delayed by more than one period: largest gap {during * 1e3:.1f} ms, reference "
            f"{reference * 1e3:.1f} ms"
        )


def test_learner_signs_and_a_signed_only_actor_accepts_its_policy(probe: RosProbe, tmp_path: Path) -> None:
    """learner_node with the shared key signs what it publishes; the actor requiring signatures runs it."""
    import yaml
    from test_ros_learner_node import LearnerClient
    from test_ros_learner_node import write_config as write_learner_config

    from rl_control.policy.authority import verify_policy_signature
    from rl_control.ros import messages
    from rl_control.testing.node_process import NodeProcess

    key_file = tmp_path / "policy.key"
    key_file.write_bytes(KEY)
    key_file.chmod(0o600)
    # only the start-up policy is published: the version the test reads is the one the actor must run
    learner_config = write_learner_config(tmp_path, publish_every_updates=10**9)
    document = yaml.safe_load(learner_config.read_text(encoding="utf-8"))
    actor_document = yaml.safe_load(
        write_actor_experiment(
            tmp_path,
            shared={"task": "pendulum_swingup", "mode": "train", "control_rate_hz": 50.0},
            actor={"require_signed_policies": True, "max_policy_lag_steps": 0},
        ).read_text(encoding="utf-8")
    )
    document["/**"]["ros__parameters"].update(actor_document["/**"]["ros__parameters"])
    document["/**"]["ros__parameters"]["policy_key_file"] = str(key_file)
    document["actor_node"] = actor_document["actor_node"]
    config = tmp_path / "graph.yaml"
    config.write_text(yaml.safe_dump(document), encoding="utf-8")

    client = LearnerClient(probe)
    robot = FakeRobot(probe, ["hinge"])
    learner = NodeProcess("learner_node", config, log_path=tmp_path / "learner.log")
    with learner, start_actor(config, tmp_path) as actor:
        assert probe.spin_until(lambda: bool(client.policies), STARTUP_S), learner.output()
        version, data, signature = messages.decode_signed_policy(client.policies[-1][1])
        verify_policy_signature(KEY, data, version, signature, "learner")
        assert probe.spin_until(lambda: robot.diagnostic("policy_version") == str(version), STARTUP_S), (
            actor.output()
        )
        assert robot.diagnostic("policies_rejected") == "0"
