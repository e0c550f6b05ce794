"""Actor fault scenarios against real ``actor_node`` (and ``sim_node``) processes.

The test process is the hostile robot: it publishes the joint states (finite, non-finite, huge,
malformed), goes silent, SIGKILLs the actor, and hosts a fake simulator service that counts its calls.
"""

from __future__ import annotations

import math
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger

from rl_control.envs import make_task
from rl_control.envs.tasks import Task
from rl_control.faults import ScenarioContext, ScenarioResult, scenario
from rl_control.graph import ACTOR_NODE, parameter_overrides
from rl_control.launcher import write_overrides
from rl_control.paths import config_path
from rl_control.ros import messages
from rl_control.testing.exported_policy import constant_task_policy
from rl_control.testing.node_process import NodeProcess
from rl_control.testing.probe import command_rows

STARTUP_S = 90.0  # node start-up on a loaded 2-core machine
RATE_HZ = 50.0
POLICY_ACTION = 0.8  # the constant action of the deployed policy
CONTROLLER = "fault_controller"


def write_config(context: ScenarioContext, task: str, actor: dict[str, Any], sim: dict[str, Any]) -> Path:
    """An experiment file for ``task`` at :data:`RATE_HZ` with a policy file; returns its path."""
    policy_file = context.workdir / "policy.onnx"
    policy_file.write_bytes(constant_task_policy(make_task(task), POLICY_ACTION))
    shared = {"task": task, "controller": CONTROLLER, "control_rate_hz": RATE_HZ, "mode": "deploy"}
    actor_params = {"policy_file": str(policy_file), "reset_service": "", "state_timeout_s": 0.5, **actor}
    document = {
        "/**": {"ros__parameters": {**shared, "run_dir": str(context.workdir / "run")}},
        "sim_node": {"ros__parameters": sim},
        "actor_node": {"ros__parameters": actor_params},
    }
    path = context.workdir / "config.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


class Robot:
    """The test side of a running actor: its joint states (from a message factory), commands, diagnostics."""

    def __init__(self, context: ScenarioContext, message: Callable[[], JointState | None]) -> None:
        self.probe = context.probe
        self.message = message
        self.sent = 0
        self.last_sent_at = 0.0
        self.state_pub = self.probe.publisher(JointState, messages.JOINT_STATES_TOPIC, messages.STATE_QOS)
        self.commands = self.probe.collect(
            Float64MultiArray, messages.command_topic(CONTROLLER), messages.COMMAND_QOS
        )
        self.diagnostics = self.probe.collect(
            DiagnosticArray, messages.DIAGNOSTICS_TOPIC, messages.DIAGNOSTICS_QOS
        )
        self.probe.node.create_timer(1.0 / (2 * RATE_HZ), self._publish)

    def _publish(self) -> None:
        msg = self.message()
        if msg is not None:
            msg.header.stamp = self.probe.node.get_clock().now().to_msg()
            self.state_pub.publish(msg)
            self.sent += 1
            self.last_sent_at = time.monotonic()

    def command_values(self, since: float = 0.0) -> np.ndarray:
        return command_rows(self.commands, since)

    def wait_command(
        self, accept: Callable[[np.ndarray], bool], timeout_s: float, node: NodeProcess
    ) -> float:
        """Spin until a command satisfying ``accept`` arrives; returns its receipt time."""
        start = len(self.commands)

        def arrived() -> bool:
            return any(accept(np.array(msg.data)) for _, msg in self.commands[start:])

        if not self.probe.spin_until(arrived, timeout_s):
            raise RuntimeError(f"no such command within {timeout_s} s:\n{node.output()[-3000:]}")
        return next(t for t, msg in self.commands[start:] if accept(np.array(msg.data)))

    def diagnostic(self, key: str) -> str | None:
        for _, array in reversed(self.diagnostics):
            for status in array.status:
                if status.name.startswith("actor_node"):
                    values = {item.key: item.value for item in status.values}
                    if key in values:
                        return values[key]
        return None

    def counter(self, key: str) -> int:
        return int(float(self.diagnostic(key) or 0))


def joint_state(names: list[str], position: list[float], velocity: list[float]) -> JointState:
    msg = JointState()
    msg.name, msg.position, msg.velocity = names, position, velocity
    msg.effort = [0.0] * len(names)
    return msg


def hostile_states(names: list[str]) -> list[tuple[str, JointState]]:
    """One good state and the hostile ones: non-finite, huge (finite) and malformed JointStates."""
    n = len(names)
    zeros = [0.1] * n
    huge = 1e308

    def with_first(value: float) -> list[float]:
        return [value, *zeros[1:]]

    return [
        ("good", joint_state(names, zeros, zeros)),
        ("nan_position", joint_state(names, with_first(math.nan), zeros)),
        ("inf_velocity", joint_state(names, zeros, with_first(math.inf))),
        ("huge_position", joint_state(names, with_first(huge), zeros)),
        ("huge_negative_velocity", joint_state(names, zeros, with_first(-huge))),
        ("wrong_lengths", joint_state(names, [*zeros, 0.2], zeros)),
        ("duplicate_names", joint_state([names[0], *names], [0.3, *zeros], [0.0, *zeros])),
        ("missing_joint", joint_state(names[1:], zeros[1:], zeros[1:])),
        ("names_without_positions", joint_state(names, [], [])),
    ]


def out_of_limits(commands: np.ndarray, task: Task) -> int:
    """Commands with a non-finite value or a value outside the task's command limits."""
    if commands.size == 0:
        return 0
    bad = ~np.isfinite(commands).all(axis=1)
    bad |= (commands < task.command_low - 1e-9).any(axis=1) | (commands > task.command_high + 1e-9).any(
        axis=1
    )
    return int(bad.sum())


@scenario("actor_hostile_joint_states")
def hostile_joint_states(context: ScenarioContext) -> ScenarioResult:
    """A deployed arm actor fed NaN/Inf/1e308 and malformed JointStates, interleaved with good ones:
    no non-finite or out-of-limit command; malformed messages and invalid states counted."""
    task = make_task("arm_reach")
    config = write_config(context, "arm_reach", {"safe_command": "hold"}, {})
    cases = hostile_states(list(task.joint_names))
    sent: dict[str, int] = {name: 0 for name, _ in cases}
    index = [0]
    # half the messages good, at random: a fixed alternation at twice the control rate can phase-lock with
    # the actor's clock on a steady machine, so that every tick saw a good state (no invalid-state tick)
    good = np.random.default_rng(0)

    def next_message() -> JointState:
        name, msg = cases[0] if good.random() < 0.5 else cases[1 + index[0] % (len(cases) - 1)]
        index[0] += 1
        sent[name] += 1
        return msg

    robot = Robot(context, next_message)
    with NodeProcess("actor_node", config, log_path=context.workdir / "actor.log") as node:
        if not context.probe.spin_until(lambda: len(robot.commands) > 0, STARTUP_S):
            raise RuntimeError(f"actor_node sent no command:\n{node.output()[-3000:]}")
        context.probe.spin_until(lambda: len(robot.commands) >= 750, 60.0)
        context.probe.spin_for(1.5)  # the diagnostics of the whole run
        alive = node.returncode is None
    commands = robot.command_values()
    bad = out_of_limits(commands, task)
    malformed = robot.counter("state_errors")
    invalid = robot.counter("invalid_state_ticks")
    policy_ticks = robot.counter("policy_ticks")
    malformed_sent = sum(sent[name] for name in ("wrong_lengths", "duplicate_names", "missing_joint"))
    malformed_sent += sent["names_without_positions"]
    held = bad == 0 and alive and malformed > 0 and invalid > 0 and policy_ticks > 0
    figure = (
        f"{bad} non-finite/out-of-limit commands in {len(commands)}; {robot.sent} states sent "
        f"({malformed_sent} malformed): {malformed} refused (state_errors), {invalid} invalid-state ticks, "
        f"{policy_ticks} policy ticks, actor {'alive' if alive else 'DIED'}"
    )
    values = {
        "bad_commands": float(bad),
        "commands": float(len(commands)),
        "malformed_sent": float(malformed_sent),
        "state_errors": float(malformed),
        "invalid_state_ticks": float(invalid),
        "policy_ticks": float(policy_ticks),
    }
    return ScenarioResult(figure, held=held, values=values)


@scenario("actor_stale_state")
def stale_state(context: ScenarioContext) -> ScenarioResult:
    """The robot goes silent: the safe command follows within ``state_timeout_s`` (+ two periods)."""
    task = make_task("pendulum_swingup")
    timeout_s = 0.5
    config = write_config(
        context, "pendulum_swingup", {"safe_command": "zero", "state_timeout_s": timeout_s}, {}
    )
    names = list(task.joint_names)
    silent = [False]
    robot = Robot(context, lambda: None if silent[0] else joint_state(names, [0.3], [0.0]))
    torque = POLICY_ACTION * float(task.command_high[0])
    delays: list[float] = []
    with NodeProcess("actor_node", config, log_path=context.workdir / "actor.log") as node:
        robot.wait_command(lambda c: abs(c[0] - torque) < 1e-3, STARTUP_S, node)
        for _ in range(3):
            silent[0] = True  # the timer publishes from this (spinning) thread only: no state after this
            safe_at = robot.wait_command(lambda c: c[0] == 0.0, 10.0, node)
            delays.append(safe_at - robot.last_sent_at)
            silent[0] = False
            robot.wait_command(lambda c: abs(c[0] - torque) < 1e-3, 10.0, node)
        # diagnostics come once a second: wait for the one that reflects the last silence
        context.probe.spin_until(lambda: robot.counter("stale_events") >= len(delays), 5.0)
        stale_events = robot.counter("stale_events")
    periods = [delay * RATE_HZ for delay in delays]
    limit = timeout_s * RATE_HZ + 2
    held = max(periods) <= limit and len(delays) == 3 and stale_events >= 3
    figure = (
        f"safe command {', '.join(f'{p:.1f}' for p in periods)} periods after the last state "
        f"(timeout {timeout_s * RATE_HZ:.0f} periods at {RATE_HZ:.0f} Hz; limit {limit:.0f}), "
        f"{stale_events} stale events counted, policy back after each"
    )
    values = {
        "max_periods": max(periods),
        "timeout_periods": timeout_s * RATE_HZ,
        "stale_events": float(stale_events),
    }
    return ScenarioResult(figure, held=held, values=values)


@scenario("actor_sigkill_sim_safe_command")
def actor_sigkill(context: ScenarioContext) -> ScenarioResult:
    """SIGKILL of the actor: the realtime sim_node applies the safe command within ``command_timeout_s``."""
    task = make_task("pendulum_swingup")
    timeout_s = 0.3
    sim = {"sim_mode": "realtime", "command_timeout_s": timeout_s}
    config = write_config(context, "pendulum_swingup", {"safe_command": "zero"}, sim)
    probe = context.probe
    commands = probe.collect(Float64MultiArray, messages.command_topic(CONTROLLER), messages.COMMAND_QOS)
    states = probe.collect(JointState, messages.JOINT_STATES_TOPIC, messages.STATE_QOS)
    torque = POLICY_ACTION * float(task.command_high[0])
    with NodeProcess("sim_node", config, log_path=context.workdir / "sim.log") as sim_node:
        with NodeProcess("actor_node", config, log_path=context.workdir / "actor.log") as actor:
            applied = probe.spin_until(
                lambda: bool(states) and abs(states[-1][1].effort[0] - torque) < 1e-3, STARTUP_S
            )
            if not applied:
                raise RuntimeError(
                    f"policy torque never applied:\n{actor.output()[-2000:]}{sim_node.output()[-2000:]}"
                )
            actor.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            actor.wait(10.0)
            probe.spin_until(lambda: any(t > killed_at and abs(m.effort[0]) < 1e-9 for t, m in states), 10.0)
        last_command = max(t for t, _ in commands) if commands else killed_at
        released = [t for t, m in states if t > killed_at and abs(m.effort[0]) < 1e-9]
        sim_alive = sim_node.returncode is None
        reported = re.search(r"no command on \S+ for ([\d.]+) s", sim_node.output())
    delay = (released[0] - last_command) if released else math.inf
    limit = timeout_s + 3 / RATE_HZ + 0.2
    held = delay <= limit and sim_alive
    figure = (
        f"safe command applied {delay * 1e3:.0f} ms after the last actor command "
        f"(command_timeout_s {timeout_s * 1e3:.0f} ms, limit {limit * 1e3:.0f} ms; sim_node's own count: "
        f"{reported.group(1) + ' s' if reported else 'NO timeout logged'}); sim_node "
        f"{'alive' if sim_alive else 'DIED'}"
    )
    return ScenarioResult(figure, held=held, values={"delay_s": delay, "timeout_s": timeout_s})


@scenario("actor_no_sim_never_calls_simulator")
def no_sim(context: ScenarioContext) -> ScenarioResult:
    """The shipped pendulum config as a ``--no-sim`` deploy graph: across episode ends the actor never calls
    a simulator service and keeps sending policy commands."""
    task = make_task("pendulum_swingup")
    document = yaml.safe_load(config_path("pendulum_sim.yaml").read_text(encoding="utf-8"))
    document["/**"]["ros__parameters"].update(run_dir=str(context.workdir / "run"), controller=CONTROLLER)
    config = context.workdir / "pendulum_sim.yaml"
    config.write_text(yaml.safe_dump(document), encoding="utf-8")
    policy_file = context.workdir / "policy.onnx"
    policy_file.write_bytes(constant_task_policy(task, POLICY_ACTION))
    overrides = parameter_overrides(
        "deploy", ACTOR_NODE, with_sim=False, config_file=config, policy_file=str(policy_file)
    )
    override_file = write_overrides(context.workdir, ACTOR_NODE, overrides)  # as the launcher passes them
    arguments = ("--params-file", str(override_file))
    calls: list[str] = []

    def answer(name: str) -> Callable[[Any, Any], Any]:
        def record(_request: Any, response: Any) -> Any:
            calls.append(name)
            response.success = True
            return response

        return record

    probe = context.probe
    probe.node.create_service(Trigger, "/sim_node/reset", answer("/sim_node/reset"))
    names = list(task.joint_names)
    robot = Robot(context, lambda: joint_state(names, [0.3], [0.0]))
    torque = POLICY_ACTION * float(task.command_high[0])
    log_path = context.workdir / "actor.log"
    with NodeProcess("actor_node", config, extra_ros_args=arguments, log_path=log_path) as node:
        robot.wait_command(lambda c: abs(c[0] - torque) < 1e-3, STARTUP_S, node)
        probe.spin_until(lambda: robot.counter("episodes") >= 2, 3 * task.episode_steps / RATE_HZ + 10)
        since = time.monotonic()
        probe.spin_for(1.0)
        recent = robot.command_values(since)
    episodes = robot.counter("episodes")
    reset_failures = robot.counter("reset_failures")
    policy_after = int(np.sum(np.abs(recent[:, 0] - torque) < 1e-3)) if recent.size else 0
    held = not calls and reset_failures == 0 and episodes >= 2 and policy_after > 0.9 * len(recent) > 0
    figure = (
        f"{len(calls)} simulator service calls, {reset_failures} reset failures over {episodes} episode "
        f"ends (reset_service {overrides.get('reset_service')!r}); after them {policy_after} of "
        f"{len(recent)} commands were the policy's"
    )
    values = {
        "service_calls": float(len(calls)),
        "reset_failures": float(reset_failures),
        "episodes": float(episodes),
        "policy_after": float(policy_after),
    }
    return ScenarioResult(figure, held=held, values=values)
