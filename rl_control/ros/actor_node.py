"""actor_node: runs the ONNX policy at control rate behind ros2_control topics.

Threads (see docs/actor.md):

* the **executor** thread (rclpy) receives ``/joint_states`` (+ ``/imu``, ``/odom`` when the task needs them),
  policies, learner progress, the deadman and human interventions; each callback only swaps in the newest
  sample by reference (atomic under the GIL), so the control thread never waits on a lock;
* the **control** thread paces itself with absolute deadlines (:class:`DeadlineClock`, realtime mode) or acts
  once per new joint-state stamp (lockstep mode), runs :class:`ActorCore` and publishes the command and
  transition batches itself;
* the **policy loader** thread builds the onnxruntime session of a received policy and checks it against
  the task, then swaps it in by reference: a swap never delays a tick, a rejected policy keeps the old one.
"""

from __future__ import annotations

import array
import contextlib
import gc
import hashlib
import logging
import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from nav_msgs.msg import Odometry
from rclpy.experimental import EventsExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import Bool, Float64MultiArray, Int64MultiArray, UInt8MultiArray
from std_srvs.srv import Trigger

from rl_control.config.schema import SimNodeConfig, params_file_from_argv
from rl_control.envs.tasks import Task, make_task
from rl_control.ros.actor_core import ActorCore, Policy, PolicyRejectedError, TransitionBuffer, check_policy
from rl_control.ros.actor_loop import (
    DeadlineClock,
    RollingStats,
    raise_ordinary_threads,
    set_realtime_priority,
)
from rl_control.ros.actor_state import (
    ImuSample,
    JointSample,
    JointStateMapper,
    OdomSample,
    StateMappingError,
    imu_sample,
    odom_sample,
    robot_state,
)
from rl_control.ros.messages import (
    COMMAND_QOS,
    IMU_TOPIC,
    JOINT_STATES_TOPIC,
    LEARNER_PROGRESS_TOPIC,
    ODOM_TOPIC,
    POLICY_QOS,
    POLICY_TOPIC,
    PROGRESS_QOS,
    STATE_QOS,
    TRANSITIONS_QOS,
    TRANSITIONS_TOPIC,
    command_topic,
    decode_policy,
    decode_progress,
    encode_transitions,
)
from rl_control.ros.node_utils import ERROR, OK, WARN, DiagnosticsPublisher, Status, ThrottledLog, run_node
from rl_control.safety import CommandSafety, StaleWatchdog

logger = logging.getLogger(__name__)

NODE_NAME = "actor_node"
ENABLE_TOPIC = "/rl_control/enable"
INTERVENTION_TOPIC = "/rl_control/intervention"
#: Bound on how long another Python thread can hold the GIL before the control thread gets it back.
GIL_SWITCH_INTERVAL_S = 2e-5
RESET_TIMEOUT_S = 5.0
INTERACTION_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)


@dataclass(frozen=True)
class Stamped:
    """A value with its local monotonic receive time."""

    value: Any
    received: float


def tune_process_for_control() -> None:
    """Process settings for a Python control loop (idempotent; called once everything is imported).

    * GIL switch interval 20 µs (default 5 ms): bounds how long another thread keeps the GIL from the
      control thread;
    * ``gc.freeze()``: the objects alive after start-up (torch, onnx, rclpy, ...) move to the permanent
      generation, so a full collection no longer walks them — unfrozen, one walks ~200k objects (0.2 s
      measured on the 2-core dev machine) and stalls the control thread (the collector runs with the GIL
      held, in whichever thread triggers it).
    """
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    gc.collect()
    gc.freeze()


def resolve_lockstep(sim_mode: str, params_file: str | None) -> bool:
    """Whether the actor paces itself per joint state (lockstep) rather than by its own clock.

    ``sim_mode`` is ``actor_node.sim_mode``; ``"auto"`` reads ``sim_node.sim_mode`` from the params file
    (the sim_node section of the same experiment file; its default is lockstep) and means realtime when
    there is no file or the file has no sim_node section (hardware).
    """
    if sim_mode != "auto":
        return sim_mode == "lockstep"
    if not params_file:
        return False
    try:
        document = yaml.safe_load(Path(params_file).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(
            f"{params_file}: cannot read sim_node.sim_mode for actor_node.sim_mode=auto: {exc}"
        ) from exc
    section = document.get("sim_node", document.get("/sim_node")) if isinstance(document, dict) else None
    if not isinstance(section, dict):
        return False
    params = section.get("ros__parameters") or {}
    return params.get("sim_mode", SimNodeConfig().sim_mode) == "lockstep"


def load_policy(data: bytes) -> Policy:
    """Build an onnxruntime policy from ONNX bytes (``rl_control.learning.OnnxPolicy``)."""
    from rl_control.learning import OnnxPolicy

    return OnnxPolicy.from_bytes(data)


def load_policy_file(path: str) -> Policy:
    """Build an onnxruntime policy from an ONNX file."""
    from rl_control.learning import OnnxPolicy

    return OnnxPolicy.from_file(path)


class ActorNode:
    """The actor application behind the ``actor_node`` ROS node (construct, then it runs until shutdown)."""

    def __init__(self, node: Node, config: Any, *, start: bool = True) -> None:
        shared, actor_cfg = config.shared, config.actor_node
        self._node = node
        self._log = node.get_logger()
        self.task: Task = make_task(shared.task)
        self.mode = shared.mode
        self.lockstep = resolve_lockstep(actor_cfg.sim_mode, params_file_from_argv())
        self.rate_hz = float(shared.control_rate_hz)
        self.state_timeout_s = float(actor_cfg.state_timeout_s)
        self.require_enable = bool(actor_cfg.require_enable)
        self.realtime_priority = int(actor_cfg.realtime_priority)
        self.max_lag = int(actor_cfg.max_policy_lag_steps) if shared.mode == "train" else 0
        self.fatal_error: str | None = None  # set if the control thread dies; run_node then exits 1
        command_names = tuple(shared.joint_names) or tuple(self.task.joint_names)
        order = [self.task.joint_names.index(n) for n in command_names if n in self.task.joint_names]
        if len(order) != len(self.task.joint_names) or len(command_names) != len(order):
            raise ValueError(
                f"joint_names {list(command_names)} must be a permutation of task {self.task.name!r} joints "
                f"{list(self.task.joint_names)}"
            )
        safety = CommandSafety(
            self.task.command_low[order],
            self.task.command_high[order],
            command_interface=self.task.command_interface,
            safe_mode=actor_cfg.safe_command,
            max_rate=actor_cfg.max_command_rate,
            joint_names=command_names,
        )
        self.core = ActorCore(
            self.task,
            safety,
            command_joint_names=command_names,
            train=shared.mode == "train",
            transition_batch_size=actor_cfg.transition_batch_size,
            publish_transitions=self._publish_transitions,
            seed=shared.seed,
        )
        # command[i] = task_order[order[i]]; interventions arrive in command order
        self._task_from_command = np.argsort(np.array(order, dtype=np.intp))
        self.command_topic = command_topic(shared.controller)

        # latest samples, swapped by reference from the executor thread
        self._joints: JointSample | None = None
        self._joint_count = 0
        self._imu: ImuSample | None = None
        self._odom: OdomSample | None = None
        self._enable: Stamped | None = None
        self._intervention: Stamped | None = None
        self._progress_env_steps = 0
        # learner env steps that predate this actor (a resumed run, another actor): set at the first
        # progress message so the throttle compares this actor's steps with what the learner took from it
        self._progress_offset: int | None = None
        self._new_state = threading.Event()
        self._mapper = JointStateMapper(self.task.joint_names, JOINT_STATES_TOPIC)
        # one watchdog per state topic the observation needs (fed with local receive times)
        self._watchdogs = {JOINT_STATES_TOPIC: StaleWatchdog(self.state_timeout_s)}
        if self.task.needs_imu:
            self._watchdogs[IMU_TOPIC] = StaleWatchdog(self.state_timeout_s)
        if self.task.needs_odometry:
            self._watchdogs[ODOM_TOPIC] = StaleWatchdog(self.state_timeout_s)
        self._warn_state = ThrottledLog(self._log.warning)
        self.state_errors = 0
        self.last_state_error = ""

        # statistics (written by the control thread, read by diagnostics)
        self.tick_error_us = RollingStats(4096)
        self.interval_error_us = RollingStats(4096)
        self.latency_us = RollingStats(4096)
        self._latency_sample: JointSample | None = None
        self._ticks_window = 0
        self._window_start = time.monotonic()
        self.achieved_rate_hz = 0.0
        self.throttled = False
        self.throttle_events = 0
        self.transition_msgs = 0
        self.transitions_sent = 0
        self.reset_failures = 0
        self._transition_seq = 0
        self._clock: DeadlineClock | None = None

        # policy state
        self.policy_version = -1
        self.policy_swaps = 0
        self.policies_rejected = 0
        self.last_policy_error = ""
        self._policy_identity: tuple[int, bytes] | None = None  # (version, digest) of the active policy
        # newest pending (version, ONNX bytes); None wakes the loader for shutdown
        self._policy_queue: queue.Queue[tuple[int, bytes] | None] = queue.Queue(maxsize=1)

        self._command_msg = Float64MultiArray()
        self._command_pub = node.create_publisher(Float64MultiArray, self.command_topic, COMMAND_QOS)
        self._transitions_pub = node.create_publisher(Float64MultiArray, TRANSITIONS_TOPIC, TRANSITIONS_QOS)
        node.create_subscription(JointState, JOINT_STATES_TOPIC, self._on_joint_state, STATE_QOS)
        if self.task.needs_imu:
            node.create_subscription(Imu, IMU_TOPIC, self._on_imu, STATE_QOS)
        if self.task.needs_odometry:
            node.create_subscription(Odometry, ODOM_TOPIC, self._on_odom, STATE_QOS)
        node.create_subscription(UInt8MultiArray, POLICY_TOPIC, self._on_policy, POLICY_QOS)
        node.create_subscription(Int64MultiArray, LEARNER_PROGRESS_TOPIC, self._on_progress, PROGRESS_QOS)
        node.create_subscription(Bool, ENABLE_TOPIC, self._on_enable, INTERACTION_QOS)
        node.create_subscription(
            Float64MultiArray, INTERVENTION_TOPIC, self._on_intervention, INTERACTION_QOS
        )
        self._reset_client = (
            node.create_client(Trigger, actor_cfg.reset_service) if actor_cfg.reset_service else None
        )
        self._reset_future: Any = None
        self._reset_sent_at = 0.0
        self._reset_done_at: float | None = None
        self._reset_sent_count = 0
        self._diagnostics = DiagnosticsPublisher(node, self._diagnostic_status, hardware_id=self.task.robot)

        if actor_cfg.policy_file:
            policy = load_policy_file(actor_cfg.policy_file)
            check_policy(policy, self.task, self.task.joint_names)
            self._install(policy, int(getattr(policy, "version", 0)))
        self._stop = threading.Event()
        self._loader = threading.Thread(
            target=self._policy_loader_loop, name="actor_policy_loader", daemon=True
        )
        self._control = threading.Thread(target=self._control_loop, name="actor_control", daemon=True)
        self._log.info(
            f"actor for task {self.task.name!r} in {self.mode} mode, "
            f"{'lockstep' if self.lockstep else f'realtime {self.rate_hz:g} Hz'}; commands on "
            f"{self.command_topic} in order {list(command_names)}; "
            f"policy: {actor_cfg.policy_file or 'waiting for ' + POLICY_TOPIC}"
        )
        if start:
            self.start()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the policy loader and control threads (call it from the executor thread: with
        ``realtime_priority`` set, the calling thread gets SCHED_FIFO ``realtime_priority - 1``)."""
        tune_process_for_control()
        self.prioritize_current_thread(self.realtime_priority - 1)
        self._loader.start()
        self._control.start()
        if self.realtime_priority > 2:
            raise_ordinary_threads(1)  # DDS threads: no priority inversion on their locks

    @property
    def has_state(self) -> bool:
        """True once a joint state was received (and mapped)."""
        return self._joints is not None

    @property
    def deadline_misses(self) -> int:
        """Control slots skipped by the deadline clock (realtime mode)."""
        return 0 if self._clock is None else self._clock.misses

    def step_once(self) -> None:
        """Run one control tick now, paced by the caller (the benchmark's plain rclpy-timer baseline)."""
        self._ticks_window += 1
        self._step(time.monotonic())

    def shutdown(self) -> None:
        """Stop the threads, send a last safe command and flush pending transitions."""
        self._stop.set()
        self._new_state.set()
        self._offer_policy(None)
        for thread in (self._control, self._loader):
            if thread.is_alive():
                thread.join(timeout=2.0)
        joints = self._joints
        try:
            result = self.core.safe(None if joints is None else robot_state(joints))
            if result.command is not None:
                self._publish_command(result.command)
            self.core.transitions.flush()
        except Exception:
            logger.debug("final safe command not sent", exc_info=True)

    # ------------------------------------------------------------------ subscriptions (executor thread)
    def _on_joint_state(self, msg: JointState) -> None:
        try:
            sample = self._mapper.map(msg, time.monotonic())
        except StateMappingError as exc:
            self.state_errors += 1
            self.last_state_error = str(exc)
            self._warn_state(str(exc))
            return
        self._joints = sample
        self._joint_count += 1
        self._watchdogs[JOINT_STATES_TOPIC].feed(sample.received)
        self._new_state.set()

    def _on_imu(self, msg: Imu) -> None:
        self._imu = imu_sample(msg, time.monotonic())
        self._watchdogs[IMU_TOPIC].feed(self._imu.received)

    def _on_odom(self, msg: Odometry) -> None:
        self._odom = odom_sample(msg, time.monotonic())
        self._watchdogs[ODOM_TOPIC].feed(self._odom.received)

    def _on_enable(self, msg: Bool) -> None:
        self._enable = Stamped(bool(msg.data), time.monotonic())

    def _on_intervention(self, msg: Float64MultiArray) -> None:
        values = np.asarray(msg.data, dtype=np.float64)
        if values.shape != (self.task.action_dim,) or not np.all(np.isfinite(values)):
            self._warn_state(
                f"{INTERVENTION_TOPIC}: expected {self.task.action_dim} finite actions in [-1, 1] "
                f"(joint order {list(self.core.command_joint_names)}), got {values.tolist()}; ignored"
            )
            return
        self._intervention = Stamped(values[self._task_from_command], time.monotonic())

    def _on_progress(self, msg: Int64MultiArray) -> None:
        try:
            progress = decode_progress(msg)
        except ValueError as exc:
            self._warn_state(str(exc))
            return
        if self._progress_offset is None:
            self._progress_offset = progress.env_steps - self.transitions_sent
        self._progress_env_steps = progress.env_steps
        self._new_state.set()

    def _on_policy(self, msg: UInt8MultiArray) -> None:
        try:
            version, data = decode_policy(msg)
        except ValueError as exc:
            self._reject(str(exc))
            return
        if (version, hashlib.blake2b(data, digest_size=16).digest()) == self._policy_identity:
            return  # the same policy again (transient-local re-delivery after a reconnect)
        self._offer_policy((version, data))

    def _offer_policy(self, item: tuple[int, bytes] | None) -> None:
        """Queue ``item`` for the loader, replacing a pending one (only the newest policy matters)."""
        with contextlib.suppress(queue.Empty):
            self._policy_queue.get_nowait()
        with contextlib.suppress(queue.Full):  # a concurrent offer won: that one is newer anyway
            self._policy_queue.put_nowait(item)

    # ------------------------------------------------------------------ policies (loader thread)
    def _reject(self, reason: str) -> None:
        self.policies_rejected += 1
        self.last_policy_error = reason
        self._log.error(f"rejected policy: {reason}; keeping policy v{self.policy_version}")

    def _policy_loader_loop(self) -> None:
        # Blocks without polling: a normal-priority thread waking up to hold the GIL could be preempted
        # while holding it and delay the control thread. With realtime_priority the loader gets SCHED_FIFO 1:
        # never preempted by ordinary processes, always by the control and executor threads.
        self.prioritize_current_thread(1 if self.realtime_priority > 2 else 0)
        while not self._stop.is_set():
            item = self._policy_queue.get()
            if item is None:
                break
            version, data = item
            try:
                policy = load_policy(data)
                check_policy(policy, self.task, self.task.joint_names)
            except PolicyRejectedError as exc:
                self._reject(f"{POLICY_TOPIC} v{version}: {exc}")
                continue
            except Exception as exc:
                self._reject(f"{POLICY_TOPIC} v{version}: cannot load ONNX ({type(exc).__name__}: {exc})")
                continue
            self._install(policy, version)
            self._policy_identity = (version, hashlib.blake2b(data, digest_size=16).digest())

    def _install(self, policy: Policy, version: int) -> None:
        self.core.policy = policy  # atomic reference swap; the control thread picks it up next tick
        self.policy_version = version
        self.policy_swaps += 1
        self._log.info(f"policy v{version} active (obs_dim={policy.obs_dim}, act_dim={policy.act_dim})")

    # ------------------------------------------------------------------ control thread
    def prioritize_current_thread(self, priority: int) -> None:
        """Best effort SCHED_FIFO for the calling thread; a refusal is logged once, not fatal."""
        problem = set_realtime_priority(priority)
        if problem:
            self._log.warning(f"{problem}; running with normal scheduling")

    def _control_loop(self) -> None:
        self.prioritize_current_thread(self.realtime_priority)
        try:
            if self.lockstep:
                self._lockstep_loop()
            else:
                self._realtime_loop()
        except Exception as exc:
            logger.exception("actor control loop crashed; sending the safe command")
            self.fatal_error = f"control loop crashed: {type(exc).__name__}: {exc}"
            joints = self._joints
            result = self.core.safe(None if joints is None else robot_state(joints))
            if result.command is not None:
                self._publish_command(result.command)

    def _realtime_loop(self) -> None:
        clock = DeadlineClock(1.0 / self.rate_hz)
        self._clock = clock
        clock.start()
        previous: float | None = None
        while not self._stop.is_set():
            deadline, now = clock.wait(self._stop)
            if self._stop.is_set():
                break
            self.tick_error_us.add((now - deadline) * 1e6)
            if previous is not None:
                self.interval_error_us.add(abs(now - previous - clock.period_s) * 1e6)
            previous = now
            self._ticks_window += 1
            self._step(now)

    def _lockstep_loop(self) -> None:
        last_stamp: float | None = None
        while not self._stop.is_set():
            self._new_state.wait(0.1)
            self._new_state.clear()
            now = time.monotonic()
            if self._reset_future is not None and not self._reset_finished(now):
                continue
            joints = self._joints
            if joints is None or joints.stamp == last_stamp:
                continue  # nothing new, or an idle re-publication of a state already acted on
            if not self._sensors_match(joints):
                continue  # the IMU/odometry of this step has not arrived yet
            if self._throttle():
                continue
            last_stamp = joints.stamp
            self._ticks_window += 1
            self._step(now)

    def _sensors_match(self, joints: JointSample) -> bool:
        """Lockstep: the IMU and odometry the task needs carry the joint state's stamp."""
        imu, odom = self._imu, self._odom
        if self.task.needs_imu and (imu is None or imu.stamp != joints.stamp):
            return False
        return not (self.task.needs_odometry and (odom is None or odom.stamp != joints.stamp))

    def _throttle(self) -> bool:
        """Lockstep UTD throttle: True (pause) while env steps sent - learner env steps > max lag."""
        if self.max_lag <= 0:
            return False
        pending = self.core.transitions.rows
        consumed = self._progress_env_steps - (self._progress_offset or 0)
        lag = self.transitions_sent + pending - consumed
        if lag <= self.max_lag:
            self.throttled = False
            return False
        if pending:
            self.core.transitions.flush()  # the learner cannot catch up on transitions it never got
        if not self.throttled:
            self.throttle_events += 1
        self.throttled = True
        return True

    def _fresh(self, sample: Stamped | None, now: float) -> bool:
        return sample is not None and now - sample.received <= self.state_timeout_s

    def _step(self, now: float) -> None:
        joints = self._joints
        imu, odom = self._imu, self._odom
        if self.lockstep:
            stale = False  # the simulation waits for this command: its state cannot be old
        else:
            if self._reset_future is not None and not self._reset_finished(now):
                # keep commanding the robot while the reset is under way
                self._publish_result(self.core.safe(None if joints is None else robot_state(joints)), joints)
                return
            stale = False
            for watchdog in self._watchdogs.values():  # evaluate all: each counts its own stale events
                stale = watchdog.stale(now) or stale
        state = None if joints is None else robot_state(joints, imu, odom)
        enabled = True
        if self.require_enable:
            enable = self._enable
            enabled = enable is not None and bool(enable.value) and self._fresh(enable, now)
        intervention = self._intervention
        human = intervention.value if self._fresh(intervention, now) else None
        result = self.core.tick(state, stale=stale, enabled=enabled, intervention=human)
        if result.episode_done:
            if self._reset_client is not None:
                self._request_reset(now)
                if not self.lockstep:
                    self._publish_result(self.core.safe(state), joints)
                return
            self.core.begin_episode()
            result = self.core.tick(state, stale=stale, enabled=enabled, intervention=human)
        self._publish_result(result, joints)

    def _publish_result(self, result: Any, joints: JointSample | None) -> None:
        if result.command is None:
            return
        self._publish_command(result.command)
        if joints is not None and joints is not self._latency_sample:
            # observation -> command: the first command computed from each newly received state
            self._latency_sample = joints
            self.latency_us.add((time.monotonic() - joints.received) * 1e6)

    def _publish_command(self, command: np.ndarray) -> None:
        data = array.array("d")
        data.frombytes(np.ascontiguousarray(command, dtype=np.float64).tobytes())
        self._command_msg.data = data
        self._command_pub.publish(self._command_msg)

    def _publish_transitions(self, batch: TransitionBuffer) -> None:
        self._transitions_pub.publish(encode_transitions(batch, self._transition_seq))
        self._transition_seq += 1
        self.transition_msgs += 1
        self.transitions_sent += batch.rows

    # ------------------------------------------------------------------ episode resets
    def _request_reset(self, now: float) -> None:
        assert self._reset_client is not None
        self._reset_done_at = None
        self._reset_sent_count = self._joint_count
        self._reset_sent_at = now
        if not self._reset_client.service_is_ready():
            self._reset_future = _NOT_SENT
            return
        self._reset_future = self._reset_client.call_async(Trigger.Request())
        self._reset_future.add_done_callback(self._on_reset_done)

    def _on_reset_done(self, future: Any) -> None:
        self._reset_done_at = time.monotonic()
        self._new_state.set()

    def _reset_finished(self, now: float) -> bool:
        """True once the reset succeeded and a post-reset state arrived; then a new episode starts."""
        future = self._reset_future
        if future is _NOT_SENT:
            if now - self._reset_sent_at > 0.5:
                self.reset_failures += 1
                self._warn_state(f"reset service {self._reset_client.srv_name} not available; retrying")
                self._request_reset(now)
            return False
        if not future.done():
            if now - self._reset_sent_at > RESET_TIMEOUT_S:
                self.reset_failures += 1
                self._warn_state(f"reset service timed out after {RESET_TIMEOUT_S:g} s; retrying")
                self._request_reset(now)
            return False
        response = future.result()
        if response is None or not response.success:
            self.reset_failures += 1
            message = "no response" if response is None else response.message
            self._warn_state(f"reset service failed: {message}; retrying")
            self._request_reset(now)
            return False
        joints = self._joints
        if self.lockstep:
            # the sim publishes the new episode's first state (new stamp) before answering
            fresh = self._joint_count > self._reset_sent_count
        else:
            fresh = (
                joints is not None
                and self._reset_done_at is not None
                and joints.received > self._reset_done_at
            )
        if not fresh:
            return False
        self._reset_future = None
        self.core.begin_episode()
        return True

    # ------------------------------------------------------------------ diagnostics (executor thread)
    def _diagnostic_status(self) -> Status:
        now = time.monotonic()
        elapsed = max(now - self._window_start, 1e-9)
        self.achieved_rate_hz = self._ticks_window / elapsed
        self._ticks_window = 0
        self._window_start = now
        counters = self.core.counters
        safety = self.core.safety.counters
        tick_p50, tick_p99 = self.tick_error_us.percentiles()
        _, interval_p99 = self.interval_error_us.percentiles()
        inference_p50, inference_p99 = self.core.inference_us.percentiles()
        latency_p50, latency_p99 = self.latency_us.percentiles()
        joints = self._joints
        state_age_ms = float("inf") if joints is None else (now - joints.received) * 1e3
        episode = self.core.last_episode
        values: dict[str, Any] = {
            "mode": self.mode,
            "sim_mode": "lockstep" if self.lockstep else "realtime",
            "rate_hz": self.achieved_rate_hz,
            "target_rate_hz": self.rate_hz,
            "tick_error_p50_us": tick_p50,
            "tick_error_p99_us": tick_p99,
            "tick_interval_error_p99_us": interval_p99,
            "inference_p50_us": inference_p50,
            "inference_p99_us": inference_p99,
            "latency_p50_us": latency_p50,
            "latency_p99_us": latency_p99,
            "deadline_misses": self.deadline_misses,
            "policy_version": self.policy_version,
            "policy_swaps": self.policy_swaps,
            "policies_rejected": self.policies_rejected,
            "state_age_ms": state_age_ms,
            "stale_ticks": counters.stale,
            "stale_events": sum(w.stale_events for w in self._watchdogs.values()),
            "invalid_state_ticks": counters.invalid_state,
            "state_errors": self.state_errors,
            "bad_actions": counters.bad_actions,
            "safe_commands": safety.safe_commands,
            "clipped_commands": safety.clipped,
            "disabled_ticks": counters.disabled,
            "intervention_ticks": counters.intervention_actions,
            "random_ticks": counters.random_actions,
            "policy_ticks": counters.policy_actions,
            "episodes": counters.episodes,
            "last_episode_return": episode.episode_return,
            "last_episode_steps": episode.steps,
            "transitions_sent": self.transitions_sent,
            "transition_msgs": self.transition_msgs,
            "learner_env_steps": self._progress_env_steps,
            "throttled": self.throttled,
            "throttle_events": self.throttle_events,
            "reset_failures": self.reset_failures,
        }
        level, message = OK, "running"
        if joints is None:
            level, message = WARN, f"no {JOINT_STATES_TOPIC} received yet"
        elif state_age_ms > self.state_timeout_s * 1e3:
            level, message = ERROR, f"stale state ({state_age_ms:.0f} ms old): sending the safe command"
        elif self.policy_version < 0:
            message = "no policy yet: " + ("random exploration" if self.mode == "train" else "safe command")
        elif self.throttled:
            message = "paused: waiting for the learner (lockstep UTD throttle)"
        if self.last_state_error:
            values["last_state_error"] = self.last_state_error
        if counters.last_error:
            values["last_error"] = counters.last_error
        if self.last_policy_error:
            values["last_policy_error"] = self.last_policy_error
            level = max(level, WARN)
        return Status(level, message, values)


class _NotSent:
    """Marker: the reset service was not available when the episode ended."""


_NOT_SENT = _NotSent()


def main(args: list[str] | None = None) -> int:
    """Entry point of ``actor_node`` (``python -m rl_control.ros.actor_node --ros-args --params-file X``)."""
    # rclpy's EventsExecutor dispatches callbacks from C++: far less GIL time per message than the
    # SingleThreadedExecutor, which keeps the control thread's wake-ups on time at 500-1000 Hz.
    return run_node(NODE_NAME, ActorNode, args, executor_factory=EventsExecutor)


if __name__ == "__main__":
    raise SystemExit(main())
