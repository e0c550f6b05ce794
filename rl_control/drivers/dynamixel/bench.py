"""``rl-control bench driver``: driver_node's state rate and latencies against the emulated 4-servo arm,
side by side with a bare dynamixel_sdk sync-read + sync-write loop measured in the same run.

The emulator (``rl-control emulate dynamixel config/arm_dynamixel.yaml``) runs in its own process, like the
servos. The bare loop uses the same port handler as the driver (reads blocking 1 ms at most, see
:func:`~rl_control.drivers.dynamixel.driver.low_cpu_port_handler`) and runs as fast as the bus answers;
it is measured before and after the driver (the mean is the reference), so a change of machine load during
the run affects both. The driver runs with ``state_rate_hz: 1000`` (more than the bus gives: it cycles as
fast as it can) while a probe sends it a command every 10 ms.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from rl_control.drivers.dynamixel import control_table as ct
from rl_control.drivers.dynamixel.driver import low_cpu_port_handler
from rl_control.paths import config_path

TARGET_RATE_HZ = 200.0
TARGET_RATIO = 0.9
STARTUP_S = 60.0
BENCH_RATE_HZ = 1000.0


def _bare_sdk_loop(port_path: str, ids: list[int], duration_s: float) -> dict[str, float]:
    """Sync read of 126..135 + sync write of the goal positions, back to back, for ``duration_s``."""
    import dynamixel_sdk as sdk

    port = low_cpu_port_handler(port_path)
    if not (port.openPort() and port.setBaudRate(1_000_000)):
        raise RuntimeError(f"cannot open the emulator's port {port_path}")
    handler = sdk.PacketHandler(2.0)
    reader = sdk.GroupSyncRead(port, handler, *ct.STATE_BLOCK)
    writer = sdk.GroupSyncWrite(port, handler, *ct.GOAL_POSITION)
    for servo_id in ids:
        reader.addParam(servo_id)
    cycles, failures, latencies = 0, 0, []
    deadline = time.monotonic() + duration_s
    while time.monotonic() < deadline:
        started = time.monotonic()
        if reader.txRxPacket() != sdk.COMM_SUCCESS:
            failures += 1
            continue
        latencies.append(time.monotonic() - started)
        writer.clearParam()
        for servo_id in ids:
            writer.addParam(servo_id, ct.to_le_bytes(reader.getData(servo_id, *ct.PRESENT_POSITION), 4))
        writer.txPacket()
        cycles += 1
    port.closePort()
    return {
        "rate_hz": cycles / duration_s,
        "failures": failures,
        "read_latency_p99_ms": float(np.percentile(latencies, 99) * 1e3) if latencies else float("nan"),
    }


def _driver_figures(config: Path, duration_s: float) -> dict[str, float]:
    """Run driver_node; measure /joint_states at a probe and read its latency figures from /diagnostics."""
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    from rl_control.ros import messages
    from rl_control.testing.node_process import NodeProcess
    from rl_control.testing.probe import RosProbe

    with NodeProcess("driver_node", config) as node, RosProbe("bench_driver_probe") as probe:
        states = probe.collect(JointState, messages.JOINT_STATES_TOPIC, messages.STATE_QOS)
        diagnostics = probe.collect(DiagnosticArray, messages.DIAGNOSTICS_TOPIC, messages.DIAGNOSTICS_QOS)
        commands = probe.publisher(
            Float64MultiArray, messages.command_topic("forward_position_controller"), messages.COMMAND_QOS
        )
        if not probe.spin_until(lambda: bool(states), STARTUP_S):
            raise RuntimeError(f"driver_node published no joint state:\n{node.output()[-3000:]}")
        hold = [float(v) for v in states[-1][1].position]

        def run_for(seconds: float) -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                commands.publish(Float64MultiArray(data=hold))
                probe.spin_for(0.01)

        run_for(2.0)  # warm-up
        count, started = len(states), time.monotonic()
        run_for(duration_s)
        rate = (len(states) - count) / (time.monotonic() - started)
        run_for(1.2)  # one more diagnostics period covering the measurement
        values = _bus_values(diagnostics)
    return {
        "state_rate_hz": rate,
        "read_latency_p99_ms": float(values.get("read_latency_p99_ms", "nan")),
        "command_latency_p99_ms": float(values.get("command_latency_p99_ms", "nan")),
        "read_failures": float(values.get("read_failures", "nan")),
    }


def _bus_values(diagnostics: list[tuple[float, Any]]) -> dict[str, str]:
    for _, array in reversed(diagnostics):
        for status in array.status:
            if status.name == "driver_node: bus":
                return {kv.key: kv.value for kv in status.values}
    return {}


def bench_driver(json_output: bool, quick: bool = False, duration_s: float | None = None) -> dict[str, Any]:
    """Measure driver_node against a bare SDK loop on the emulated arm; print a table, return the figures."""
    from rich.console import Console
    from rich.table import Table

    from rl_control.testing.emulator import EmulatorProcess
    from rl_control.testing.node_process import isolated_ros_domain

    duration = duration_s or (2.0 if quick else 5.0)
    with tempfile.TemporaryDirectory(prefix="rl_control_bench_driver_") as tmp, isolated_ros_domain():
        tmp_path = Path(tmp)
        document = yaml.safe_load(config_path("arm_dynamixel.yaml").read_text(encoding="utf-8"))
        params = document["driver_node"]["ros__parameters"]
        params.update({"port": str(tmp_path / "ttyDXL"), "state_rate_hz": BENCH_RATE_HZ})
        document["/**"]["ros__parameters"]["run_dir"] = str(tmp_path / "run")
        config = tmp_path / "arm_dynamixel.yaml"
        config.write_text(yaml.safe_dump(document), encoding="utf-8")
        with EmulatorProcess(config, tmp_path, reality_gap=None) as emulator:
            ids = list(params["servo_ids"])
            before = _bare_sdk_loop(str(emulator.link), ids, duration / 2)
            driver = _driver_figures(config, duration)
            after = _bare_sdk_loop(str(emulator.link), ids, duration / 2)
    raw_rate = 0.5 * (before["rate_hz"] + after["rate_hz"])
    result = {
        "state_rate_hz": driver["state_rate_hz"],
        "raw_sdk_rate_hz": raw_rate,
        "rate_ratio": driver["state_rate_hz"] / raw_rate if raw_rate else float("nan"),
        "read_latency_p99_ms": driver["read_latency_p99_ms"],
        "command_latency_p99_ms": driver["command_latency_p99_ms"],
        "raw_sdk_read_latency_p99_ms": max(before["read_latency_p99_ms"], after["read_latency_p99_ms"]),
        "raw_sdk_rate_before_after_hz": [before["rate_hz"], after["rate_hz"]],
        "servos": len(params["servo_ids"]),
        "duration_s": duration,
        "target_rate_hz": TARGET_RATE_HZ,
        "target_ratio": TARGET_RATIO,
    }
    table = Table(title="Dynamixel bus: driver_node vs a bare SDK loop (emulated 4-servo arm, same run)")
    for column in ("figure", "driver_node", "bare SDK loop", "target"):
        table.add_column(column, justify="left" if column == "figure" else "right")
    table.add_row("cycles/s", f"{result['state_rate_hz']:.0f}", f"{raw_rate:.0f}", f"≥ {TARGET_RATE_HZ:.0f}")
    table.add_row("ratio", f"{result['rate_ratio']:.2f}", "1", f"≥ {TARGET_RATIO}")
    table.add_row(
        "read latency p99 [ms]",
        f"{result['read_latency_p99_ms']:.2f}",
        f"{result['raw_sdk_read_latency_p99_ms']:.2f}",
        "",
    )
    table.add_row("command latency p99 [ms]", f"{result['command_latency_p99_ms']:.2f}", "", "")
    Console(file=sys.stderr if json_output else sys.stdout).print(table)
    return result
