"""driver_node in a child process against the servo-bus emulator in another: topics, commands, PID step
response, command timeout, faults, services, lifecycle from a plain client, SIGTERM and SIGKILL."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dynamixel_sdk as sdk
import mujoco
import numpy as np
import pytest
import yaml

pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool, Trigger

from rl_control.config import load_experiment
from rl_control.drivers.dynamixel import control_table as ct
from rl_control.drivers.dynamixel.emulator import REALITY_GAPS, setup_from_config
from rl_control.envs import make_task
from rl_control.paths import config_path
from rl_control.ros import messages
from rl_control.testing.emulator import EmulatorProcess
from rl_control.testing.exported_policy import constant_task_policy
from rl_control.testing.node_process import NodeProcess
from rl_control.testing.probe import RosProbe

pytestmark = [pytest.mark.ros, pytest.mark.usefixtures("ros_domain")]

RATE_HZ = 100.0
STARTUP_S = 60.0
CONTROLLER = "forward_position_controller"
JOINTS = ["base_yaw", "shoulder", "elbow", "wrist"]


class Emulator(EmulatorProcess):
    """The emulator process, plus reading registers once the driver has let go of the port."""

    def registers(self, entry: tuple[int, int]) -> dict[int, int]:
        """Read one register of every servo with the plain SDK (when the driver has let go of the port)."""
        port, handler = self.open_port()
        values = {}
        for servo_id in (1, 2, 3, 4):
            for _attempt in range(3):  # like the driver, retry a reply lost to a slow (loaded) machine
                data, result, _ = handler.readTxRx(port, servo_id, *entry)
                if result == sdk.COMM_SUCCESS:
                    break
            assert result == sdk.COMM_SUCCESS, f"servo {servo_id}: {handler.getTxRxResult(result)}"
            values[servo_id] = ct.signed(int.from_bytes(bytes(data), "little"), entry[1])
        port.closePort()
        return values


def write_config(tmp_path: Path, **driver: object) -> Path:
    document = yaml.safe_load(config_path("arm_dynamixel.yaml").read_text())
    params = document["driver_node"]["ros__parameters"]
    params.update({"port": str(tmp_path / "ttyDXL"), "state_rate_hz": RATE_HZ, **driver})
    document["/**"]["ros__parameters"]["run_dir"] = str(tmp_path / "run")
    path = tmp_path / "arm_dynamixel.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[Path, Emulator]]:
    config = write_config(tmp_path)
    emulator = Emulator(config, tmp_path)
    try:
        yield config, emulator
    finally:
        emulator.stop()


class DriverClient:
    """Joint states, diagnostics and commands of a running driver_node."""

    def __init__(self, probe: RosProbe, node: NodeProcess) -> None:
        self.probe = probe
        self.node = node
        self.states = probe.collect(JointState, messages.JOINT_STATES_TOPIC, messages.STATE_QOS)
        self.diagnostics = probe.collect(
            DiagnosticArray, messages.DIAGNOSTICS_TOPIC, messages.DIAGNOSTICS_QOS
        )
        self.commands = probe.publisher(
            Float64MultiArray, messages.command_topic(CONTROLLER), messages.COMMAND_QOS
        )
        assert probe.spin_until(lambda: bool(self.states), STARTUP_S), f"no joint state:\n{node.output()}"
        assert probe.spin_until(lambda: self.commands.get_subscription_count() > 0, STARTUP_S)

    @property
    def position(self) -> np.ndarray:
        return np.array(self.states[-1][1].position)

    def command(self, values: np.ndarray | list[float], seconds: float) -> None:
        """Publish ``values`` at 50 Hz for ``seconds`` (as an actor would)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.commands.publish(Float64MultiArray(data=[float(v) for v in values]))
            self.probe.spin_for(0.02)

    def status(self, suffix: str, predicate, timeout_s: float = 10.0) -> DiagnosticStatus:
        """Wait for a diagnostics status named ``driver_node: <suffix>`` that satisfies ``predicate``."""
        found: list[DiagnosticStatus] = []

        def match() -> bool:
            for _, array in reversed(self.diagnostics[-5:]):
                for entry in array.status:
                    if entry.name == f"driver_node: {suffix}" and predicate(entry):
                        found.append(entry)
                        return True
            return False

        latest = [e for _, a in self.diagnostics[-1:] for e in a.status]
        assert self.probe.spin_until(match, timeout_s), (
            f"no matching {suffix!r} status; latest: {[(e.name, e.level, e.message) for e in latest]}\n"
            f"{self.node.output()[-3000:]}"
        )
        return found[0]


def reference_step(start: np.ndarray, step: float, duration_s: float) -> np.ndarray:
    """Base-yaw trajectory of the same step on an in-process emulated bus (nominal model, no gap), from the
    same arm pose with every servo holding it, as the driver leaves them."""
    config = load_experiment(config_path("arm_dynamixel.yaml"))
    bus = setup_from_config(config, reality_gap="none").build()
    physics = bus.physics
    physics.data.qpos[physics.qpos_adr] = start
    physics.data.qvel[:] = 0.0
    mujoco.mj_forward(physics.model, physics.data)
    bus.step(time.monotonic())
    for servo in bus.servos.values():
        servo.motor_angle = start[servo.spec.servo_id - 1]
        limit = round(
            config.driver_node.current_limits_a[servo.spec.servo_id - 1] / servo.spec.model.current_unit_a
        )
        mode = ct.OPERATING_MODES[config.driver_node.operating_modes[servo.spec.servo_id - 1]]
        assert servo.write(ct.OPERATING_MODE[0], bytes((mode,))) == 0
        assert servo.write(ct.CURRENT_LIMIT[0], bytes(ct.to_le_bytes(limit, 2))) == 0
        assert servo.write(ct.GOAL_CURRENT[0], bytes(ct.to_le_bytes(limit, 2))) == 0
        assert servo.write(ct.GOAL_POSITION[0], bytes(ct.to_le_bytes(servo.measured_ticks(), 4))) == 0
        assert servo.write(ct.TORQUE_ENABLE[0], b"\x01") == 0
    base = bus.servos[1]
    goal = base.spec.calibration.position_ticks(start[0] + step)
    assert base.write(ct.GOAL_POSITION[0], bytes(ct.to_le_bytes(goal, 4))) == 0
    trajectory = []
    for _ in range(round(duration_s / 0.002)):
        bus.step(time.monotonic())
        trajectory.append(bus.joint_positions()["base_yaw"])
    return np.array(trajectory)


def test_driver_node_states_commands_faults_services_and_sigterm(probe: RosProbe, rig) -> None:
    config, emulator = rig
    with NodeProcess("driver_node", config) as node:
        driver = DriverClient(probe, node)
        assert list(driver.states[-1][1].name) == JOINTS

        # Joint states at the configured rate (loaded CI machine: at least half of it).
        count = len(driver.states)
        probe.spin_for(2.0)
        rate = (len(driver.states) - count) / 2.0
        assert rate > 0.5 * RATE_HZ, f"{rate:.0f} Hz joint states at {RATE_HZ:g} Hz\n{node.output()[-2000:]}"

        # A step on the base: the measured response follows the firmware PID of an in-process reference.
        start = driver.position
        target = start.copy()
        target[0] = start[0] + 0.5
        sent = time.monotonic()
        driver.command(target, 1.2)
        times = np.array([t for t, _ in driver.states]) - sent
        base = np.array([msg.position[0] for _, msg in driver.states])
        reference = reference_step(start, 0.5, 1.2)
        moved = np.flatnonzero((base - start[0] > 0.05) & (times > 0))[0]
        ref_moved = int(np.flatnonzero(reference - start[0] > 0.05)[0])
        for later_s in (0.05, 0.15, 0.4):
            measured = np.interp(times[moved] + later_s, times, base)
            expected = reference[min(len(reference) - 1, ref_moved + round(later_s / 0.002))]
            assert measured == pytest.approx(expected, abs=0.06), f"{later_s} s after the step starts"
        assert driver.position[0] == pytest.approx(start[0] + 0.5, abs=0.03)

        # Invalid commands are rejected, naming the topic; the last valid one holds.
        driver.commands.publish(Float64MultiArray(data=[0.0, 0.0]))
        driver.commands.publish(Float64MultiArray(data=[float("nan")] * 4))
        assert node.wait_for_output(f"rejected command on /{CONTROLLER}/commands", 10.0)

        # Command timeout (0.5 s): diagnostics say so, the arm holds its position.
        held = driver.position
        driver.status("bus", lambda s: s.level == DiagnosticStatus.WARN and "no command" in s.message)
        np.testing.assert_allclose(driver.position[[0, 3]], held[[0, 3]], atol=0.03)

        # A silent servo: ERROR naming it, the bus in its safe behaviour, the node alive; then recovery.
        emulator.fault(3, "silent", True)
        driver.status(
            "servo 3 (elbow)", lambda s: s.level == DiagnosticStatus.ERROR and "not answering" in s.message
        )
        driver.status("bus", lambda s: s.level == DiagnosticStatus.ERROR and "holding position" in s.message)
        emulator.fault(3, "silent", False)
        driver.status("servo 3 (elbow)", lambda s: s.level == DiagnosticStatus.OK)
        assert node.returncode is None

        # Corrupted and dropped replies: retried within the cycle and counted; the states keep flowing.
        def retries(status: DiagnosticStatus) -> int:
            return next(int(kv.value) for kv in status.values if kv.key == "retries")

        before = retries(driver.status("bus", lambda s: True))
        emulator.fault(4, "corrupt_crc_probability", 0.2)
        emulator.fault(4, "drop_reply_probability", 0.2)
        count = len(driver.states)
        driver.status("bus", lambda s: retries(s) > before + 5)
        probe.spin_for(0.5)
        assert len(driver.states) > count and node.returncode is None
        emulator.fault(4, "corrupt_crc_probability", 0.0)
        emulator.fault(4, "drop_reply_probability", 0.0)

        # Overload on the shoulder: decoded, torque shut down by the servo; ~/reboot clears it.
        emulator.fault(2, "hardware_error", 1 << ct.OVERLOAD_BIT)
        driver.status(
            "servo 2 (shoulder)", lambda s: "overload" in s.message and s.level == DiagnosticStatus.ERROR
        )
        emulator.fault(2, "hardware_error", 0)
        response = probe.call(Trigger, "/driver_node/reboot", Trigger.Request())
        assert response.success and "[2]" in response.message, response.message
        driver.status("servo 2 (shoulder)", lambda s: s.level == DiagnosticStatus.OK)

        # Lifecycle from a plain rclpy client: deactivate (torque off), check, activate again.
        change = ChangeState.Request(transition=Transition(id=Transition.TRANSITION_DEACTIVATE))
        assert probe.call(ChangeState, "/driver_node/change_state", change).success
        assert (
            probe.call(GetState, "/driver_node/get_state", GetState.Request()).current_state.label
            == "inactive"
        )
        driver.status(
            "servo 1 (base_yaw)",
            lambda s: any(kv.key == "torque_on" and kv.value == "False" for kv in s.values),
        )
        assert not probe.call(SetBool, "/driver_node/torque", SetBool.Request(data=True)).success  # inactive
        change = ChangeState.Request(transition=Transition(id=Transition.TRANSITION_ACTIVATE))
        assert probe.call(ChangeState, "/driver_node/change_state", change).success
        driver.status("bus", lambda s: s.message == "running" or "no command" in s.message)

        # ~/reset (the actor's episode reset with a driver): back to the home pose within 5 s.
        response = probe.call(Trigger, "/driver_node/reset", Trigger.Request(), timeout_s=10.0)
        assert response.success, response.message
        np.testing.assert_allclose(driver.position[[0, 3]], [0.0, 0.6], atol=0.1)  # sim/arm.xml "home"

        # SIGTERM: torque off, port closed, exit 0.
        node.send_signal(signal.SIGTERM)
        assert node.wait(30) == 0, node.output()[-3000:]
    assert emulator.registers(ct.TORQUE_ENABLE) == {1: 0, 2: 0, 3: 0, 4: 0}


def test_bus_watchdog_stops_the_motors_when_the_driver_is_killed(probe: RosProbe, rig) -> None:
    config, emulator = rig
    with NodeProcess("driver_node", config) as node:
        driver = DriverClient(probe, node)
        start = driver.position
        far = start.copy()
        far[0] = start[0] + 2.0  # a long move for the base: 0.4 s at full speed
        driver.command(far, 0.1)
        node.process.kill()  # SIGKILL: no chance to turn the torque off
        node.wait(10)
    time.sleep(0.5)
    first = emulator.registers(ct.PRESENT_POSITION)[1]
    time.sleep(0.3)
    assert emulator.registers(ct.BUS_WATCHDOG)[1] == -1, "the bus watchdog fired (register reads -1)"
    stopped = emulator.registers(ct.PRESENT_POSITION)[1]
    assert abs(stopped - first) < 10, "the base stopped"
    calibration = ct.JointCalibration(ct.MODELS["XM430-W350"])
    assert calibration.position_rad(stopped) < far[0] - 0.3, "stopped well before the goal it was given"


def test_startup_error_names_the_port(tmp_path: Path) -> None:
    config = write_config(tmp_path, port=str(tmp_path / "ttyUSB9"))
    with NodeProcess("driver_node", config) as node:
        assert node.wait(STARTUP_S) == 2
    output = node.output()
    assert f"cannot open serial port {tmp_path / 'ttyUSB9'}" in output
    assert "latency_timer" in output


def test_reality_gap_default_is_used_by_the_shipped_config() -> None:
    config = load_experiment(config_path("arm_dynamixel.yaml"))
    assert setup_from_config(config).gap == REALITY_GAPS["default"]


@pytest.mark.slow  # the whole launcher graph: about 45 s on a shared 2-core machine
def test_deploy_graph_drives_the_emulated_arm_through_the_driver(
    probe: RosProbe, rig, tmp_path: Path
) -> None:
    """`rl-control launch --graph deploy` with the arm's experiment file + a driver section: driver_node
    replaces sim_node, and the actor's commands move the emulated arm (a constant-action policy)."""
    config, _emulator = rig
    policy = tmp_path / "policy.onnx"
    # arm_reach: joint targets rise 0.05 rad per step
    policy.write_bytes(constant_task_policy(make_task("arm_reach"), 0.5))
    states = probe.collect(JointState, messages.JOINT_STATES_TOPIC, messages.STATE_QOS)
    commands = probe.collect(Float64MultiArray, messages.command_topic(CONTROLLER), messages.COMMAND_QOS)
    log = tmp_path / "launch.log"
    command = [sys.executable, "-m", "rl_control.cli", "launch", str(config), "--graph", "deploy"]
    command += ["--policy", str(policy), "--no-progress", "--max-minutes", "2"]
    with log.open("wb") as out:
        launcher = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        assert probe.spin_until(lambda: len(commands) > 20, 2 * STARTUP_S), log.read_text()[-4000:]
        assert probe.spin_until(
            lambda: max((msg.position[0] for _, msg in states), default=-np.inf) > 0.5, 20.0
        ), f"the base did not follow the policy\n{log.read_text()[-4000:]}"
    finally:
        launcher.send_signal(signal.SIGINT)
        launcher.wait(timeout=60)
    output = log.read_text()
    assert "[driver_node]" in output and "[sim_node]" not in output
    names = {tuple(msg.name) for _, msg in states}
    assert names == {tuple(JOINTS)}
