"""Driver fault scenarios: a real ``driver_node`` process against the servo-bus emulator in another process.

The emulator (``rl-control emulate dynamixel``) serves the shipped arm on a pseudo-terminal and takes
run-time faults on a socket (dropped replies, corrupted CRCs, silent servos); the test process reads its
registers with the plain Dynamixel SDK once the driver is gone.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import dynamixel_sdk as sdk
import numpy as np
import yaml
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray

from rl_control.drivers.dynamixel import control_table as ct
from rl_control.faults import ScenarioContext, ScenarioResult, scenario
from rl_control.paths import config_path
from rl_control.ros import messages
from rl_control.testing.emulator import EmulatorProcess
from rl_control.testing.node_process import NodeProcess

STARTUP_S = 60.0
RATE_HZ = 100.0
CONTROLLER = "forward_position_controller"
SERVO_IDS = (1, 2, 3, 4)
#: Probability of a dropped and of a corrupted reply, each, per servo (a sync read of 4 fails 34 % of times).
FAULT_PROBABILITY = 0.05


def read_register(
    port: sdk.PortHandler, handler: sdk.PacketHandler, servo_id: int, entry: tuple[int, int]
) -> int | None:
    """One register of one servo (signed), ``None`` if three attempts failed (like the driver, a reply lost
    to a loaded machine is retried)."""
    for _attempt in range(3):
        data, result, _ = handler.readTxRx(port, servo_id, *entry)
        if result == sdk.COMM_SUCCESS:
            return ct.signed(int.from_bytes(bytes(data), "little"), entry[1])
    return None


def write_config(workdir: Path) -> Path:
    """The shipped arm_dynamixel.yaml pointed at the emulator's port and a private run directory."""
    document = yaml.safe_load(config_path("arm_dynamixel.yaml").read_text(encoding="utf-8"))
    document["driver_node"]["ros__parameters"].update(port=str(workdir / "ttyDXL"), state_rate_hz=RATE_HZ)
    document["/**"]["ros__parameters"]["run_dir"] = str(workdir / "run")
    path = workdir / "arm_dynamixel.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


class Driver:
    """A running driver_node's joint states, diagnostics and command topic, seen from the probe."""

    def __init__(self, context: ScenarioContext, node: NodeProcess) -> None:
        self.probe = context.probe
        self.node = node
        self.states = self.probe.collect(JointState, messages.JOINT_STATES_TOPIC, messages.STATE_QOS)
        self.diagnostics = self.probe.collect(
            DiagnosticArray, messages.DIAGNOSTICS_TOPIC, messages.DIAGNOSTICS_QOS
        )
        self.commands = self.probe.publisher(
            Float64MultiArray, messages.command_topic(CONTROLLER), messages.COMMAND_QOS
        )
        if not self.probe.spin_until(lambda: bool(self.states), STARTUP_S):
            raise RuntimeError(f"driver_node published no joint state:\n{node.output()[-3000:]}")
        self.probe.spin_until(lambda: self.commands.get_subscription_count() > 0, STARTUP_S)
        active = self.status("bus", lambda s: s.message == "running" or "no command" in s.message, STARTUP_S)
        if active is None:  # faults injected before activation would test start-up, not a running bus
            raise RuntimeError(f"driver_node never became active:\n{node.output()[-3000:]}")

    @property
    def position(self) -> np.ndarray:
        return np.array(self.states[-1][1].position)

    def command(self, values: np.ndarray, seconds: float) -> None:
        """Publish ``values`` at 50 Hz for ``seconds``, as an actor would."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.commands.publish(Float64MultiArray(data=[float(v) for v in values]))
            self.probe.spin_for(0.02)

    def status(
        self, suffix: str, accept: Callable[[DiagnosticStatus], bool], timeout_s: float
    ) -> float | None:
        """Receipt time of the first ``driver_node: <suffix>`` status from now on that ``accept`` takes."""
        start = len(self.diagnostics)

        def found() -> float | None:
            for t, array in self.diagnostics[start:]:
                for entry in array.status:
                    if entry.name == f"driver_node: {suffix}" and accept(entry):
                        return t
            return None

        self.probe.spin_until(lambda: found() is not None, timeout_s)
        return found()

    def value(self, suffix: str, key: str) -> int:
        """The newest integer diagnostic ``key`` of status ``driver_node: <suffix>``."""
        for _, array in reversed(self.diagnostics):
            for entry in array.status:
                if entry.name == f"driver_node: {suffix}":
                    return next(int(float(kv.value)) for kv in entry.values if kv.key == key)
        return 0


def state_rate(driver: Driver, seconds: float) -> float:
    """Joint states per second received over ``seconds``."""
    count = len(driver.states)
    driver.probe.spin_for(seconds)
    return (len(driver.states) - count) / seconds


@scenario("driver_dropped_and_corrupt_replies")
def dropped_and_corrupt_replies(context: ScenarioContext) -> ScenarioResult:
    """5 % dropped and 5 % CRC-corrupted replies on every servo for 3 s: the node lives, retries are counted,
    joint states keep flowing at least at half their rate."""
    config = write_config(context.workdir)
    with (
        EmulatorProcess(config, context.workdir) as emulator,
        NodeProcess("driver_node", config, log_path=context.workdir / "driver.log") as node,
    ):
        driver = Driver(context, node)
        nominal = state_rate(driver, 2.0)
        retries_before = driver.value("bus", "retries")
        for servo_id in SERVO_IDS:
            emulator.fault(servo_id, "drop_reply_probability", FAULT_PROBABILITY)
            emulator.fault(servo_id, "corrupt_crc_probability", FAULT_PROBABILITY)
        faulty = state_rate(driver, 3.0)
        for servo_id in SERVO_IDS:
            emulator.fault(servo_id, "drop_reply_probability", 0.0)
            emulator.fault(servo_id, "corrupt_crc_probability", 0.0)
        driver.probe.spin_for(1.5)  # a diagnostics period after the faults
        retries = driver.value("bus", "retries") - retries_before
        failures = driver.value("bus", "read_failures")
        alive = node.returncode is None
    held = alive and retries > 0 and faulty > 0.5 * nominal
    figure = (
        f"{FAULT_PROBABILITY:.0%} dropped + {FAULT_PROBABILITY:.0%} corrupt replies per servo: "
        f"{retries} retries counted, {failures} failed reads; joint states {faulty:.0f}/s under faults vs "
        f"{nominal:.0f}/s before (same run); node {'alive' if alive else 'DIED'}"
    )
    values = {
        "retries": float(retries),
        "faulty_rate": faulty,
        "nominal_rate": nominal,
        "alive": float(alive),
    }
    return ScenarioResult(figure, held=held, values=values)


@scenario("driver_silent_servo")
def silent_servo(context: ScenarioContext) -> ScenarioResult:
    """Servo 3 stops answering: diagnostics ERROR naming it, the bus holds position, then recovers."""
    config = write_config(context.workdir)
    with (
        EmulatorProcess(config, context.workdir) as emulator,
        NodeProcess("driver_node", config, log_path=context.workdir / "driver.log") as node,
    ):
        driver = Driver(context, node)
        driver.probe.spin_for(1.0)  # the arm settles in the pose the driver holds after activation
        held_position = driver.position
        silenced_at = time.monotonic()
        emulator.fault(3, "silent", True)
        named_at = driver.status(
            "servo 3 (elbow)",
            lambda s: s.level == DiagnosticStatus.ERROR and "not answering" in s.message,
            10.0,
        )
        holding_at = driver.status(
            "bus", lambda s: s.level == DiagnosticStatus.ERROR and "holding position" in s.message, 10.0
        )
        emulator.fault(3, "silent", False)
        answered_at = time.monotonic()
        recovered_at = driver.status("servo 3 (elbow)", lambda s: s.level == DiagnosticStatus.OK, 10.0)
        driver.probe.spin_for(0.5)  # fresh joint states after the recovery: where the arm was held
        drift = float(np.max(np.abs(driver.position - held_position)))
        alive = node.returncode is None
    named = named_at is not None and holding_at is not None
    recovered = recovered_at is not None
    error_ms = (named_at - silenced_at) * 1e3 if named_at is not None else float("inf")
    recover_ms = (recovered_at - answered_at) * 1e3 if recovered_at is not None else float("inf")
    held = named and recovered and alive and drift < 0.05
    figure = (
        f"servo 3 ERROR 'not answering' {error_ms:.0f} ms after it fell silent, bus ERROR "
        f"'holding position' (the arm moved {drift:.3f} rad meanwhile); OK again {recover_ms:.0f} ms"
        f" after it answered; node {'alive' if alive else 'DIED'}"
    )
    values = {"error_ms": error_ms, "recover_ms": recover_ms, "drift_rad": drift, "alive": float(alive)}
    return ScenarioResult(figure, held=held, values=values)


#: After the driver's SIGKILL: when to read each servo's Bus Watchdog register. A read is an instruction
#: that re-arms that servo's watchdog, so each servo is read once, at its own delay, to bracket the trip.
WATCHDOG_READS_S = {1: 0.05, 2: 0.15, 3: 0.25, 4: 0.4}


@scenario("driver_sigkill_bus_watchdog")
def sigkill_bus_watchdog(context: ScenarioContext) -> ScenarioResult:
    """SIGKILL of the driver mid-move: the servos' bus watchdog (``bus_watchdog_ms``) stops the motors."""
    config = write_config(context.workdir)
    watchdog_ms = yaml.safe_load(config.read_text())["driver_node"]["ros__parameters"]["bus_watchdog_ms"]
    reads: dict[int, tuple[float, int | None]] = {}
    with EmulatorProcess(config, context.workdir) as emulator:
        with NodeProcess("driver_node", config, log_path=context.workdir / "driver.log") as node:
            driver = Driver(context, node)
            goal = driver.position
            goal[0] += 2.0  # a long move for the base: 0.4 s at full speed
            driver.command(goal, 0.1)
            node.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            node.wait(10.0)
        port, handler = emulator.open_port()
        try:
            for servo_id, delay_s in WATCHDOG_READS_S.items():
                time.sleep(max(0.0, killed_at + delay_s - time.monotonic()))
                value = read_register(port, handler, servo_id, ct.BUS_WATCHDOG)
                reads[servo_id] = (time.monotonic() - killed_at, value)
            time.sleep(0.3)
            first = read_register(port, handler, 1, ct.PRESENT_POSITION)
            time.sleep(0.3)
            stopped = read_register(port, handler, 1, ct.PRESENT_POSITION)
        finally:
            port.closePort()
    calibration = ct.JointCalibration(ct.MODELS["XM430-W350"])
    if first is None or stopped is None:
        raise RuntimeError(
            f"servo 1 did not answer a position read after the trip:\n{emulator.log.read_text()}"
        )
    still = abs(stopped - first) < 10
    short = calibration.position_rad(stopped) < goal[0] - 0.3
    tripped = [at for at, value in reads.values() if value == -1]
    armed = [at for at, value in reads.values() if value is not None and value != -1]
    trip_by_ms = min(tripped) * 1e3 if tripped else float("inf")
    not_yet_ms = max((at for at in armed if at < min(tripped, default=0.0)), default=0.0) * 1e3
    held = still and short and trip_by_ms <= watchdog_ms + 200 and len(tripped) >= 3
    reads_text = ", ".join(
        f"servo {sid} at +{at * 1e3:.0f} ms: {'tripped' if value == -1 else value}"
        for sid, (at, value) in reads.items()
    )
    figure = (
        f"bus watchdog ({watchdog_ms} ms) tripped between {not_yet_ms:.0f} and {trip_by_ms:.0f} ms after "
        f"SIGKILL ({reads_text}); base {'stopped' if still else 'STILL MOVING'}, "
        f"{'short of' if short else 'AT'} the goal it was moving to"
    )
    values = {"trip_by_ms": trip_by_ms, "watchdog_ms": float(watchdog_ms), "tripped": float(len(tripped))}
    return ScenarioResult(figure, held=held, values=values)
