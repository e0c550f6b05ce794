"""actor_node: the ROS wiring of the actor (the control logic is the ROS-free :mod:`rl_control.actor`).

Threads (see docs/actor.md):

* the **executor** thread (rclpy) receives ``/joint_states`` (+ ``/imu``, ``/odom`` when the task needs them),
  learner progress, the deadman, human interventions and ``cmd_vel`` (tasks tracking a velocity command), and
  stores each in the hand-off box (:class:`~rl_control.actor.inputs.LatestInputs`) by reference, so the
  control thread never waits on a lock; with ``pacing: triggered`` it also runs the tick a new state
  triggers, and with ``busy_poll`` it polls for messages instead of sleeping between them;
* the **control** thread runs :class:`~rl_control.actor.control_loop.ControlLoop` under the configured pacing
  and publishes commands and transition batches itself; its
  :class:`~rl_control.actor.policy_guard.PolicyTickGuard` feeds the probe set and triggers rollbacks;
* the policy topic is received in a **child process** (:mod:`rl_control.ros.policy_receiver`: size cap before
  decoding, HMAC) — only when the actor accepts policy updates — and its **reader** thread offers each
  admitted policy to the swapper;
* the **policy loader** thread (:class:`~rl_control.actor.policy_swap.PolicySwapper`) builds and checks a
  received policy (task, contract, policy authority: probe set of recent observations, inference budget),
  then swaps it in by reference: a swap never delays a tick, a rejected policy keeps the old one.
"""

from __future__ import annotations

import array
import logging
import threading
import time
from typing import Any

import numpy as np
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.client import Client
from rclpy.experimental import EventsExecutor
from rclpy.lifecycle import LifecycleNode
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import Bool, Float64MultiArray, Int64MultiArray
from std_srvs.srv import Trigger

from rl_control.actor.control_loop import ControlLoop, Pacing
from rl_control.actor.core import ActorCore, task_command_safety
from rl_control.actor.episodes import EpisodeResets
from rl_control.actor.inputs import LatestInputs
from rl_control.actor.pacing import raise_ordinary_threads, set_realtime_priority, tune_process_for_control
from rl_control.actor.policy_guard import PolicyTickGuard
from rl_control.actor.policy_swap import PolicySwapper
from rl_control.actor.state_mapping import JointStateMapper, StateMappingError, imu_sample, odom_sample
from rl_control.actor.status import actor_health
from rl_control.actor.throttle import UtdThrottle
from rl_control.actor.velocity_command import VelocityCommandInput, tracks_velocity_command, twist_command
from rl_control.envs.tasks import make_task
from rl_control.policy.authority import (
    AuthoritySettings,
    PolicyAuthority,
    accepts_policy_updates,
    load_policy_key,
)
from rl_control.policy.contract import contract_check_for
from rl_control.policy.runtime import OnnxPolicy, Policy
from rl_control.policy.transfer import ADMITTED, Frame
from rl_control.ros.managed_app import ManagedApp
from rl_control.ros.messages import (
    CMD_VEL_TOPIC,
    COMMAND_QOS,
    IMU_TOPIC,
    JOINT_STATES_TOPIC,
    LEARNER_PROGRESS_TOPIC,
    ODOM_TOPIC,
    POLICY_TOPIC,
    PROGRESS_QOS,
    STATE_QOS,
    TRANSITIONS_QOS,
    TRANSITIONS_TOPIC,
    command_topic,
    decode_progress,
    transitions_to_message,
)
from rl_control.ros.node_parameters import on_parameter_change
from rl_control.ros.node_utils import (
    ERROR,
    OK,
    SPIN_TIMEOUT_S,
    WARN,
    DiagnosticsPublisher,
    Status,
    ThrottledLog,
    run_node,
)
from rl_control.ros.policy_receiver import PolicyReceiverProcess
from rl_control.ros.reset_service import TriggerResetService
from rl_control.transitions import TransitionBatch

logger = logging.getLogger(__name__)

NODE_NAME = "actor_node"
ENABLE_TOPIC = "rl_control/enable"
INTERVENTION_TOPIC = "rl_control/intervention"
INTERACTION_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
#: best effort: matches reliable and best-effort Twist publishers alike (teleop tools use either)
CMD_VEL_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
LEVELS = {"ok": OK, "warn": WARN, "error": ERROR}


class ActorNode:
    """The actor application behind the ``actor_node`` ROS node: construct, then :meth:`start`."""

    def __init__(self, node: Node, config: Any) -> None:
        shared, actor_cfg = config.shared, config.actor_node
        self._node = node
        self._log = node.get_logger()
        self.task = make_task(shared.task, control_rate_hz=shared.control_rate_hz)
        self.mode = shared.mode
        self.realtime_priority = int(actor_cfg.realtime_priority)
        command_names = tuple(shared.joint_names) or tuple(self.task.joint_names)
        self.core = ActorCore(
            self.task,
            task_command_safety(
                self.task,
                command_names,
                safe_mode=actor_cfg.safe_command,
                max_rate=actor_cfg.max_command_rate,
            ),
            command_joint_names=command_names,
            train=shared.mode == "train",
            transition_batch_size=actor_cfg.transition_batch_size,
            publish_transitions=self._publish_transitions,
            seed=shared.seed,
        )
        self.inputs = LatestInputs(
            actor_cfg.state_timeout_s, needs_imu=self.task.needs_imu, needs_odometry=self.task.needs_odometry
        )
        self.mapper = JointStateMapper(self.task.joint_names, JOINT_STATES_TOPIC)
        on_parameter_change(node, "state_timeout_s", self.inputs.set_state_timeout)
        on_parameter_change(node, "max_command_rate", self._set_max_command_rate)
        self._warn = ThrottledLog(self._log.warning)
        self.state_errors = 0
        self.last_state_error = ""
        pacing = Pacing(actor_cfg.pacing)
        self.throttle = UtdThrottle(actor_cfg.max_policy_lag_steps if shared.mode == "train" else 0)
        resets = None
        if actor_cfg.reset_service:
            client: Client = node.create_client(Trigger, actor_cfg.reset_service)
            resets = EpisodeResets(
                TriggerResetService(client),
                self.inputs,
                self.core.begin_episode,
                lockstep=pacing is Pacing.LOCKSTEP,
                warn=self._warn,
            )
        self.command_topic = command_topic(shared.controller)
        self._command_msg = Float64MultiArray()
        self._command_pub = node.create_publisher(Float64MultiArray, self.command_topic, COMMAND_QOS)
        self._transitions_pub = node.create_publisher(Float64MultiArray, TRANSITIONS_TOPIC, TRANSITIONS_QOS)
        self._transition_seq = 0
        self.accept_policy_updates = accepts_policy_updates(
            actor_cfg.policy_updates, shared.mode, actor_cfg.policy_file
        )
        self.authority = PolicyAuthority(
            AuthoritySettings(
                max_policy_bytes=actor_cfg.max_policy_bytes,
                inference_budget_s=actor_cfg.inference_budget_fraction / self.task.control_rate_hz,
                key=load_policy_key(shared.policy_key_file) if shared.policy_key_file else None,
                require_signed=actor_cfg.require_signed_policies,
                probe_observations=actor_cfg.policy_probe_observations,
            ),
            self.task.observation_dim,
        )
        self.swapper = PolicySwapper(
            self.task,
            self.core.set_policy,
            checks=(contract_check_for(shared, self.task), self.authority.check),
            rollback_ticks=actor_cfg.rollback_invalid_ticks,
            on_installed=self._on_installed,
            on_rejected=self._on_rejected,
            prepare_thread=lambda: self.prioritize_current_thread(1 if self.realtime_priority > 2 else 0),
            source=POLICY_TOPIC,
        )
        self.velocity = (
            VelocityCommandInput(
                self.task,  # type: ignore[arg-type]  # narrowed by tracks_velocity_command
                actor_cfg.cmd_vel_timeout_s,
                stop_when_stale=shared.mode == "deploy",
            )
            if tracks_velocity_command(self.task)
            else None
        )
        self.loop = ControlLoop(
            self.core,
            self.inputs,
            self._publish_command,
            pacing=pacing,
            rate_hz=self.task.control_rate_hz,
            throttle=self.throttle,
            resets=resets,
            require_enable=bool(actor_cfg.require_enable),
            guard=PolicyTickGuard(self.core, self.swapper, self.authority.observations),
            velocity=self.velocity,
        )
        # no policy subscription at all unless updates are accepted; then a child process receives the topic
        self.receiver = (
            PolicyReceiverProcess(
                node_name=f"{node.get_name()}_policy_receiver",
                # the child has neither the actor's namespace nor its remappings: give it the resolved name
                topic=node.resolve_topic_name(POLICY_TOPIC),
                max_policy_bytes=actor_cfg.max_policy_bytes,
                key_file=shared.policy_key_file,
                require_signed=actor_cfg.require_signed_policies,
                on_frame=self._on_policy_frame,
                log_error=self._log.error,
            )
            if self.accept_policy_updates
            else None
        )
        node.create_subscription(JointState, JOINT_STATES_TOPIC, self._on_joint_state, STATE_QOS)
        if self.task.needs_imu:
            node.create_subscription(Imu, IMU_TOPIC, self._on_imu, STATE_QOS)
        if self.task.needs_odometry:
            node.create_subscription(Odometry, ODOM_TOPIC, self._on_odom, STATE_QOS)
        node.create_subscription(Int64MultiArray, LEARNER_PROGRESS_TOPIC, self._on_progress, PROGRESS_QOS)
        node.create_subscription(Bool, ENABLE_TOPIC, self._on_enable, INTERACTION_QOS)
        node.create_subscription(
            Float64MultiArray, INTERVENTION_TOPIC, self._on_intervention, INTERACTION_QOS
        )
        if self.velocity is not None:
            node.create_subscription(Twist, CMD_VEL_TOPIC, self._on_cmd_vel, CMD_VEL_QOS)
        self._diagnostics = DiagnosticsPublisher(node, self._diagnostic_status, hardware_id=self.task.robot)
        if actor_cfg.policy_file:  # a deliberate starting policy (e.g. fine-tuning): acts from the start
            self.core.learning_started()
            policy = OnnxPolicy.from_file(actor_cfg.policy_file)
            self.swapper.check(policy)
            self.swapper.install(policy, policy.version)
        self._stop = threading.Event()
        self._control: threading.Thread | None = None
        self.active = False  # lifecycle: commands only while active
        self._log.info(
            f"actor for task {self.task.name!r} in {self.mode} mode, {pacing.value} pacing at "
            f"{shared.control_rate_hz:g} Hz; commands on {self.command_topic} in {list(command_names)}; "
            f"policy: {actor_cfg.policy_file or 'waiting for ' + POLICY_TOPIC}; policy updates "
            f"{'accepted' if self.accept_policy_updates else 'ignored'}"
        )

    @property
    def fatal_error(self) -> str | None:
        """Set if the control thread died; :func:`run_node` then exits 1."""
        return self.loop.fatal_error

    # ------------------------------------------------------------------ lifecycle

    def _set_max_command_rate(self, rate: float) -> None:
        """Run-time change of ``max_command_rate`` (``ros2 param set``)."""
        safety = self.core.safety
        safety.max_rate = np.full_like(safety.max_rate, rate)

    def start(self) -> None:
        """Start the policy loader (configured: policies are received and checked, no commands yet); from
        the executor thread: with ``realtime_priority`` set, the calling thread gets SCHED_FIFO
        ``realtime_priority - 1``."""
        tune_process_for_control()
        self.prioritize_current_thread(self.realtime_priority - 1)
        self.swapper.start()
        if self.receiver is not None:
            self.receiver.start()

    def activate(self) -> None:
        """Start commanding: the control thread runs (a new one after each :meth:`deactivate`)."""
        if self.active:
            return
        self.core.break_chain()  # no transition spans the time without commands
        self._stop = threading.Event()
        self._control = threading.Thread(target=self._control_thread, name="actor_control", daemon=True)
        self.active = True
        self._control.start()
        if self.realtime_priority > 2:
            raise_ordinary_threads(1)  # DDS threads: no priority inversion on their locks

    def deactivate(self) -> None:
        """Stop commanding: stop the control thread, send one safe command, flush pending transitions."""
        if not self.active:
            return
        self.active = False
        self._stop.set()
        self.inputs.wake()
        if self._control is not None and self._control.is_alive():
            self._control.join(timeout=2.0)
        try:
            self.loop.send_safe()
            self.core.transitions.flush()
        except Exception:
            logger.debug("safe command on deactivation not sent", exc_info=True)

    def prioritize_current_thread(self, priority: int) -> None:
        """Best effort SCHED_FIFO for the calling thread; a refusal is logged, not fatal."""
        problem = set_realtime_priority(priority)
        if problem:
            self._log.warning(f"{problem}; running with normal scheduling")

    def _control_thread(self) -> None:
        self.prioritize_current_thread(self.realtime_priority)
        self.loop.run(self._stop)

    def shutdown(self) -> None:
        """Stop the threads, send a last safe command (when active) and flush pending transitions."""
        self.deactivate()
        if self.receiver is not None:
            self.receiver.stop()
        self.swapper.stop()

    # ------------------------------------------------------------------ subscriptions (executor thread)
    def _on_joint_state(self, msg: JointState) -> None:
        try:
            sample = self.mapper.map(msg, time.monotonic())
        except StateMappingError as exc:
            self.state_errors += 1
            self.last_state_error = str(exc)
            self._warn(str(exc))
            return
        self.inputs.put_joints(sample)
        if self.active:
            self.loop.on_state(sample.received)

    def _on_imu(self, msg: Imu) -> None:
        self.inputs.put_imu(imu_sample(msg, time.monotonic()))

    def _on_odom(self, msg: Odometry) -> None:
        self.inputs.put_odom(odom_sample(msg, time.monotonic()))

    def _on_enable(self, msg: Bool) -> None:
        self.inputs.put_enable(bool(msg.data), time.monotonic())

    def _on_cmd_vel(self, msg: Twist) -> None:
        try:
            command = twist_command(msg.linear.x, msg.linear.y, msg.angular.z)
        except ValueError as exc:
            self._warn(f"{CMD_VEL_TOPIC}: {exc}; ignored")
            return
        self.inputs.put_velocity_command(command, time.monotonic())

    def _on_intervention(self, msg: Float64MultiArray) -> None:
        try:
            action = self.core.intervention_from_command_order(msg.data)
        except ValueError as exc:
            self._warn(f"{INTERVENTION_TOPIC}: {exc}; ignored")
            return
        self.inputs.put_intervention(action, time.monotonic())

    def _on_progress(self, msg: Int64MultiArray) -> None:
        try:
            progress = decode_progress(msg)
        except ValueError as exc:
            self._warn(str(exc))
            return
        self.throttle.record_progress(progress.env_steps, progress.backlog)
        if progress.updates > 0:
            self.core.learning_started()
        self.inputs.wake()

    def _on_policy_frame(self, frame: Frame) -> None:
        """Receiver reader thread: an admitted policy goes to the swapper, a refused message is counted."""
        if frame.kind == ADMITTED:
            self.swapper.offer(frame.version, frame.payload)
        else:
            self.swapper.reject(frame.reason)

    def _on_installed(self, policy: Policy, version: int) -> None:
        self._log.info(f"policy v{version} active (obs_dim={policy.obs_dim}, act_dim={policy.act_dim})")

    def _on_rejected(self, reason: str) -> None:
        self._log.error(f"rejected policy: {reason}; keeping policy v{self.swapper.version}")

    # ------------------------------------------------------------------ publishing (control thread)
    def _publish_command(self, command: np.ndarray) -> None:
        data = array.array("d")
        data.frombytes(np.ascontiguousarray(command, dtype=np.float64).tobytes())
        self._command_msg.data = data
        self._command_pub.publish(self._command_msg)

    def _publish_transitions(self, batch: TransitionBatch) -> None:
        self._transitions_pub.publish(transitions_to_message(batch, self._transition_seq))
        self._transition_seq += 1
        self.throttle.record_sent(len(batch))

    # ------------------------------------------------------------------ diagnostics (executor thread)
    def _diagnostic_status(self) -> Status:
        health = actor_health(
            self.loop,
            self.swapper,
            mode=self.mode,
            state_errors=self.state_errors,
            last_state_error=self.last_state_error,
            joint_states_topic=JOINT_STATES_TOPIC,
            now=time.monotonic(),
        )
        if self.velocity is not None:
            health.values["cmd_vel_stopped_ticks"] = self.velocity.stops
        health.values["policy_updates"] = "accepted" if self.accept_policy_updates else "ignored"
        health.values["policy_receiver_restarts"] = 0 if self.receiver is None else self.receiver.restarts
        return Status(LEVELS[health.level], health.message, health.values)


def configure_actor(node: Node, config: Any) -> ActorNode:
    """Build the actor and start its policy loader: the lifecycle node's configure step."""
    actor = ActorNode(node, config)
    actor.start()
    return actor


def build_managed_actor(node: Node, config: Any) -> ManagedApp:
    """The actor under the lifecycle node (the ``run_node`` application factory; see :class:`ManagedApp`)."""
    assert isinstance(node, LifecycleNode), "actor_node runs as a lifecycle node"
    return ManagedApp(node, config, configure_actor, autostart=bool(config.actor_node.autostart))


def executor_wait_s(config: Any) -> float:
    """How long one executor turn waits for a message: 0 (polling) with ``actor_node.busy_poll``."""
    return 0.0 if config.actor_node.busy_poll else SPIN_TIMEOUT_S


def main(args: list[str] | None = None) -> int:
    """Entry point of ``actor_node`` (``python -m rl_control.ros.actor_node --ros-args --params-file X``)."""
    # rclpy's EventsExecutor dispatches callbacks from C++: far less GIL time per message than the
    # SingleThreadedExecutor, which keeps the control thread's wake-ups on time at 500-1000 Hz.
    return run_node(
        NODE_NAME,
        build_managed_actor,
        args,
        spin_timeout_s=executor_wait_s,
        executor_factory=EventsExecutor,
        node_factory=LifecycleNode,
    )


if __name__ == "__main__":
    raise SystemExit(main())
