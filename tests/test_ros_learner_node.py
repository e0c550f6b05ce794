"""learner_node in a child process: transitions in, policies and progress out, gaps, checkpoints, resume."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticArray
from std_msgs.msg import Float64MultiArray, Int64MultiArray, UInt8MultiArray

from rl_control.config import load_experiment
from rl_control.learning import Learner, OnnxPolicy, TransitionBatch
from rl_control.learning.checkpoint import RunDirectory
from rl_control.ros import messages
from rl_control.testing.node_process import NodeProcess
from rl_control.testing.probe import RosProbe

pytestmark = [pytest.mark.ros, pytest.mark.usefixtures("ros_domain")]

STARTUP_S = 60.0
BATCH = 25
LEARNING_STARTS = 50
UTD = 2
HUMAN_EVERY = 5


def write_config(tmp_path: Path, **learner: object) -> Path:
    document = {
        "/**": {"ros__parameters": {"task": "pendulum_swingup", "run_dir": str(tmp_path / "run"), "seed": 1}},
        "learner_node": {
            "ros__parameters": {
                "preset": "sac",
                "agent": {
                    "hidden_sizes": [32, 32],
                    "batch_size": 32,
                    "learning_starts": LEARNING_STARTS,
                    "utd_ratio": UTD,
                    "buffer_capacity": 5000,
                    "device": "cpu",
                },
                "publish_every_updates": 40,
                "checkpoint_every_s": 60.0,
                **learner,
            }
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def pendulum_batch(seq: int, rows: int = BATCH, obs_dim: int = 3) -> TransitionBatch:
    """Plausible pendulum transitions; an episode ends every 200 rows (time limit); every
    ``HUMAN_EVERY``-th row is flagged as an intervention."""
    rng = np.random.default_rng(seq)
    theta = rng.uniform(-np.pi, np.pi, rows)
    obs = np.stack([np.cos(theta), np.sin(theta), rng.uniform(-8, 8, rows)], axis=1)[:, :obs_dim]
    if obs_dim > 3:
        obs = np.concatenate([obs, np.zeros((rows, obs_dim - 3))], axis=1)
    row_index = seq * rows + np.arange(rows)
    return TransitionBatch(
        obs=obs.astype(np.float32),
        action=rng.uniform(-1, 1, (rows, 1)).astype(np.float32),
        reward=-(theta**2).astype(np.float32) / np.pi**2,
        next_obs=obs.astype(np.float32),
        terminated=np.zeros(rows, np.float32),
        truncated=((row_index + 1) % 200 == 0).astype(np.float32),
        intervention=(row_index % HUMAN_EVERY == 0).astype(np.float32),
    )


def diagnostic_values(diagnostics: list) -> dict[str, str]:
    for _, msg in reversed(diagnostics):
        for status in msg.status:
            if status.name == "learner_node":
                return {kv.key: kv.value for kv in status.values} | {"_level": str(status.level[0])}
    return {}


class LearnerClient:
    """The actor's side of the learner topics, from the test process."""

    def __init__(self, probe: RosProbe) -> None:
        self.probe = probe
        self.transitions = probe.publisher(
            Float64MultiArray, messages.TRANSITIONS_TOPIC, messages.TRANSITIONS_QOS
        )
        self.policies = probe.collect(UInt8MultiArray, messages.POLICY_TOPIC, messages.POLICY_QOS)
        self.progress = probe.collect(Int64MultiArray, messages.LEARNER_PROGRESS_TOPIC, messages.PROGRESS_QOS)
        self.diagnostics = probe.collect(
            DiagnosticArray, messages.DIAGNOSTICS_TOPIC, messages.DIAGNOSTICS_QOS
        )

    def send(self, seq: int) -> None:
        self.transitions.publish(messages.transitions_to_message(pendulum_batch(seq), seq))

    def latest_progress(self) -> messages.LearnerProgress:
        if not self.progress:
            return messages.LearnerProgress()
        return messages.decode_progress(self.progress[-1][1])

    def latest_policy(self) -> tuple[int, bytes]:
        """(version, ONNX bytes) of the newest policy received; (-1, b"") before the first one."""
        if not self.policies:
            return -1, b""
        return messages.decode_policy(self.policies[-1][1])

    def wait_progress(self, node: NodeProcess, env_steps: int, timeout_s: float = 60.0) -> None:
        ok = self.probe.spin_until(lambda: self.latest_progress().env_steps >= env_steps, timeout_s)
        assert ok, f"progress {self.latest_progress()} never reached {env_steps} env steps:\n{node.output()}"

    def wait_diagnostic(self, node: NodeProcess, key: str, value: str, timeout_s: float = 10.0) -> None:
        ok = self.probe.spin_until(lambda: diagnostic_values(self.diagnostics).get(key) == value, timeout_s)
        assert ok, f"diagnostic {key} != {value}: {diagnostic_values(self.diagnostics)}\n{node.output()}"


def test_transitions_cross_processes_train_and_publish_policies(tmp_path: Path, probe) -> None:
    client = LearnerClient(probe)
    config = write_config(tmp_path, nice=5)
    with NodeProcess("learner_node", config) as node:
        assert probe.spin_until(lambda: bool(client.policies), STARTUP_S), node.output()
        assert node.process is not None
        niceness = os.getpriority(os.PRIO_PROCESS, node.process.pid)
        assert niceness == min(19, os.nice(0) + 5), "the learner yields the CPU by its configured nice"
        first_version, onnx_bytes = client.latest_policy()
        policy = OnnxPolicy.from_bytes(onnx_bytes)  # the initial policy lets an actor start collecting
        assert (policy.obs_dim, policy.act_dim, policy.stochastic) == (3, 1, True)
        assert policy.version == first_version >= 1
        assert probe.spin_until(lambda: client.transitions.get_subscription_count() > 0, 10.0)

        for seq in range(8):  # 200 transitions: one full (truncated) episode
            client.send(seq)
        client.wait_progress(node, 8 * BATCH)
        progress = client.latest_progress()
        assert progress.env_steps == 8 * BATCH and progress.last_seq == 7 and progress.episodes == 1
        assert progress.intervention_transitions == 8 * BATCH // HUMAN_EVERY
        # UTD 2 on every step after learning starts (the first batches may arrive before it).
        assert UTD * (8 * BATCH - LEARNING_STARTS) <= progress.updates <= UTD * 8 * BATCH
        assert probe.spin_until(lambda: client.latest_policy()[0] > first_version, 10.0), node.output()
        assert OnnxPolicy.from_bytes(client.latest_policy()[1]).version == client.latest_policy()[0]

        # Two messages lost (seq 8 and 9), then a malformed one: both reported, training goes on.
        client.send(10)
        bad = TransitionBatch(**{k: v for k, v in vars(pendulum_batch(11, obs_dim=4)).items()})
        client.transitions.publish(messages.transitions_to_message(bad, 11))
        client.wait_diagnostic(node, "lost_messages", "2")
        client.wait_diagnostic(node, "decode_errors", "1")
        assert diagnostic_values(client.diagnostics)["_level"] == "1"  # WARN
        assert "2 messages lost (expected seq 8, got 10)" in node.output()
        assert "rl_control/transitions: bad transitions message" in node.output()
        client.wait_progress(node, 9 * BATCH)

        node.send_signal(signal.SIGINT)
        assert node.wait(timeout_s=30.0) == 0, node.output()
    manifest = json.loads(RunDirectory(tmp_path / "run").manifests()[0].read_text())
    state = manifest["stream_state"]  # committed with the checkpoint it describes
    assert state["last_seq"] == 10 and state["gaps"] == 2 and state["episodes"] == 1
    assert manifest["env_steps"] == 9 * BATCH and manifest["num_updates"] == progress.updates + UTD * BATCH
    # Each message ends a stream in the replay (the next one stored may come from another robot or follow
    # a gap, as seq 10 does): no n-step return runs from one message into the next.
    agent = load_experiment(config).learner_node.agent
    stored = Learner.create_or_resume(tmp_path / "run", 3, 1, agent).replay.truncated[: 9 * BATCH]
    assert stored.reshape(9, BATCH)[:, -1].all() and not stored.reshape(9, BATCH)[:, :-1].any()


def test_sigkill_restart_resumes_from_checkpoint_and_catches_up(tmp_path: Path, probe) -> None:
    client = LearnerClient(probe)
    run_dir = tmp_path / "run"
    config = write_config(tmp_path, checkpoint_every_s=1.0)
    node = NodeProcess("learner_node", config).start()
    try:
        assert probe.spin_until(lambda: client.transitions.get_subscription_count() > 0, STARTUP_S)
        for seq in range(8):
            client.send(seq)
        client.wait_progress(node, 8 * BATCH)

        def checkpointed_everything() -> bool:
            manifests = RunDirectory(run_dir).manifests()
            return bool(manifests) and json.loads(manifests[0].read_text())["stream_state"]["last_seq"] == 7

        assert probe.spin_until(checkpointed_everything, 15.0), node.output()
        saved = json.loads(RunDirectory(run_dir).manifests()[0].read_text())
        assert saved["num_updates"] > 0 and saved["env_steps"] == 8 * BATCH
        node.send_signal(signal.SIGKILL)
        assert node.wait(timeout_s=10.0) == -signal.SIGKILL
    finally:
        node.stop()

    # The actor keeps running while the learner is down: these batches must not be lost.
    for seq in range(8, 12):
        client.send(seq)
    versions_before_restart = len(client.policies)
    with NodeProcess("learner_node", config) as restarted:
        assert probe.spin_until(lambda: len(client.policies) > versions_before_restart, STARTUP_S), (
            restarted.output()
        )
        version, _ = client.latest_policy()
        assert version > saved["policy_version"]  # versions continue, never restart from 1
        client.wait_progress(restarted, 12 * BATCH)
        progress = client.latest_progress()
        assert progress.updates >= saved["num_updates"] + UTD * 4 * BATCH
        assert progress.last_seq == 11
        # counted once each: the checkpoint's count continues, re-delivered seq 0-7 are not counted again
        assert progress.intervention_transitions == 12 * BATCH // HUMAN_EVERY
        client.wait_diagnostic(restarted, "lost_messages", "0")
        client.wait_diagnostic(restarted, "duplicate_messages", "8")  # seq 0-7 re-delivered, not re-added
        assert "resumed from" in restarted.output()


@pytest.mark.slow
def test_learner_sigkill_while_the_actor_keeps_controlling_the_sim(tmp_path: Path, probe) -> None:
    """The whole training graph (realtime sim): the learner dies, the robot stays controlled, it resumes."""
    controller = "effort_controller"
    run_dir = tmp_path / "run"
    document = yaml.safe_load(
        write_config(tmp_path, checkpoint_every_s=1.0, publish_every_updates=50).read_text()
    )
    document["/**"]["ros__parameters"].update(controller=controller, control_rate_hz=50.0)
    document["learner_node"]["ros__parameters"]["agent"]["utd_ratio"] = 1
    document["sim_node"] = {"ros__parameters": {"sim_mode": "realtime"}}
    document["actor_node"] = {
        "ros__parameters": {"state_timeout_s": 0.5, "transition_batch_size": 10, "max_policy_lag_steps": 0}
    }
    config = tmp_path / "graph.yaml"
    config.write_text(yaml.safe_dump(document), encoding="utf-8")

    client = LearnerClient(probe)
    commands = probe.collect(Float64MultiArray, messages.command_topic(controller), messages.COMMAND_QOS)
    sim = NodeProcess("sim_node", config).start()
    actor = NodeProcess("actor_node", config).start()
    learner = NodeProcess("learner_node", config).start()
    restarted = NodeProcess("learner_node", config, log_path=tmp_path / "learner_restarted.log")
    try:

        def checkpoint_with_updates() -> bool:
            manifests = RunDirectory(run_dir).manifests()
            return bool(manifests) and json.loads(manifests[0].read_text())["num_updates"] > 0

        assert probe.spin_until(checkpoint_with_updates, 90.0), f"{actor.output()}\n{learner.output()}"
        learner.send_signal(signal.SIGKILL)
        assert learner.wait(timeout_s=10.0) == -signal.SIGKILL
        saved = json.loads(RunDirectory(run_dir).manifests()[0].read_text())

        # While the learner is down the actor keeps commanding the robot at the control rate.
        before = len(commands)
        probe.spin_for(2.0)
        during = [np.asarray(msg.data) for _, msg in commands[before:]]
        assert len(during) >= 50, f"only {len(during)} commands in 2 s without a learner:\n{actor.output()}"
        assert all(cmd.shape == (1,) and np.isfinite(cmd).all() and abs(cmd[0]) <= 2.0 for cmd in during)

        restarted.start()
        ok = probe.spin_until(lambda: client.latest_policy()[0] > saved["policy_version"], STARTUP_S)
        assert ok, restarted.output()
        ok = probe.spin_until(lambda: client.latest_progress().updates > saved["num_updates"], STARTUP_S)
        assert ok, restarted.output()
        assert "resumed from" in restarted.output()
        version = client.latest_policy()[0]
        assert actor.wait_for_output(f"policy v{version} active", 15.0), actor.output()
        client.wait_diagnostic(
            restarted, "lost_messages", "0"
        )  # the downtime's transitions were re-delivered
        assert sim.returncode is None and actor.returncode is None
    finally:
        for process in (restarted, learner, actor, sim):
            process.stop()


def test_demonstrations_are_loaded_once_and_restored_on_restart(tmp_path: Path, probe) -> None:
    demo = tmp_path / "demo.npz"
    TransitionBatch.concatenate([pendulum_batch(seq) for seq in range(4)]).to_npz(demo)
    config = write_config(tmp_path, demo_files=[str(demo)])
    with NodeProcess("learner_node", config) as node:
        assert node.wait_for_output("learner_node running", STARTUP_S), node.output()
        assert f"loaded {4 * BATCH} demonstration transitions from {demo}" in node.output()
    assert node.returncode == 0, node.output()
    with NodeProcess("learner_node", config) as node:
        assert node.wait_for_output("learner_node running", STARTUP_S), node.output()
        assert f"{4 * BATCH} demonstration transitions restored" in node.output()
        assert "loaded" not in node.output()
    # The same run directory with resume disabled is refused clearly instead of overwriting the run.
    no_resume = write_config(tmp_path, demo_files=[str(demo)], resume=False)
    refused = NodeProcess("learner_node", no_resume).start()
    try:
        assert refused.wait(timeout_s=STARTUP_S) == 2
    finally:
        refused.stop()
    assert "configuration error" in refused.output() and "already holds checkpoints" in refused.output()


def test_learner_reports_an_achieved_utd_below_the_configured_one(tmp_path: Path, probe) -> None:
    """Data streaming in faster than a UTD-300 learner can train on it: a warning with both figures."""
    client = LearnerClient(probe)
    agent = {
        "hidden_sizes": [32, 32],
        "batch_size": 32,
        "learning_starts": LEARNING_STARTS,
        "utd_ratio": 300,
        "buffer_capacity": 5000,
        "device": "cpu",
    }
    config = write_config(tmp_path, agent=agent, publish_every_updates=1_000_000)
    with NodeProcess("learner_node", config) as node:
        assert probe.spin_until(lambda: bool(client.policies), STARTUP_S), node.output()
        assert probe.spin_until(lambda: client.transitions.get_subscription_count() > 0, 10.0)
        for seq in range(60):  # 125 env steps/s for up to 12 s, like a robot that does not wait
            client.send(seq)
            probe.spin_until(lambda: False, 0.2)
            values = diagnostic_values(client.diagnostics)
            if values.get("_level") == "1" and float(values.get("achieved_utd", "nan")) < 270:
                break
        assert values["configured_utd"] == "300", values
        assert float(values["achieved_utd"]) < 270 and values["_level"] == "1", values
        assert probe.spin_until(lambda: "is below the configured 300" in node.output(), 10.0), node.output()
        node.send_signal(signal.SIGINT)
        assert node.wait(timeout_s=30.0) == 0, node.output()
