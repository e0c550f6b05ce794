"""driver_node: Dynamixel X-series servos behind the same topics as sim_node (a lifecycle node).

Publishes ``/joint_states`` (servo readings in SI units, the robot's joint order) at ``state_rate_hz`` and
applies ``/<controller>/commands`` (``std_msgs/Float64MultiArray`` in the configured ``joint_names`` order:
joint positions [rad], or joint torques [N m] for current-mode servos). Invalid commands (wrong length,
non-finite values) are rejected with a log naming the topic; the last valid one holds.

Lifecycle (``rclpy.lifecycle``; ``autostart`` runs configure + activate by itself):

* configure: open the port, ping every id, check model numbers, write operating mode, limits, return delay
  (torque off); the bus loop starts and ``/joint_states`` flows;
* activate: goal := present position, torque on, bus watchdog armed, commands applied;
* deactivate: hold position / zero current, then torque off;
* cleanup / shutdown (and SIGINT/SIGTERM): torque off, close the port.

Services: ``~/torque`` (``std_srvs/SetBool``, active only), ``~/reboot`` (``std_srvs/Trigger``: reboots the
servos that report a hardware error, then re-enables their torque when active) and
``~/reset`` (``std_srvs/Trigger``: move to the robot's home pose, as the actor's episode reset).
``/diagnostics``: the bus (rates, failures, command timeout) and one status per servo id (hardware error
bits decoded, answering or not, torque).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.lifecycle.managed_entity import ManagedEntity
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool, Trigger

from rl_control.drivers.dynamixel import control_table as ct
from rl_control.drivers.dynamixel.driver import (
    DriverLoop,
    DriverStartupError,
    DynamixelBus,
    JointReading,
    servos_from_config,
    settings_from_config,
)
from rl_control.ros.messages import COMMAND_QOS, JOINT_STATES_TOPIC, STATE_QOS, command_topic
from rl_control.ros.node_utils import (
    ERROR,
    OK,
    WARN,
    DiagnosticsPublisher,
    RateMeter,
    Status,
    ThrottledLog,
    run_node,
)
from rl_control.ros.sim_node import BASE_FRAME, command_index

NODE_NAME = "driver_node"


class DriverApp(ManagedEntity):
    """The driver application behind the ``driver_node`` lifecycle node."""

    def __init__(self, node: Node, config: Any) -> None:
        from rl_control.envs import make_task

        self._node = node
        self._log = node.get_logger()
        self._config = config
        driver = config.driver_node
        if not driver.servo_ids:
            raise ValueError(
                f"{config.source or 'parameters'}: driver_node.servo_ids is empty: no servos to drive"
            )
        task = make_task(config.shared.task)
        spec = task.spec
        robot_joints = tuple(spec.joint_names)
        if sorted(driver.servo_joints) != sorted(robot_joints):
            raise ValueError(
                f"driver_node.servo_joints {list(driver.servo_joints)} must name each joint of robot "
                f"{task.robot!r} once: {list(robot_joints)}"
            )
        servo_order = [robot_joints.index(name) for name in driver.servo_joints]
        self._servos = servos_from_config(driver, spec.joint_low[servo_order], spec.joint_high[servo_order])
        self._settings = settings_from_config(driver)
        # servo index of each robot joint (published order) and command index of each servo
        self._publish_index = np.array([list(driver.servo_joints).index(name) for name in robot_joints])
        command_joints = tuple(config.shared.joint_names) or tuple(task.joint_names)
        self._command_index = command_index(command_joints, tuple(driver.servo_joints), task.robot)
        self._joint_names = list(robot_joints)
        self._home = np.asarray(spec.home_qpos, dtype=np.float64)[np.asarray(spec.qpos_adr)[servo_order]]
        self._reset_speed_rad_s = driver.reset_speed_rad_s
        self._reset_tolerance_rad = driver.reset_tolerance_rad
        self._command_topic = command_topic(config.shared.controller)
        self.startup_error: str | None = None
        self.fatal_error: str | None = None
        self._active = False  # lifecycle state is active
        self._bus: DynamixelBus | None = None
        self._loop: DriverLoop | None = None
        self._lock = threading.RLock()
        self._rejected = 0
        self._state_rate = RateMeter()
        self._warn_command = ThrottledLog(self._log.warning)
        self._joint_pub = node.create_publisher(JointState, JOINT_STATES_TOPIC, STATE_QOS)
        commands = node.create_subscription(
            Float64MultiArray, self._command_topic, self._on_command, COMMAND_QOS
        )
        self._command_topic = commands.topic_name  # resolved in the node's namespace, for messages
        node.create_service(SetBool, "~/torque", self._on_torque)
        node.create_service(Trigger, "~/reboot", self._on_reboot)
        node.create_service(Trigger, "~/reset", self._on_reset)
        self._diagnostics = DiagnosticsPublisher(node, self._diagnostic_status, hardware_id=driver.port)
        assert isinstance(node, LifecycleNode), "driver_node must run as a lifecycle node"
        node.add_managed_entity(self)
        if driver.autostart:
            self._autostart(node)

    def _autostart(self, node: LifecycleNode) -> None:
        """configure + activate; on failure the port is released and DriverStartupError raised (exit 2)."""
        for step, trigger in (("configure", node.trigger_configure), ("activate", node.trigger_activate)):
            if trigger() != TransitionCallbackReturn.SUCCESS:
                self._release()
                raise DriverStartupError(self.startup_error or f"{step} failed")

    # --- lifecycle ------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        bus = DynamixelBus(self._settings, self._servos)
        try:
            bus.open()
            bus.check_servos()
            bus.configure()
        except DriverStartupError as exc:
            self.startup_error = str(exc)
            self._log.error(f"configure failed: {exc}")
            if bus.is_open:
                bus.close()
            return TransitionCallbackReturn.FAILURE
        with self._lock:
            self._bus = bus
            self._loop = DriverLoop(bus, self._publish, self._on_fatal)
            self._loop.start()
        ids = [servo.servo_id for servo in self._servos]
        self._log.info(
            f"configured servos {ids} on {self._settings.port} at {self._settings.baud_rate} baud; "
            f"{self._settings.state_rate_hz:g} Hz bus cycle; commands on {self._command_topic}"
        )
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = self._set_torque(True)
        self._active = result == TransitionCallbackReturn.SUCCESS
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        return self._set_torque(False)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _set_torque(self, enabled: bool) -> TransitionCallbackReturn:
        with self._lock:
            if self._bus is None or self._loop is None:
                return TransitionCallbackReturn.FAILURE
            try:
                if not enabled:
                    self._hold_for_one_cycle()
                self._loop.enable(False)
                self._bus.set_torque(enabled)
                self._loop.enable(enabled)
            except DriverStartupError as exc:
                self.startup_error = str(exc)
                self._log.error(f"torque {'on' if enabled else 'off'} failed: {exc}")
                return TransitionCallbackReturn.FAILURE
        self._log.info("torque on: commands enabled" if enabled else "torque off: commands disabled")
        return TransitionCallbackReturn.SUCCESS

    def _hold_for_one_cycle(self) -> None:
        """Deactivation's safe behaviour: hold the measured position (zero current) before torque off."""
        assert self._loop is not None and self._bus is not None
        reading = self._loop.last_reading
        if self._loop.enabled and reading is not None:
            self._loop.set_command(self._loop.safe_goals(reading))
            time.sleep(2.0 / self._settings.state_rate_hz)

    def _release(self) -> None:
        """Torque off and close the port (idempotent)."""
        self._active = False
        with self._lock:
            if self._loop is not None:
                self._loop.stop()
                self._loop = None
            if self._bus is not None:
                self._bus.close()
                self._bus = None

    # --- topics and services --------------------------------------------------------------------
    def _publish(self, reading: JointReading) -> None:
        msg = JointState()
        msg.header.stamp = self._node.get_clock().now().to_msg()
        msg.header.frame_id = BASE_FRAME
        msg.name = self._joint_names
        msg.position = reading.position[self._publish_index].tolist()
        msg.velocity = reading.velocity[self._publish_index].tolist()
        msg.effort = reading.effort[self._publish_index].tolist()
        self._joint_pub.publish(msg)
        self._state_rate.tick()

    def _on_command(self, msg: Float64MultiArray) -> None:
        values = np.asarray(msg.data, dtype=np.float64)
        expected = len(self._command_index)
        if values.shape != (expected,):
            problem = f"expected {expected} values, got {values.size}"
        elif not np.all(np.isfinite(values)):
            problem = f"non-finite values {values.tolist()}"
        else:
            loop = self._loop
            if loop is not None and loop.enabled:
                loop.set_command(values[self._command_index])
            return
        self._rejected += 1
        self._warn_command(
            f"rejected command on {self._command_topic}: {problem}; holding the previous command"
        )

    def _on_torque(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        if not self._active:
            response.success = False
            response.message = "driver_node is not active: activate it first (lifecycle)"
            return response
        result = self._set_torque(bool(request.data))
        response.success = result == TransitionCallbackReturn.SUCCESS
        response.message = (
            ("torque on" if request.data else "torque off") if response.success else str(self.startup_error)
        )
        return response

    def _on_reboot(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self._lock:
            bus, loop = self._bus, self._loop
            if bus is None or loop is None:
                response.success, response.message = False, "driver_node is not configured"
                return response
            faulty = [i for i, health in bus.health.items() if health.hardware_error]
            problems = [text for text in (bus.reboot(servo_id) for servo_id in faulty) if text]
            if loop.enabled and faulty and not problems:
                time.sleep(0.1)  # the servo restarts
                try:
                    bus.set_torque(True, faulty)
                except DriverStartupError as exc:
                    problems.append(str(exc))
        response.success = not problems
        response.message = "; ".join(problems) if problems else f"rebooted servo ids {faulty}"
        self._log.info(f"reboot: {response.message}")
        return response

    def _on_reset(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        """Move to the home pose (:meth:`DriverLoop.move_home`), then answer (the executor waits)."""
        loop = self._loop
        if loop is None:
            response.success, response.message = False, "driver_node is not active"
            return response
        position_mode = np.array([not servo.takes_current for servo in self._servos])
        speed, tolerance = self._reset_speed_rad_s, self._reset_tolerance_rad
        problem = loop.move_home(self._home, position_mode, speed, tolerance)
        response.success, response.message = not problem, problem or "at the home pose"
        return response

    def _diagnostic_status(self) -> list[tuple[str, Status]]:
        bus, loop = self._bus, self._loop
        if bus is None or loop is None:
            return [("bus", Status(WARN, f"not configured ({self.startup_error or 'unconfigured'})", {}))]
        counters = bus.counters
        values: dict[str, Any] = {
            "state_rate_hz": self._state_rate.rate(),
            "cycles": counters.cycles,
            "read_failures": counters.read_failures,
            "write_failures": counters.write_failures,
            "retries": counters.retries,
            "read_latency_p99_ms": counters.p99_ms(counters.read_latencies_s),
            "command_latency_p99_ms": counters.p99_ms(counters.command_latencies_s),
            "consecutive_failures": counters.consecutive_failures,
            "rejected_commands": self._rejected,
            "commands_enabled": loop.enabled,
            "command_timed_out": loop.timed_out,
            "overruns": loop.overruns,
        }
        if loop.in_fault:
            status = Status(ERROR, f"bus failing: {counters.last_error}; holding position", values)
        elif loop.timed_out:
            status = Status(
                WARN,
                f"no command on {self._command_topic} for {self._settings.command_timeout_s:g} s: holding",
                values,
            )
        else:
            status = Status(OK, "running" if loop.enabled else "torque off", values)
        statuses = [("bus", status)]
        for servo in self._servos:
            health = bus.health[servo.servo_id]
            errors = ct.decode_hardware_error(health.hardware_error)
            level = ERROR if errors or not health.responding else OK
            message = "; ".join(errors) if errors else ("ok" if health.responding else "not answering")
            statuses.append(
                (
                    f"servo {servo.servo_id} ({servo.joint})",
                    Status(
                        level,
                        message,
                        {
                            "id": servo.servo_id,
                            "model": servo.model.name,
                            "hardware_error": health.hardware_error,
                            "torque_on": health.torque_on,
                            "watchdog_trips": health.watchdog_trips,
                        },
                    ),
                )
            )
        return statuses

    def shutdown(self) -> None:
        """SIGINT/SIGTERM: torque off and close the port."""
        self._release()

    def _on_fatal(self, message: str) -> None:
        """The bus loop thread died: run_node exits non-zero (after shutdown turns the torque off)."""
        self.fatal_error = message


def main(args: list[str] | None = None) -> int:
    return run_node(NODE_NAME, DriverApp, args, node_factory=LifecycleNode)


if __name__ == "__main__":
    raise SystemExit(main())
