"""Learner and persistence fault scenarios, each against real ``learner_node`` processes.

The test process plays the actor (it publishes transitions on the real topic); a "restarted actor" is a
new publisher, whose transient-local history starts empty, exactly as after an actor process restart.
"""

from __future__ import annotations

import json
import signal
from typing import Any

import numpy as np
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from std_msgs.msg import Float64MultiArray, Int64MultiArray, UInt8MultiArray

from rl_control.faults import ScenarioContext, ScenarioResult, scenario
from rl_control.learning.checkpoint import REPLAY_DIR, RUN_FILE, RunDirectory
from rl_control.ros import messages
from rl_control.testing.node_process import NodeProcess
from rl_control.transitions import TransitionBatch

STARTUP_S = 90.0
#: Waits for training progress and checkpoints: generous, the machine may be shared and loaded.
PROGRESS_S = 180.0
BATCH = 25
INTERVENTION_EVERY = 5  # every 5th row of the scripted stream is flagged as a human's action
HUGE_REWARD = 3e38  # finite in float32


def pendulum_transitions(seq: int, rows: int = BATCH) -> TransitionBatch:
    """Plausible pendulum swing-up transitions for message ``seq``; an episode ends every 200 rows and every
    :data:`INTERVENTION_EVERY`-th row is flagged as an intervention."""
    rng = np.random.default_rng(seq)
    theta = rng.uniform(-np.pi, np.pi, rows)
    obs = np.stack([np.cos(theta), np.sin(theta), rng.uniform(-8, 8, rows)], axis=1).astype(np.float32)
    row_index = seq * rows + np.arange(rows)
    return TransitionBatch(
        obs=obs,
        action=rng.uniform(-1, 1, (rows, 1)).astype(np.float32),
        reward=(-(theta**2) / np.pi**2).astype(np.float32),
        next_obs=obs,
        terminated=np.zeros(rows, np.float32),
        truncated=((row_index + 1) % 200 == 0).astype(np.float32),
        intervention=(row_index % INTERVENTION_EVERY == 0).astype(np.float32),
    )


class LearnerUnderTest:
    """A learner_node config in a work directory, its processes, and the actor's side of its topics."""

    def __init__(self, context: ScenarioContext, **learner_params: Any) -> None:
        self.context = context
        self.probe = context.probe
        self.run_dir = context.workdir / "run"
        self.config = context.workdir / "config.yaml"
        params = {
            "preset": "sac",
            "agent": {
                "hidden_sizes": [32, 32],
                "batch_size": 32,
                "learning_starts": 50,
                "utd_ratio": 1,
                "buffer_capacity": 5000,
                "device": "cpu",
            },
            "publish_every_updates": 40,
            "checkpoint_every_s": 60.0,
            **learner_params,
        }
        document = {
            "/**": {"ros__parameters": {"task": "pendulum_swingup", "run_dir": str(self.run_dir), "seed": 1}},
            "learner_node": {"ros__parameters": params},
        }
        self.config.write_text(yaml.safe_dump(document), encoding="utf-8")
        self.policies = self.probe.collect(UInt8MultiArray, messages.POLICY_TOPIC, messages.POLICY_QOS)
        self.progress = self.probe.collect(
            Int64MultiArray, messages.LEARNER_PROGRESS_TOPIC, messages.PROGRESS_QOS
        )
        self.diagnostics = self.probe.collect(
            DiagnosticArray, messages.DIAGNOSTICS_TOPIC, messages.DIAGNOSTICS_QOS
        )
        self.actor = self.new_actor()
        self._starts = 0

    def new_actor(self) -> Any:
        """A fresh transitions publisher (an actor process started anew: empty history)."""
        return self.probe.publisher(Float64MultiArray, messages.TRANSITIONS_TOPIC, messages.TRANSITIONS_QOS)

    def restart_actor(self) -> None:
        """Drop the actor's publisher with its history and start a new one."""
        self.probe.node.destroy_publisher(self.actor)
        self.actor = self.new_actor()

    def start(self) -> NodeProcess:
        """Start a learner_node and wait until it subscribed to the transitions (forgetting what earlier
        learner processes published)."""
        self._starts += 1
        self.probe.spin_for(0.5)  # take in what earlier processes still had in flight, then forget it
        for received in (self.policies, self.progress, self.diagnostics):
            received.clear()
        log_path = self.context.workdir / f"learner_{self._starts}.log"
        node = NodeProcess("learner_node", self.config, log_path=log_path).start()
        if not node.wait_for_output("learner_node running", STARTUP_S):
            node.stop()
            raise RuntimeError(f"learner_node did not start:\n{node.output()}")
        if not self.probe.spin_until(lambda: self.actor.get_subscription_count() > 0, 30.0):
            node.stop()
            raise RuntimeError("learner_node never subscribed to the transitions")
        return node

    def send(self, seqs: range, batch: TransitionBatch | None = None) -> None:
        for seq in seqs:
            self.actor.publish(messages.transitions_to_message(batch or pendulum_transitions(seq), seq))

    def latest_progress(self) -> messages.LearnerProgress:
        return messages.decode_progress(self.progress[-1][1]) if self.progress else messages.LearnerProgress()

    def wait_progress(self, node: NodeProcess, env_steps: int, timeout_s: float = PROGRESS_S) -> None:
        """Wait until the learner trained on (or stored before learning starts) ``env_steps`` steps."""
        if not self.probe.spin_until(lambda: self.latest_progress().env_steps >= env_steps, timeout_s):
            raise RuntimeError(
                f"progress {self.latest_progress()} never reached {env_steps} env steps:\n{node.output()}"
            )

    def diagnostic(self, key: str) -> str | None:
        """The newest value of one of the learner's diagnostics (``None`` before any)."""
        for _, msg in reversed(self.diagnostics):
            for status in msg.status:
                if status.name == "learner_node":
                    return {kv.key: kv.value for kv in status.values}.get(key)
        return None

    def wait_received(self, node: NodeProcess, seq: int) -> None:
        """Wait until the learner received (logged) message ``seq``, trained on or not."""
        if self.wait_diagnostic("last_seq", lambda value: value == str(seq), PROGRESS_S) != str(seq):
            raise RuntimeError(f"learner never received seq {seq}:\n{node.output()}")

    def wait_diagnostic(self, key: str, accept: Any, timeout_s: float = 15.0) -> str | None:
        """Spin until ``accept(value)`` holds for diagnostic ``key``; returns the last value seen."""
        self.probe.spin_until(
            lambda: (value := self.diagnostic(key)) is not None and accept(value), timeout_s
        )
        return self.diagnostic(key)

    def manifest(self) -> dict[str, Any]:
        """The newest checkpoint manifest (``{}`` if none)."""
        manifests = RunDirectory(self.run_dir).manifests()
        return json.loads(manifests[0].read_text()) if manifests else {}

    def wait_checkpoint(self, env_steps: int, timeout_s: float = PROGRESS_S) -> None:
        if not self.probe.spin_until(lambda: self.manifest().get("env_steps", -1) >= env_steps, timeout_s):
            raise RuntimeError(f"no checkpoint with {env_steps} env steps in {self.run_dir}")

    @staticmethod
    def stop_cleanly(node: NodeProcess) -> int:
        node.send_signal(signal.SIGINT)
        return node.wait(timeout_s=60.0)


def policy_outputs_finite(onnx_bytes: bytes, samples: int = 64) -> bool:
    """True if the ONNX policy's actions are finite on random pendulum observations."""
    from rl_control.learning import OnnxPolicy

    policy = OnnxPolicy.from_bytes(onnx_bytes)
    try:
        for obs in pendulum_transitions(0, samples).obs:
            policy(obs)  # raises on a non-finite action
    except ValueError:
        return False
    return True


def held_rows(manifest: dict[str, Any]) -> int:
    """Transitions the checkpoint's replay chunks hold."""
    return sum(entry["end"] - entry["start"] for entry in manifest.get("replay_chunks", []))


@scenario("learner_huge_reward")
def huge_reward(context: ScenarioContext) -> ScenarioResult:
    """One row with reward 3e38 (finite in float32): dropped and counted; training and restarts go on."""
    learner = LearnerUnderTest(context)
    node = learner.start()
    poisoned = pendulum_transitions(3)
    poisoned.reward[7] = HUGE_REWARD
    learner.send(range(3))
    learner.send(range(3, 4), poisoned)
    learner.send(range(4, 8))
    learner.wait_progress(node, 8 * BATCH - 1)
    dropped = int(learner.wait_diagnostic("out_of_bounds_transitions", lambda v: v != "0") or 0)
    learner.probe.spin_until(lambda: learner.latest_progress().updates >= 100, PROGRESS_S)
    updates = learner.latest_progress().updates
    first_exit = learner.stop_cleanly(node)
    restarted = learner.start()
    resumed = "resumed from" in restarted.output()
    second_exit = learner.stop_cleanly(restarted)
    held = dropped == 1 and updates >= 100 and first_exit == second_exit == 0 and resumed
    figure = (
        f"{dropped} row dropped (reward 3e38 > max_abs_reward), {updates} updates after it, "
        f"exit {first_exit}, restart {'resumed' if resumed else 'FAILED'} (exit {second_exit})"
    )
    return ScenarioResult(
        figure,
        held,
        {"dropped": dropped, "updates": updates, "exit": first_exit, "restart_exit": second_exit},
    )


@scenario("learner_diverged_update_rollback")
def diverged_update(context: ScenarioContext) -> ScenarioResult:
    """Bounds opened wide so rewards of 1e29 are stored (their squared error overflows float32): the
    diverged updates are rolled back, counted, and only finite policies are published and checkpointed;
    the restart resumes."""
    learner = LearnerUnderTest(context, max_abs_reward=1e30)
    node = learner.start()
    poisoned = pendulum_transitions(3)
    poisoned.reward[:] = 1e29
    learner.send(range(3))
    learner.send(range(3, 4), poisoned)
    learner.send(range(4, 8))
    learner.wait_progress(node, 8 * BATCH)
    rollbacks = int(learner.wait_diagnostic("rolled_back_updates", lambda v: v != "0", PROGRESS_S) or 0)
    alive = node.returncode is None
    finite_policy = bool(learner.policies) and policy_outputs_finite(
        messages.decode_policy(learner.policies[-1][1])[1]
    )
    first_exit = learner.stop_cleanly(node)
    restarted = learner.start()
    resumed = "resumed from" in restarted.output()
    second_exit = learner.stop_cleanly(restarted)
    held = rollbacks > 0 and alive and finite_policy and first_exit == second_exit == 0 and resumed
    figure = (
        f"{rollbacks} diverged chunk(s) rolled back, node alive: {alive}, "
        f"last policy finite: {finite_policy}, "
        f"exit {first_exit}, restart exit {second_exit}"
    )
    return ScenarioResult(figure, held, {"rollbacks": rollbacks, "restart_exit": second_exit})


@scenario("learner_damaged_oldest_chunk")
def damaged_chunk(context: ScenarioContext) -> ScenarioResult:
    """One flipped byte in the oldest replay chunk costs that chunk's rows, not the run."""
    learner = LearnerUnderTest(context, checkpoint_every_s=1.0)
    node = learner.start()
    for part in range(3):  # three checkpoints, each appending a 100-row chunk
        learner.send(range(4 * part, 4 * part + 4))
        learner.wait_checkpoint(100 * (part + 1))
    exit_code = learner.stop_cleanly(node)
    before = learner.manifest()
    oldest = min(before["replay_chunks"], key=lambda entry: entry["start"])
    path = learner.run_dir / oldest["file"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    damaged_rows = oldest["end"] - oldest["start"]
    restarted = learner.start()
    lost = int(learner.wait_diagnostic("transitions_lost_to_damaged_chunks", lambda v: v != "0") or -1)
    second_exit = learner.stop_cleanly(restarted)
    after = learner.manifest()
    recovered = held_rows(after)
    held = (
        exit_code == second_exit == 0
        and lost == damaged_rows
        and recovered == held_rows(before) - damaged_rows
        and after.get("num_updates", 0) >= before["num_updates"]
    )
    figure = (
        f"{recovered} of {held_rows(before)} rows recovered ({lost} lost = the damaged chunk's "
        f"{damaged_rows}), resumed at {after.get('num_updates')} updates, restart exit {second_exit}"
    )
    return ScenarioResult(figure, held, {"recovered": recovered, "lost": lost, "damaged_rows": damaged_rows})


@scenario("learner_truncated_state")
def truncated_state(context: ScenarioContext) -> ScenarioResult:
    """The newest manifest (which now holds the stream state) truncated, plus a truncated legacy
    ``learner_node_state.json``: resume falls back to the older checkpoint, and the write-ahead log and
    the re-delivered history fill the replay again without duplicates."""
    learner = LearnerUnderTest(context, checkpoint_every_s=1.0)
    node = learner.start()
    learner.send(range(4))
    learner.wait_checkpoint(100)
    learner.send(range(4, 8))
    learner.wait_checkpoint(200)
    node.send_signal(signal.SIGKILL)
    node.wait(timeout_s=30.0)
    newest = RunDirectory(learner.run_dir).manifests()[0]
    newest.write_bytes(newest.read_bytes()[:40])
    (learner.run_dir / "learner_node_state.json").write_bytes(b'{"last_seq": 7, "str')
    restarted = learner.start()
    # seq 0-3 are in the older checkpoint, 4-7 come back from the write-ahead log: every re-delivered
    # message (transient-local history of the still running actor) is then a duplicate.
    learner.wait_diagnostic("duplicate_messages", lambda value: value == "8", PROGRESS_S)
    exit_code = learner.stop_cleanly(restarted)
    after = learner.manifest()
    rows = held_rows(after)
    fell_back = "skipping checkpoint" in restarted.output()
    held = exit_code == 0 and fell_back and rows == 200 and after.get("env_steps") == 200
    figure = (
        f"fell back to the older checkpoint: {fell_back}; replay holds {rows} of 200 rows sent "
        f"(env steps {after.get('env_steps')}), exit {exit_code}"
    )
    return ScenarioResult(figure, held, {"rows": rows, "env_steps": after.get("env_steps", -1)})


@scenario("learner_sigkill_with_actor_restart")
def sigkill_with_actor_restart(context: ScenarioContext) -> ScenarioResult:
    """SIGKILL the learner before any checkpoint and restart the actor too (its history is gone): the
    write-ahead log still brings back every received transition, and its intervention flag."""
    learner = LearnerUnderTest(context)
    node = learner.start()
    learner.send(range(8))
    learner.wait_received(node, 7)
    checkpointed = learner.manifest().get("env_steps", 0)
    node.send_signal(signal.SIGKILL)
    node.wait(timeout_s=30.0)
    learner.restart_actor()
    restarted = learner.start()
    learner.send(range(4))  # the new actor's stream starts at seq 0
    learner.wait_received(restarted, 3)
    exit_code = learner.stop_cleanly(restarted)
    after = learner.manifest()
    rows = held_rows(after)
    sent = 12 * BATCH
    human = sum(pendulum_transitions(seq).interventions for seq in (*range(8), *range(4)))
    kept = sum(int(entry.get("interventions", 0)) for entry in after.get("demo_chunks", []))
    counted = after.get("intervention_transitions")
    held = (
        exit_code == 0
        and checkpointed == 0
        and rows == sent
        and after.get("env_steps") == sent
        and kept == counted == human
    )
    figure = (
        f"{rows} of {sent} transitions in the replay after resume ({8 * BATCH} received before the SIGKILL, "
        f"{checkpointed} of them checkpointed), {kept} of {human} intervention transitions in the demo "
        f"buffer ({counted} counted), exit {exit_code}"
    )
    values = {"rows": rows, "sent": sent, "checkpointed": checkpointed, "interventions_kept": kept}
    return ScenarioResult(figure, held, values)


@scenario("learner_run_json_garbage")
def run_json_garbage(context: ScenarioContext) -> ScenarioResult:
    """Random bytes in run.json: the node refuses to start with a message naming the file."""
    learner = LearnerUnderTest(context)
    learner.run_dir.mkdir(parents=True)
    (learner.run_dir / RUN_FILE).write_bytes(np.random.default_rng(0).bytes(512))
    node = NodeProcess("learner_node", learner.config, log_path=context.workdir / "learner.log").start()
    exit_code = node.wait(timeout_s=STARTUP_S)
    named = f"{learner.run_dir / RUN_FILE}: unreadable run description" in node.output()
    held = exit_code == 2 and named and "Traceback" not in node.output()
    figure = f"exit {exit_code}, message names {RUN_FILE}: {named}"
    return ScenarioResult(figure, held, {"exit": exit_code, "named": float(named)})


@scenario("learner_run_json_deleted")
def run_json_deleted(context: ScenarioContext) -> ScenarioResult:
    """run.json deleted while checkpoints exist: recovered from the newest manifest's copy, not recreated
    from whatever the new config says."""
    learner = LearnerUnderTest(context)
    node = learner.start()
    learner.send(range(4))
    learner.wait_received(node, 3)
    first_exit = learner.stop_cleanly(node)
    original = json.loads((learner.run_dir / RUN_FILE).read_text())
    (learner.run_dir / RUN_FILE).unlink()
    restarted = learner.start()
    recovered = "recovered it from" in restarted.output() and "resumed from" in restarted.output()
    second_exit = learner.stop_cleanly(restarted)
    same = json.loads((learner.run_dir / RUN_FILE).read_text()) == original
    replay_files = len(list((learner.run_dir / REPLAY_DIR).glob("*.npz")))
    held = first_exit == second_exit == 0 and recovered and same and replay_files > 0
    figure = (
        f"recovered from the manifest: {recovered}, identical to the original: {same}, exit {second_exit}"
    )
    return ScenarioResult(figure, held, {"recovered": float(recovered), "identical": float(same)})
