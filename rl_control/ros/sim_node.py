"""sim_node: the MuJoCo robot behind ros2_control-style topics.

Publishes ``/joint_states`` (plus ``/imu`` and ``/odom`` when the robot has those sensors) and ``/clock``,
and applies ``/<controller>/commands`` (``std_msgs/Float64MultiArray`` in the configured ``joint_names``
order) with a zero-order hold; position commands are tracked by the simulator's PD loop at physics rate.

Modes (``sim_node.sim_mode``):

``lockstep``
    Each received command advances the simulation by exactly one control period and then publishes the new
    state, so training runs as fast as the actor and learner allow and is reproducible. While no command
    arrives for ``IDLE_REPUBLISH_S`` the current state is re-published unchanged (same stamp), so a late
    subscriber gets a first state; act once per distinct ``header.stamp``.
``realtime``
    A pacing thread steps one control period per ``1 / (control_rate_hz * real_time_factor)`` wall seconds
    against absolute deadlines; commands arrive asynchronously, like hardware. When no valid command
    arrived for ``command_timeout_s`` (wall clock), the safe command is applied -- hold the measured
    position (position interface) or zero effort -- as ros2_controllers' ``cmd_timeout`` does; so a dead
    actor never leaves the robot driven by its last command. (In lockstep the simulation only advances on
    commands, so a silent actor freezes simulated time instead; the timeout does not apply.)

The simulated clock (``/clock`` and every header stamp) is monotonic across episodes: each step and each
reset advances it by one control period.

Services: ``~/reset`` (``std_srvs/Trigger``: new episode from the task's initial-state distribution, with
domain randomization re-sampled) and ``~/pause`` (``std_srvs/SetBool``). Invalid commands (wrong length,
non-finite values) are rejected with a log naming the topic; the previous command stays applied.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
from nav_msgs.msg import Odometry
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rosgraph_msgs.msg import Clock as ClockMsg
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool, Trigger

from rl_control.ros.messages import (
    CLOCK_QOS,
    CLOCK_TOPIC,
    COMMAND_QOS,
    IMU_TOPIC,
    JOINT_STATES_TOPIC,
    ODOM_TOPIC,
    STATE_QOS,
    command_topic,
)
from rl_control.ros.node_parameters import on_parameter_change
from rl_control.ros.node_utils import (
    OK,
    WARN,
    DiagnosticsPublisher,
    RateMeter,
    Status,
    ThrottledLog,
    run_node,
)

NODE_NAME = "sim_node"
IDLE_REPUBLISH_S = 0.5
BASE_FRAME = "base_link"
IMU_FRAME = "imu_link"
ODOM_FRAME = "odom"


def command_index(command_joints: tuple[str, ...], robot_joints: tuple[str, ...], robot: str) -> np.ndarray:
    """Index into the command array for each robot joint (the command order is ``command_joints``).

    Raises ``ValueError`` naming the unknown or missing joints.
    """
    unknown = [name for name in command_joints if name not in robot_joints]
    missing = [name for name in robot_joints if name not in command_joints]
    if unknown or missing:
        raise ValueError(
            f"joint_names {list(command_joints)} do not match the actuated joints of robot {robot!r} "
            f"{list(robot_joints)}: unknown {unknown}, missing {missing}"
        )
    return np.array([command_joints.index(name) for name in robot_joints], dtype=np.intp)


def reset_rng(seed: int) -> np.random.Generator:
    """The generator of episode start states: a stream independent of the simulator's (same seed)."""
    return np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])


class SimNode:
    """The simulator application behind the ``sim_node`` ROS node."""

    def __init__(self, node: Node, config: Any) -> None:
        from rl_control.envs import make_task
        from rl_control.envs.simulator import MujocoSimulator

        shared = config.shared
        sim_cfg = config.sim_node
        self._node = node
        self._log = node.get_logger()
        self._task = make_task(shared.task, control_rate_hz=shared.control_rate_hz)
        self._sim = MujocoSimulator(
            self._task.robot,
            control_rate_hz=shared.control_rate_hz,
            randomization=sim_cfg.randomization,
            seed=shared.seed,
            fit_physics_step=True,
        )
        model_dt = self._task.spec.timestep
        if abs(self._sim.physics_dt - model_dt) > 1e-12:
            self._log.warning(
                f"physics step shortened from {model_dt:g} s to {self._sim.physics_dt:g} s so that "
                f"{shared.control_rate_hz:g} Hz control is a whole number of physics steps"
            )
        self._rng = reset_rng(shared.seed)
        self._lockstep = sim_cfg.sim_mode == "lockstep"
        self._real_time_factor = sim_cfg.real_time_factor
        self._command_timeout_s = sim_cfg.command_timeout_s
        self._last_command_at: float | None = None  # monotonic time of the last valid command
        self._command_timeouts = 0
        self._publish_clock = sim_cfg.publish_clock
        self._period_ns = round(1e9 / shared.control_rate_hz)
        self._joint_names = tuple(self._sim.joint_names)
        command_joints = tuple(shared.joint_names) or tuple(self._task.joint_names)
        self._command_index = command_index(command_joints, self._joint_names, self._task.robot)
        self._command_topic = command_topic(shared.controller)

        self.fatal_error: str | None = None
        self._lock = threading.Lock()
        self._paused = False
        self._step_while_paused = False
        self._sim_time_ns = 0
        self._episodes = 0
        self._steps = 0
        self._rejected = 0
        self._overruns = 0
        self._step_time_s = 0.0
        self._last_publish = time.monotonic()
        self._step_rate = RateMeter()
        self._warn_command = ThrottledLog(self._log.warning)

        self._joint_pub = node.create_publisher(JointState, JOINT_STATES_TOPIC, STATE_QOS)
        self._clock_pub = (
            node.create_publisher(ClockMsg, CLOCK_TOPIC, CLOCK_QOS) if self._publish_clock else None
        )
        self._imu_pub = None
        self._odom_pub = None

        with self._lock:
            state = self._reset_locked()
        if state.imu_orientation is not None:
            self._imu_pub = node.create_publisher(Imu, IMU_TOPIC, STATE_QOS)
        if state.base_linear_velocity is not None:
            self._odom_pub = node.create_publisher(Odometry, ODOM_TOPIC, STATE_QOS)
        self._state = state

        commands = node.create_subscription(
            Float64MultiArray, self._command_topic, self._on_command, COMMAND_QOS
        )
        self._command_topic = commands.topic_name  # resolved in the node's namespace, for messages
        node.create_service(Trigger, "~/reset", self._on_reset)
        node.create_service(SetBool, "~/pause", self._on_pause)
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        on_parameter_change(node, "real_time_factor", self._set_real_time_factor)
        on_parameter_change(node, "command_timeout_s", self._set_command_timeout)
        self._diagnostics = DiagnosticsPublisher(node, self._diagnostic_status, hardware_id=self._task.robot)
        self._stop = threading.Event()
        self._pacer: threading.Thread | None = None
        if self._lockstep:
            node.create_timer(IDLE_REPUBLISH_S / 2, self._republish_if_idle, clock=steady)
        else:
            self._pacer = threading.Thread(target=self._pace, name="sim_pacer", daemon=True)
        self._publish(self._state)
        if self._pacer is not None:
            self._pacer.start()
        self._log.info(
            f"simulating {self._task.robot!r} for task {self._task.name!r} in {sim_cfg.sim_mode} mode at "
            f"{shared.control_rate_hz:g} Hz; commands on {self._command_topic} "
            f"in order {list(command_joints)}"
        )

    # --- simulation -------------------------------------------------------------------------------
    def _reset_locked(self) -> Any:
        qpos, qvel = self._task.initial_state(self._rng)
        state = self._sim.reset(qpos, qvel)  # the simulator holds position / applies zero effort
        self._sim_time_ns += self._period_ns
        self._episodes += 1
        return state

    def _step_locked(self) -> Any:
        started = time.perf_counter()
        state = self._sim.step()
        self._step_time_s = time.perf_counter() - started
        self._sim_time_ns += self._period_ns
        self._steps += 1
        self._step_rate.tick()
        return state

    def _pace(self) -> None:
        """Realtime mode: step against absolute wall-clock deadlines."""
        try:
            self._pace_loop()
        except Exception as exc:  # surfaced by run_node: the process exits non-zero
            self.fatal_error = f"realtime stepping failed: {exc!r}"
            raise

    def _pace_loop(self) -> None:
        deadline = time.monotonic()
        while not self._stop.is_set():
            period_s = self._period_ns * 1e-9 / self._real_time_factor  # tunable at run time
            deadline += period_s
            delay = deadline - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -5 * period_s:  # far behind (e.g. the machine stalled): drop the backlog
                self._overruns += 1
                deadline = time.monotonic()
            with self._lock:
                if self._paused:
                    continue
                self._apply_safe_command_if_timed_out_locked()
                state = self._step_locked()
            self._publish(state)

    def _apply_safe_command_if_timed_out_locked(self) -> None:
        """Realtime mode: replace a command older than ``command_timeout_s`` by the safe command."""
        if self._last_command_at is None or self._command_timeout_s <= 0:
            return
        age = time.monotonic() - self._last_command_at
        if age < self._command_timeout_s:
            return
        if self._sim.command_interface == "position":
            safe = np.asarray(self._state.position, dtype=np.float64)  # hold where the joints are
        else:
            safe = np.zeros(len(self._joint_names))
        self._sim.apply_command(safe)
        self._last_command_at = None
        self._command_timeouts += 1
        self._log.warning(
            f"no command on {self._command_topic} for {age:.3f} s (command_timeout_s "
            f"{self._command_timeout_s:g}): applied the safe command {safe.tolist()}"
        )

    def _set_real_time_factor(self, factor: float) -> None:
        self._real_time_factor = factor

    def _set_command_timeout(self, timeout_s: float) -> None:
        with self._lock:
            self._command_timeout_s = timeout_s

    # --- ROS interface ----------------------------------------------------------------------------
    def _on_command(self, msg: Float64MultiArray) -> None:
        command = self._validate_command(msg)
        with self._lock:
            if command is not None:
                self._sim.apply_command(command[self._command_index])
                self._last_command_at = time.monotonic()
            if not self._lockstep:
                return
            if self._paused:
                self._step_while_paused = True
                return
            state = self._step_locked()
        self._publish(state)

    def _validate_command(self, msg: Float64MultiArray) -> np.ndarray | None:
        values = np.asarray(msg.data, dtype=np.float64)
        expected = len(self._command_index)
        if values.shape != (expected,):
            problem = f"expected {expected} values (joints {list(self._joint_names)}), got {values.size}"
        elif not np.all(np.isfinite(values)):
            problem = f"non-finite values {values.tolist()}"
        else:
            return values
        self._rejected += 1
        self._warn_command(
            f"rejected command on {self._command_topic}: {problem}; holding the previous command"
        )
        return None

    def _on_reset(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self._lock:
            state = self._reset_locked()
            self._last_command_at = None  # the reset applied the hold / zero command itself
            episode = self._episodes
            info = dict(self._sim.randomization_info)
        self._publish(state)
        response.success = True
        response.message = f"episode {episode} started" + (f"; randomization {info}" if info else "")
        return response

    def _on_pause(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        state = None
        with self._lock:
            self._paused = bool(request.data)
            if not self._paused and self._step_while_paused:
                self._step_while_paused = False
                state = self._step_locked()
        if state is not None:
            self._publish(state)
        response.success = True
        response.message = "paused" if request.data else "running"
        return response

    def _republish_if_idle(self) -> None:
        if time.monotonic() - self._last_publish >= IDLE_REPUBLISH_S:
            with self._lock:
                state = self._sim.state()
            self._publish(state, advance=False)

    def _publish(self, state: Any, *, advance: bool = True) -> None:
        """Publish ``state`` stamped with the current simulated time."""
        self._state = state
        self._last_publish = time.monotonic()
        seconds, nanoseconds = divmod(self._sim_time_ns, 1_000_000_000)
        msg = JointState()
        msg.name = list(self._joint_names)
        msg.header.frame_id = BASE_FRAME
        msg.header.stamp.sec = seconds
        msg.header.stamp.nanosec = nanoseconds
        msg.position = np.asarray(state.position, dtype=np.float64)
        msg.velocity = np.asarray(state.velocity, dtype=np.float64)
        msg.effort = np.asarray(state.effort, dtype=np.float64)
        if self._clock_pub is not None and advance:
            clock = ClockMsg()
            clock.clock.sec = seconds
            clock.clock.nanosec = nanoseconds
            self._clock_pub.publish(clock)
        self._joint_pub.publish(msg)
        if self._imu_pub is not None and state.imu_orientation is not None:
            self._imu_pub.publish(self._imu_message(state, seconds, nanoseconds))
        if self._odom_pub is not None and state.base_linear_velocity is not None:
            self._odom_pub.publish(self._odom_message(state, seconds, nanoseconds))

    @staticmethod
    def _imu_message(state: Any, seconds: int, nanoseconds: int) -> Imu:
        msg = Imu()
        msg.header.stamp.sec = seconds
        msg.header.stamp.nanosec = nanoseconds
        msg.header.frame_id = IMU_FRAME
        w, x, y, z = (float(v) for v in state.imu_orientation)
        msg.orientation.w, msg.orientation.x, msg.orientation.y, msg.orientation.z = w, x, y, z
        if state.imu_angular_velocity is not None:
            gx, gy, gz = (float(v) for v in state.imu_angular_velocity)
            msg.angular_velocity.x, msg.angular_velocity.y, msg.angular_velocity.z = gx, gy, gz
        if state.imu_linear_acceleration is not None:
            ax, ay, az = (float(v) for v in state.imu_linear_acceleration)
            msg.linear_acceleration.x, msg.linear_acceleration.y, msg.linear_acceleration.z = ax, ay, az
        return msg

    @staticmethod
    def _odom_message(state: Any, seconds: int, nanoseconds: int) -> Odometry:
        msg = Odometry()
        msg.header.stamp.sec = seconds
        msg.header.stamp.nanosec = nanoseconds
        msg.header.frame_id = ODOM_FRAME
        msg.child_frame_id = BASE_FRAME
        vx, vy, vz = (float(v) for v in state.base_linear_velocity)
        msg.twist.twist.linear.x, msg.twist.twist.linear.y, msg.twist.twist.linear.z = vx, vy, vz
        if state.imu_angular_velocity is not None:
            wx, wy, wz = (float(v) for v in state.imu_angular_velocity)
            msg.twist.twist.angular.x, msg.twist.twist.angular.y, msg.twist.twist.angular.z = wx, wy, wz
        return msg

    def _diagnostic_status(self) -> Status:
        with self._lock:
            values: dict[str, Any] = {
                "mode": "lockstep" if self._lockstep else "realtime",
                "paused": self._paused,
                "episodes": self._episodes,
                "steps": self._steps,
                "step_rate_hz": self._step_rate.rate(),
                "sim_time_s": self._sim_time_ns * 1e-9,
                "step_compute_us": self._step_time_s * 1e6,
                "rejected_commands": self._rejected,
                "realtime_overruns": self._overruns,
                "command_timeouts": self._command_timeouts,
                "command_timeout_s": self._command_timeout_s,
                "real_time_factor": self._real_time_factor,
            }
            values.update({f"randomization.{k}": v for k, v in self._sim.randomization_info.items()})
        level = WARN if self._rejected or self._overruns else OK
        message = "paused" if self._paused else "running"
        if self._rejected:
            message += f"; {self._rejected} commands rejected on {self._command_topic}"
        return Status(level, message, values)

    def shutdown(self) -> None:
        """Stop the realtime pacing thread."""
        self._stop.set()
        if self._pacer is not None:
            self._pacer.join(timeout=2.0)


def main(args: list[str] | None = None) -> int:
    """Entry point of ``sim_node`` (``python -m rl_control.ros.sim_node --ros-args --params-file X``)."""
    return run_node(NODE_NAME, SimNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
