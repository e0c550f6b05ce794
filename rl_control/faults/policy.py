"""Policy-authority fault scenarios, each against a real ``actor_node`` process.

The scenario process plays the robot (joint states at 100 Hz, the actor's commands recorded with their
arrival times) and the hostile or faulty publisher on ``/rl_control/policy``; the actor runs the pendulum
task at 50 Hz. The policies are hand-built ONNX graphs with a known fault
(:mod:`rl_control.testing.policies`).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, UInt8MultiArray

from rl_control.faults import ScenarioContext, ScenarioResult, scenario
from rl_control.policy.authority import sign_policy
from rl_control.ros import messages
from rl_control.testing.node_process import NodeProcess
from rl_control.testing.policies import HugePolicyPublisher, graph_policy, slow_policy
from rl_control.testing.probe import command_rows

STARTUP_S = 90.0
#: Waits for the actor to react to a policy message (loading, probing): generous on a loaded machine.
REACT_S = 30.0
RATE_HZ = 50.0
CONTROLLER = "faults_controller"
KEY = b"fault scenario key shared by learner and actor"
COMMAND_HIGH = 2.0  # pendulum_swingup's torque limit: a policy action a gives the command a * 2 N*m


class ActorUnderTest:
    """An actor_node config in a work directory, the robot's side of its topics, and its process."""

    def __init__(
        self,
        context: ScenarioContext,
        *,
        shared: dict[str, Any],
        actor: dict[str, Any] | None = None,
        signed_only: bool = False,
    ) -> None:
        self.context = context
        self.probe = context.probe
        actor = dict(actor or {})
        if signed_only:
            key_file = context.workdir / "policy.key"
            key_file.write_bytes(KEY)
            key_file.chmod(0o600)
            shared = {**shared, "policy_key_file": str(key_file)}
            actor["require_signed_policies"] = True
        document = {
            "/**": {
                "ros__parameters": {
                    "task": "pendulum_swingup",
                    "controller": CONTROLLER,
                    "control_rate_hz": RATE_HZ,
                    "run_dir": str(context.workdir / "run"),
                    **shared,
                }
            },
            "actor_node": {"ros__parameters": {"reset_service": "", "state_timeout_s": 0.3, **actor}},
        }
        self.config = context.workdir / "config.yaml"
        self.config.write_text(yaml.safe_dump(document), encoding="utf-8")
        self.position = np.array([0.4])  # real observations are not the zero observation
        self.velocity = np.array([0.0])
        self._state_pub = self.probe.publisher(JointState, messages.JOINT_STATES_TOPIC, messages.STATE_QOS)
        self.policy_pub = self.probe.publisher(UInt8MultiArray, messages.POLICY_TOPIC, messages.POLICY_QOS)
        self.commands = self.probe.collect(
            Float64MultiArray, messages.command_topic(CONTROLLER), messages.COMMAND_QOS
        )
        self.diagnostics = self.probe.collect(
            DiagnosticArray, messages.DIAGNOSTICS_TOPIC, messages.DIAGNOSTICS_QOS
        )
        self.probe.node.create_timer(0.01, self._publish_state)
        self.node = NodeProcess("actor_node", self.config, log_path=context.workdir / "actor.log")

    def _publish_state(self) -> None:
        msg = JointState()
        msg.header.stamp = self.probe.node.get_clock().now().to_msg()
        msg.name = ["hinge"]
        msg.position = [float(v) for v in self.position]
        msg.velocity = [float(v) for v in self.velocity]
        msg.effort = [0.0]
        self._state_pub.publish(msg)

    def __enter__(self) -> ActorUnderTest:
        self.node.start()
        if not self.wait_command(lambda _command: True, STARTUP_S):
            self.node.stop()
            raise RuntimeError(f"actor_node sent no command:\n{self.node.output()}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.node.stop()

    def publish(self, data: bytes, version: int, *, signed: bool = False) -> float:
        """Publish a policy (signed with the shared key when ``signed``); returns the publish time."""
        signature = sign_policy(KEY, data, version) if signed else ""
        self.policy_pub.publish(messages.encode_policy(data, version, signature))
        return time.monotonic()

    def command_values(self, since: float = 0.0) -> np.ndarray:
        return command_rows(self.commands, since).reshape(-1, 1)

    def command_times(self, start: float, end: float) -> np.ndarray:
        return np.array([t for t, _ in self.commands if start <= t <= end])

    def wait_command(self, predicate: Any, timeout_s: float, since: float = 0.0) -> bool:
        def newest_matches() -> bool:
            values = self.command_values(since)
            return len(values) > 0 and bool(predicate(values[-1]))

        return self.probe.spin_until(newest_matches, timeout_s)

    def diagnostic(self, key: str, since: float = 0.0) -> str | None:
        """The newest value of one of the actor's diagnostics received at or after ``since``."""
        for received, msg in reversed(self.diagnostics):
            if received < since:
                return None
            for status in msg.status:
                if status.name.startswith("actor_node"):
                    for item in status.values:
                        if item.key == key:
                            return str(item.value)
        return None

    def counter(self, key: str, since: float, timeout_s: float = REACT_S) -> int:
        """One of the actor's counters (e.g. ``deadline_misses``) from a diagnostics message received after
        ``since`` (-1: none)."""
        self.probe.spin_until(lambda: self.diagnostic(key, since) is not None, timeout_s)
        value = self.diagnostic(key, since)
        return -1 if value is None else int(float(value))

    def wait_diagnostic(self, key: str, value: str, timeout_s: float = REACT_S) -> float | None:
        """Seconds until diagnostics show ``key == value`` (None: not within ``timeout_s``)."""
        start = time.monotonic()
        if self.probe.spin_until(lambda: self.diagnostic(key) == value, timeout_s):
            return time.monotonic() - start
        return None


def commanding(action: float) -> Any:
    """A command predicate: the policy action ``action`` (command ``action * COMMAND_HIGH``)."""
    return lambda command: abs(command[0] - action * COMMAND_HIGH) < 1e-3


def logged(actor: ActorUnderTest, text: str, timeout_s: float = REACT_S) -> float | None:
    """Seconds until the actor's log holds ``text`` (the robot keeps being served meanwhile)."""
    start = time.monotonic()
    if actor.probe.spin_until(lambda: text in actor.node.output(), timeout_s):
        return time.monotonic() - start
    return None


def kept_running(actor: ActorUnderTest, action: float, seconds: float = 1.0) -> tuple[int, int, int]:
    """Commands over the next ``seconds``: how many, how many from the policy acting ``action``, and how
    many were neither that nor the safe command (0: stale state on a loaded machine gives the safe command,
    which is not a policy's doing)."""
    since = time.monotonic()
    actor.probe.spin_for(seconds)
    values = actor.command_values(since)[:, 0]
    ours = np.abs(values - action * COMMAND_HIGH) < 1e-3
    safe = values == 0.0
    return len(values), int(np.sum(ours)), int(np.sum(~ours & ~safe))


def refusal(
    context: ScenarioContext, data: bytes, version: int, *, signed: bool, expect: str
) -> ScenarioResult:
    """A signed-only actor runs policy v1 (action 0.5); ``data`` arrives as ``version``. Held when it is
    refused (``expect`` in the log, one rejection) and v1 keeps commanding; the figure is the time from
    publishing to the refusal in the log."""
    with ActorUnderTest(context, shared={"mode": "deploy"}, signed_only=True) as actor:
        actor.probe.spin_for(1.0)  # the actor sees real observations: its probe set
        actor.publish(graph_policy(0.5, version=1), 1, signed=True)
        if not actor.wait_command(commanding(0.5), REACT_S):
            return ScenarioResult(f"policy v1 never ran:\n{actor.node.output()}", held=False)
        actor.publish(data, version, signed=signed)
        seconds = logged(actor, expect)
        commands, from_v1, other = kept_running(actor, 0.5)
        actor.probe.spin_for(1.5)  # the next diagnostics (1 Hz)
        rejected, active = actor.diagnostic("policies_rejected"), actor.diagnostic("policy_version")
    held = (
        seconds is not None and other == 0 and from_v1 >= 0.8 * commands and (rejected, active) == ("1", "1")
    )
    refused = "never refused" if seconds is None else f"refused {seconds:.2f} s after publishing"
    return ScenarioResult(
        f"{refused}; then {from_v1} of {commands} commands in 1 s from policy v1 ({other} from another "
        f"policy, the rest safe); policies_rejected={rejected}, policy_version={active}",
        held=held,
        values={
            "refusal_s": -1.0 if seconds is None else seconds,
            "commands_after": float(commands),
            "from_other_policy": float(other),
        },
    )


@scenario("policy_deploy_topic_ignored")
def deploy_topic_ignored(context: ScenarioContext) -> ScenarioResult:
    """The fault: in deploy mode any process on the domain replaced the deployed policy."""
    policy_file = context.workdir / "deployed.onnx"
    policy_file.write_bytes(graph_policy(0.5, version=3))
    shared = {"mode": "deploy"}
    with ActorUnderTest(context, shared=shared, actor={"policy_file": str(policy_file)}) as actor:
        if not actor.wait_command(commanding(0.5), REACT_S):
            return ScenarioResult(f"deployed policy never ran:\n{actor.node.output()}", held=False)
        actor.publish(graph_policy(-0.9, version=99), 99)  # a hostile publisher
        commands, deployed, other = kept_running(actor, 0.5, seconds=3.0)
        actor.wait_diagnostic("policy_updates", "ignored")
        version, updates = actor.diagnostic("policy_version"), actor.diagnostic("policy_updates")
        subscribers = actor.policy_pub.get_subscription_count()
    held = (
        other == 0
        and commands > 50
        and deployed >= 0.8 * commands
        and (version, updates, subscribers) == ("3", "ignored", 0)
    )
    return ScenarioResult(
        f"{deployed} of {commands} commands in 3 s after a hostile policy from the deployed v3 ({other} from "
        f"another policy); policy topic subscribers {subscribers}; policy_updates={updates}",
        held=held,
        values={
            "commands": float(commands),
            "from_other_policy": float(other),
            "policy_subscribers": float(subscribers),
        },
    )


@scenario("policy_unsigned_refused")
def unsigned_refused(context: ScenarioContext) -> ScenarioResult:
    """An unsigned policy reaches an actor that accepts signed policies only."""
    return refusal(
        context,
        graph_policy(-0.5, version=2),
        2,
        signed=False,
        expect="policy v2 is not signed and signed policies are required",
    )


@scenario("policy_nan_on_nonzero_refused")
def nan_on_nonzero_refused(context: ScenarioContext) -> ScenarioResult:
    """The fault: a policy finite on the zero observation, NaN on every real one, was installed."""
    data = graph_policy(-0.5, version=3, nan_when="nonzero")
    return refusal(context, data, 3, signed=True, expect="policy v3 failed on recent observation #1")


@scenario("policy_slow_refused")
def slow_refused(context: ScenarioContext) -> ScenarioResult:
    """The fault: a policy taking 120 ms per call was accepted and the 50 Hz loop fell to 10 Hz."""
    data, call_s = slow_policy(version=4)
    result = refusal(context, data, 4, signed=True, expect="policy v4 is too slow")
    result.values["policy_call_s"] = call_s
    result.figure = f"{call_s * 1e3:.0f} ms per call vs budget {0.25e3 / RATE_HZ:.0f} ms: {result.figure}"
    return result


@scenario("policy_rollback_after_invalid_ticks")
def rollback_after_invalid_ticks(context: ScenarioContext) -> ScenarioResult:
    """A policy passes the probe set, then returns NaN once the joint moves fast: back to the previous one."""
    limit = 5
    actor_params = {"rollback_invalid_ticks": limit}
    with ActorUnderTest(context, shared={"mode": "deploy"}, actor=actor_params, signed_only=True) as actor:
        actor.probe.spin_for(1.0)
        actor.publish(graph_policy(0.5, version=1), 1, signed=True)
        good = actor.wait_command(commanding(0.5), REACT_S)
        actor.publish(graph_policy(-0.25, version=5, nan_when="fast"), 5, signed=True)
        bad_ran = actor.wait_command(commanding(-0.25), REACT_S)
        if not (good and bad_ran):
            return ScenarioResult(f"the policies never ran:\n{actor.node.output()}", held=False)
        stale_before = actor.counter("stale_ticks", 0.0)
        actor.velocity[:] = 8.0  # v5 now returns NaN
        since = time.monotonic()
        back = actor.wait_command(commanding(0.5), 10.0, since)
        seconds = time.monotonic() - since
        rollbacks = actor.wait_diagnostic("policy_rollbacks", "1")
        version = actor.diagnostic("policy_version")
        reported = logged(actor, f"policy v5 rolled back after {limit} invalid outputs in a row") is not None
        until = time.monotonic()
        values = actor.command_values(since)
        stale = actor.counter("stale_ticks", until) - stale_before
    finite = bool(np.all(np.isfinite(values)))
    from_policies = np.isclose(values[:, 0], 0.5 * COMMAND_HIGH, atol=1e-3) | np.isclose(
        values[:, 0], -0.25 * COMMAND_HIGH, atol=1e-3
    )
    # A tick without a fresh state (this process late to publish it) also sends the safe command: the
    # actor's own count of those is not the rolled-back policy's doing.
    from_bad_policy = int(np.sum(~from_policies)) - max(stale, 0)
    held = (
        back and rollbacks is not None and version == "1" and finite and from_bad_policy <= limit and reported
    )
    return ScenarioResult(
        f"back to v1 {seconds:.2f} s after v5 went bad, {from_bad_policy} safe commands in between (limit "
        f"{limit}; {stale} more for stale states); all commands finite: {finite}; rollback logged: "
        f"{reported}",
        held=held,
        values={"safe_commands": float(from_bad_policy), "stale_ticks": float(stale), "rollback_s": seconds},
    )


@scenario("policy_50mb_message")
def huge_policy_message(context: ScenarioContext) -> ScenarioResult:
    """The fault: a 200 MB policy message stalled the control loop 667 ms. While a 50 MB message arrives,
    the actor's own deadline clock counts no more ticks late by more than a period than in the 8 s before
    (reference: on a quiet machine none; a stall counts one per period). The gap between commands as this
    process receives them is also reported, against the same gap in the 8 s before, but it includes this
    process's and DDS's scheduling on a shared machine."""
    period_s = 1.0 / RATE_HZ
    with ActorUnderTest(context, shared={"mode": "deploy"}) as actor:
        actor.publish(graph_policy(0.5, version=1), 1)
        if not actor.wait_command(commanding(0.5), REACT_S):
            return ScenarioResult(f"policy v1 never ran:\n{actor.node.output()}", held=False)
        reference_start = time.monotonic()
        misses_at_start = actor.counter("deadline_misses", reference_start)
        actor.probe.spin_for(8.0)
        reference_end = time.monotonic()
        misses_before = actor.counter("deadline_misses", reference_end - 2.0)
        with HugePolicyPublisher(50 * 2**20) as publisher:
            refused = actor.probe.spin_until(lambda: actor.diagnostic("policies_rejected") == "1", 60.0)
            actor.probe.spin_for(1.0)
            window_end = time.monotonic()
        refused = (
            refused
            and logged(actor, "exceeds the size cap of 16.0 MiB") is not None
            and actor.diagnostic("policy_version") == "1"
        )
        misses_after = actor.counter("deadline_misses", window_end)
        published_at = publisher.published_at()
        reference_times = actor.command_times(reference_start, reference_end)
        during_times = actor.command_times(published_at, window_end)
    reference = float(np.max(np.diff(reference_times)))
    during = float(np.max(np.diff(during_times)))
    missed = misses_after - misses_before
    reference_missed = misses_before - misses_at_start
    enough = len(during_times) > 0.8 * RATE_HZ * (window_end - published_at)
    held = refused and enough and misses_at_start >= 0 and 0 <= missed <= reference_missed
    return ScenarioResult(
        f"{missed} tick(s) late by more than a period ({period_s * 1e3:.0f} ms) while a 50 MB message "
        f"arrived (refused at the size cap: {refused}), {reference_missed} in the "
        f"{reference_end - reference_start:.0f} s before; largest gap between commands as received "
        f"{during * 1e3:.1f} ms, {reference * 1e3:.1f} ms before it",
        held=held,
        values={
            "missed_ticks": float(missed),
            "reference_missed_ticks": float(reference_missed),
            "gap_ms": during * 1e3,
            "reference_gap_ms": reference * 1e3,
            "period_ms": period_s * 1e3,
        },
    )
