"""Run an rl_control node as a child process (tests, benchmarks): start, signal, collect its log."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

#: Domain ids handed out by :func:`isolated_ros_domain`: 1-101, the range whose Fast DDS ports stay below
#: Linux's ephemeral ports (domain 0, every ROS user's default, is left alone).
DOMAIN_RANGE = range(1, 102)


@contextmanager
def isolated_ros_domain(domains: range = DOMAIN_RANGE) -> Iterator[int]:
    """Claim a ``ROS_DOMAIN_ID`` that no other process using this function holds, and set it.

    Concurrent test and benchmark runs on one machine would otherwise hear each other's nodes (the topic
    names are fixed). The claim is an exclusive ``flock`` on a file per domain id, released on exit (or
    when the process dies); the previous ``ROS_DOMAIN_ID`` is restored. Create rclpy contexts and child
    processes inside the block.
    """
    lock_dir = Path(tempfile.gettempdir()) / "rl_control_ros_domains"
    lock_dir.mkdir(exist_ok=True)
    start = os.getpid() % len(domains)
    for offset in range(len(domains)):
        domain = domains[(start + offset) % len(domains)]
        handle = (lock_dir / f"{domain}.lock").open("w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        previous = os.environ.get("ROS_DOMAIN_ID")
        os.environ["ROS_DOMAIN_ID"] = str(domain)
        try:
            yield domain
        finally:
            if previous is None:
                os.environ.pop("ROS_DOMAIN_ID", None)
            else:
                os.environ["ROS_DOMAIN_ID"] = previous
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
        return
    raise RuntimeError(f"all ROS domain ids {domains.start}-{domains.stop - 1} are in use")


class NodeProcess:
    """``python -m rl_control.ros.<module> --ros-args -r __node:=<name> --params-file <file>`` as a child.

    The child inherits this process's environment (``ROS_DOMAIN_ID``, discovery range). Its combined
    stdout/stderr goes to a log file; :meth:`output` returns it. Always stopped on context exit.
    """

    def __init__(
        self,
        module: str,
        params_file: Path | str,
        *,
        node_name: str | None = None,
        extra_ros_args: tuple[str, ...] = (),
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.module = module
        self.node_name = node_name or module
        self.params_file = Path(params_file)
        self.extra_ros_args = extra_ros_args
        self.env = env
        if log_path is None:
            handle, name = tempfile.mkstemp(prefix=f"{self.node_name}_", suffix=".log")
            os.close(handle)
            log_path = Path(name)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        """The command line that starts the node."""
        return [
            sys.executable,
            "-m",
            f"rl_control.ros.{self.module}",
            "--ros-args",
            "-r",
            f"__node:={self.node_name}",
            "--params-file",
            str(self.params_file),
            *self.extra_ros_args,
        ]

    def start(self) -> NodeProcess:
        """Start the child (its log file is truncated)."""
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env)
        return self

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def output(self) -> str:
        """Everything the child wrote so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def wait_for_output(self, text: str, timeout_s: float) -> bool:
        """Wait until ``text`` appears in the log (False on timeout or if the child exits first)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.output():
                return True
            if self.returncode is not None:
                return text in self.output()
            time.sleep(0.05)
        return False

    def wait(self, timeout_s: float) -> int:
        """Wait for the child to exit; ``subprocess.TimeoutExpired`` if it does not."""
        assert self.process is not None, "process not started"
        return self.process.wait(timeout=timeout_s)

    def send_signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGINT, then SIGKILL if the child does not exit within ``timeout_s``; returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout_s)
        return self.process.returncode

    def __enter__(self) -> NodeProcess:
        return self.start() if self.process is None else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
