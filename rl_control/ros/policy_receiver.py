"""The actor's policy topic subscriber, in a child process of its own.

Receiving a policy message costs the receiving process time with the GIL held: rclpy converts a 50 MB
``UInt8MultiArray`` for ~0.3 s and a raw (serialized) take copies it for ~0.1 s on a loaded 2-core machine,
far over a 20 ms control period. So the actor never subscribes to ``/rl_control/policy`` itself: this
process takes the raw message, refuses it above ``max_policy_bytes`` before deserializing, decodes it,
verifies its HMAC and writes the admitted ONNX bytes (or the refusal reason) as a frame
(:mod:`rl_control.policy.transfer`) to a pipe the actor reads with the GIL released.

:class:`PolicyReceiverProcess` is the actor's side: it starts the child (``python -m
rl_control.ros.policy_receiver``), hands every frame to a callback and restarts a child that died. The
child exits when the actor closes its stdin (or dies).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import BinaryIO

from rl_control.policy.authority import AuthoritySettings, PolicyAuthority, load_policy_key
from rl_control.policy.transfer import ADMITTED, REFUSED, Frame, read_frame, write_frame

RESTART_DELAY_S = 1.0
#: Largest refusal reason accepted on the pipe.
MAX_REASON_BYTES = 65536


class PolicyReceiverProcess:
    """Runs the receiver child and delivers its frames to ``on_frame`` from a reader thread."""

    def __init__(
        self,
        *,
        node_name: str,
        topic: str,
        max_policy_bytes: int,
        key_file: str,
        require_signed: bool,
        on_frame: Callable[[Frame], None],
        log_error: Callable[[str], object],
    ) -> None:
        self._command = [
            sys.executable,
            "-m",
            "rl_control.ros.policy_receiver",
            "--node-name",
            node_name,
            "--topic",
            topic,
            "--max-bytes",
            str(max_policy_bytes),
            "--key-file",
            key_file,
        ] + (["--require-signed"] if require_signed else [])
        self._max_payload = max(max_policy_bytes, MAX_REASON_BYTES)
        self._on_frame = on_frame
        self._log_error = log_error
        self._stop = threading.Event()
        self._process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._thread = threading.Thread(target=self._run, name="actor_policy_receiver", daemon=True)

    def start(self) -> None:
        """Start the child and the reader thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the child (closing its stdin) and the reader thread."""
        self._stop.set()
        process = self._process
        if process is not None and process.poll() is None:
            if process.stdin is not None:
                process.stdin.close()
            try:
                process.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                process.kill()
        if self._thread.is_alive():  # a receiver never started (the node was configured only) has none
            self._thread.join(timeout=3.0)

    def _spawn(self) -> tuple[subprocess.Popen[bytes], BinaryIO]:
        read_fd, write_fd = os.pipe()
        try:
            process = subprocess.Popen(
                [*self._command, "--fd", str(write_fd)], stdin=subprocess.PIPE, pass_fds=(write_fd,)
            )
        finally:
            os.close(write_fd)
        return process, os.fdopen(read_fd, "rb")

    def _run(self) -> None:
        while not self._stop.is_set():
            process, stream = self._spawn()
            self._process = process
            try:
                while (frame := read_frame(stream, self._max_payload)) is not None:
                    self._on_frame(frame)
            except ValueError as exc:
                self._log_error(str(exc))
            finally:
                stream.close()
                try:
                    process.wait(timeout=2.0)  # the pipe closed: the child is exiting
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            if self._stop.is_set():
                break
            self.restarts += 1
            self._log_error(f"policy receiver process exited ({process.returncode}); restarting it")
            self._stop.wait(RESTART_DELAY_S)


def _exit_when_parent_closes_stdin() -> None:
    sys.stdin.buffer.read()
    os._exit(0)


def main(argv: list[str] | None = None) -> int:
    """Child entry point: subscribe (raw) to the policy topic and write frames to ``--fd``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fd", type=int, required=True, help="pipe to write frames to")
    parser.add_argument("--node-name", default="actor_node_policy_receiver")
    parser.add_argument(
        "--topic",
        default="",
        help="fully qualified policy topic (the actor's, after namespace and remapping)",
    )
    parser.add_argument("--max-bytes", type=int, required=True, help="size cap on a policy message")
    parser.add_argument("--key-file", default="", help="shared HMAC key file ('' = none)")
    parser.add_argument("--require-signed", action="store_true")
    args = parser.parse_args(argv)
    os.nice(5)  # DDS reassembly of a large message must not take CPU time from the control thread

    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.serialization import deserialize_message
    from std_msgs.msg import UInt8MultiArray

    from rl_control.ros.messages import POLICY_QOS, POLICY_TOPIC, decode_signed_policy

    topic = args.topic or POLICY_TOPIC

    key = load_policy_key(args.key_file) if args.key_file else None
    authority = PolicyAuthority(
        AuthoritySettings(
            args.max_bytes, 1.0, key=key, require_signed=args.require_signed, probe_observations=0
        ),
        obs_dim=1,
    )
    out = os.fdopen(args.fd, "wb")

    def on_policy(serialized: bytes) -> None:
        try:
            authority.check_size(len(serialized), topic)
            version, data, signature = decode_signed_policy(deserialize_message(serialized, UInt8MultiArray))
            signed = authority.authenticate(data, version, signature, topic)
        except ValueError as exc:
            frame = Frame(REFUSED, 0, str(exc).encode("utf-8"))
        else:
            frame = Frame(ADMITTED, version, data, signed)
        try:
            write_frame(out, frame)
        except BrokenPipeError:
            os._exit(0)  # the actor is gone

    threading.Thread(target=_exit_when_parent_closes_stdin, daemon=True).start()
    rclpy.init()
    node = rclpy.create_node(args.node_name)
    node.create_subscription(UInt8MultiArray, topic, on_policy, POLICY_QOS, raw=True)
    with contextlib.suppress(KeyboardInterrupt, ExternalShutdownException):  # SIGINT / SIGTERM
        rclpy.spin(node)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
