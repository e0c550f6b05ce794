"""The servo-bus emulator (`rl-control emulate dynamixel`) as a child process for tests, fault runs and
benchmarks."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import dynamixel_sdk as sdk

from rl_control.drivers.dynamixel.emulator import send_fault

STARTUP_S = 60.0


class EmulatorProcess:
    """``rl-control emulate dynamixel`` as a child process, with its fault socket.

    ``reality_gap`` overrides the experiment file's preset (``None``: keep the file's).
    """

    def __init__(self, config: Path, workdir: Path, *, reality_gap: str | None = "none") -> None:
        self.link = workdir / "ttyDXL"
        self.control = workdir / "faults.sock"
        self.log = workdir / "emulator.log"
        command = [sys.executable, "-m", "rl_control.cli", "emulate", "dynamixel", str(config)]
        command += ["--link", str(self.link), "--control", str(self.control)]
        if reality_gap is not None:
            command += ["--reality-gap", reality_gap]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + STARTUP_S
        while not (self.link.exists() and self.control.exists()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"emulator did not start:\n{self.output()}")
            time.sleep(0.1)

    def output(self) -> str:
        """What the emulator printed so far."""
        return self.log.read_text(errors="replace")

    def fault(self, servo_id: int, name: str, value: object) -> None:
        """Switch a fault of one servo at run time (through the emulator's control socket)."""
        send_fault(self.control, servo_id, name, value)

    def open_port(self) -> tuple[sdk.PortHandler, sdk.PacketHandler]:
        """The bus through the plain SDK (once the driver has let go of it)."""
        port = sdk.PortHandler(str(self.link))
        if not (port.openPort() and port.setBaudRate(1_000_000)):
            raise RuntimeError(f"cannot open {self.link}")
        return port, sdk.PacketHandler(2.0)

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGINT, as Ctrl-C would (then SIGKILL if it does not exit within ``timeout_s``)."""
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
