"""learner_node: online off-policy learning from the actor's transitions.

Receives ``/rl_control/transitions`` into the replay (demonstrations from ``demo_files`` seed the demo
buffer), trains in its own thread with ``learner.train(n)`` for the ``n`` env steps received since the
previous call (so the preset's UTD ratio holds; idle without new data), publishes a stochastic ONNX policy
on ``/rl_control/policy`` every ``publish_every_updates`` updates (and at start, so an actor can collect
data before learning starts and keeps working after a learner restart), publishes
``/rl_control/learner_progress`` after every training chunk, checkpoints every ``checkpoint_every_s`` and
on SIGINT/SIGTERM, and resumes from ``run_dir`` on restart.

Transition sequence numbers are checked: a gap (lost messages) is logged and reported in diagnostics, a
re-delivered message (the topic is transient-local, so a restarted learner receives the history it
missed) is skipped when its sequence number is already in the checkpoint, and a restart of the actor
(sequence 0 again) starts a new stream. The node's own bookkeeping (last sequence number, episode
statistics) lives next to the learner's checkpoint in ``<run_dir>/learner_node_state.json``.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rclpy.node import Node
from rclpy.subscription import MessageInfo
from std_msgs.msg import Float64MultiArray, Int64MultiArray, UInt8MultiArray

from rl_control.ros.messages import (
    LEARNER_PROGRESS_TOPIC,
    POLICY_QOS,
    POLICY_TOPIC,
    PROGRESS_QOS,
    TRANSITIONS_QOS,
    TRANSITIONS_TOPIC,
    LearnerProgress,
    decode_transitions,
    encode_policy,
    encode_progress,
)
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

NODE_NAME = "learner_node"
STATE_FILE = "learner_node_state.json"
POLICY_FILE = "policy_latest.onnx"
#: Target duration of one ``learner.train`` call: bounds the time between progress messages, checkpoints
#: and the reaction to a shutdown, while training as many env steps per call as the CPU allows.
TRAIN_CHUNK_S = 0.25
MAX_CHUNK_STEPS = 64
RETURN_WINDOW = 20


@dataclass
class StreamState:
    """Sequence and episode bookkeeping persisted with each checkpoint."""

    #: Per publisher (hex GID of the actor's transitions publisher): last sequence number in the replay.
    streams: dict[str, int] = field(default_factory=dict)
    last_seq: int = -1  # last transitions message added to the replay, of the latest stream (-1: none)
    gaps: int = 0  # messages lost (sequence numbers skipped)
    duplicates: int = 0  # re-delivered messages skipped
    rejected_rows: int = 0  # invalid transitions dropped (non-finite values, actions out of range)
    episodes: int = 0
    episode_return: float = 0.0  # return of the episode in progress
    recent_returns: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return {**self.__dict__, "streams": dict(self.streams), "recent_returns": list(self.recent_returns)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StreamState:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)


class LearnerNode:
    """The learner application behind the ``learner_node`` ROS node."""

    def __init__(self, node: Node, config: Any) -> None:
        import torch

        from rl_control.envs import make_task
        from rl_control.learning import CheckpointError, Learner

        shared = config.shared
        learner_cfg = config.learner_node
        self._torch_threads = learner_cfg.torch_threads
        if self._torch_threads > 0:
            torch.set_num_threads(self._torch_threads)
        self._node = node
        self._log = node.get_logger()
        task = make_task(shared.task)
        self._obs_dim = task.observation_dim
        self._act_dim = task.action_dim
        self._run_dir = Path(shared.run_dir)
        self._run_dir.mkdir(parents=True, exist_ok=True)
        self._publish_every = learner_cfg.publish_every_updates
        self._checkpoint_every_s = learner_cfg.checkpoint_every_s
        joint_names = tuple(shared.joint_names) or tuple(task.joint_names)
        metadata = {"task": task.name, "joint_names": ",".join(joint_names), "preset": learner_cfg.preset}
        try:
            self._learner = Learner.create_or_resume(
                self._run_dir,
                self._obs_dim,
                self._act_dim,
                learner_cfg.agent,
                metadata=metadata,
                seed=shared.seed,
                resume=learner_cfg.resume,
            )
        except CheckpointError as exc:  # checkpoints exist but none is intact: a setup error, not a crash
            raise ValueError(f"run_dir {self._run_dir}: {exc}") from exc
        state_path = self._run_dir / STATE_FILE
        resumed = self._learner.env_steps > 0 or self._learner.num_updates > 0
        if resumed and state_path.is_file():
            self._stream = StreamState.from_json(json.loads(state_path.read_text(encoding="utf-8")))
        else:
            self._stream = StreamState()
        if resumed:
            self._log.info(
                f"resumed from {self._run_dir}: {self._learner.env_steps} env steps, "
                f"{self._learner.num_updates} updates, policy version {self._learner.policy_version}, "
                f"last transitions seq {self._stream.last_seq}"
            )
        if self._learner.num_demonstrations:  # restored from the checkpoint with the rest of the run
            self._log.info(f"{self._learner.num_demonstrations} demonstration transitions restored")
        else:
            for demo in learner_cfg.demo_files:
                count = self._learner.add_demonstrations(Path(demo))
                self._log.info(f"loaded {count} demonstration transitions from {demo}")

        self._lock = threading.Lock()  # guards the inbox and the counters the callback touches
        self._wake = threading.Condition(self._lock)
        self._inbox: deque[Any] = deque()
        self._pending_steps = 0  # stored env steps not yet trained on
        self._consumed_steps = self._learner.env_steps  # trained on, or stored before learning started
        self._received = dict(self._stream.streams)  # callback side, per publisher: for gap detection
        self._received_seq = self._stream.last_seq
        self._consumed_seq = self._stream.last_seq
        self.fatal_error: str | None = None
        self._decode_errors = 0
        self._last_progress = LearnerProgress()
        self._seconds_per_step = 0.0  # moving average of the training time per env step
        self._metrics: dict[str, float] = {}
        self._last_checkpoint = time.monotonic()
        self._last_checkpoint_path = ""
        self._updates_at_publish = self._learner.num_updates
        self._update_rate = RateMeter()
        self._step_rate = RateMeter()
        self._warn_decode = ThrottledLog(self._log.warning)
        self._warn_gap = ThrottledLog(self._log.warning)
        self._warn_invalid = ThrottledLog(self._log.warning)
        self._writer = self._open_tensorboard()

        self._policy_pub = node.create_publisher(UInt8MultiArray, POLICY_TOPIC, POLICY_QOS)
        self._progress_pub = node.create_publisher(Int64MultiArray, LEARNER_PROGRESS_TOPIC, PROGRESS_QOS)
        node.create_subscription(Float64MultiArray, TRANSITIONS_TOPIC, self._on_transitions, TRANSITIONS_QOS)
        self._diagnostics = DiagnosticsPublisher(node, self._diagnostic_status)
        self._publish_policy()
        self._publish_progress()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._train_loop, name="learner_train", daemon=True)
        self._thread.start()

    # --- receiving --------------------------------------------------------------------------------
    def _on_transitions(self, msg: Float64MultiArray, info: MessageInfo) -> None:
        gid = info.get("publisher_gid")
        publisher = bytes(gid["data"]).hex() if gid else ""
        try:
            seq, batch = decode_transitions(msg, self._obs_dim, self._act_dim)
        except ValueError as exc:
            with self._lock:
                self._decode_errors += 1
            self._warn_decode(str(exc))
            return
        with self._lock:
            stream = self._stream
            last = self._received.get(publisher)
            if last is None:
                self._log.info(f"{TRANSITIONS_TOPIC}: new publisher {publisher[:16] or '?'}, first seq {seq}")
                last = -1
            elif seq <= last:
                if publisher:  # re-delivered (transient local) message already stored
                    stream.duplicates += 1
                    return
                last = -1  # no publisher identity: a lower seq means the actor restarted
            expected = last + 1
            if seq > expected:
                stream.gaps += seq - expected
                self._warn_gap(
                    f"{TRANSITIONS_TOPIC}: {seq - expected} messages lost (expected seq {expected}, "
                    f"got {seq}); {stream.gaps} lost in total"
                )
            self._received[publisher] = seq
            self._received_seq = seq
            self._inbox.append((publisher, seq, batch))
            self._wake.notify()

    def _filter_and_track(self, batch: Any) -> Any | None:
        """Drop non-finite rows (counted) and track episode returns; returns the clean batch or None."""
        rows = np.concatenate(
            [batch.obs, batch.action, batch.reward[:, None], batch.next_obs], axis=1, dtype=np.float64
        )
        finite = np.all(np.isfinite(rows), axis=1)
        if not np.all(finite):
            bad = int(np.count_nonzero(~finite))
            self._stream.rejected_rows += bad
            self._warn_invalid(f"{TRANSITIONS_TOPIC}: dropped {bad} transitions with non-finite values")
            if not np.any(finite):
                return None
            batch = type(batch)(
                obs=batch.obs[finite],
                action=batch.action[finite],
                reward=batch.reward[finite],
                next_obs=batch.next_obs[finite],
                terminated=batch.terminated[finite],
                truncated=batch.truncated[finite],
            )
        stream = self._stream
        for reward, terminated, truncated in zip(
            batch.reward, batch.terminated, batch.truncated, strict=True
        ):
            stream.episode_return += float(reward)
            if terminated or truncated:
                stream.episodes += 1
                stream.recent_returns = [*stream.recent_returns, stream.episode_return][-RETURN_WINDOW:]
                if self._writer is not None:
                    self._writer.add_scalar("episode/return", stream.episode_return, stream.episodes)
                stream.episode_return = 0.0
        return batch

    # --- training thread --------------------------------------------------------------------------
    def _train_loop(self) -> None:
        if self._torch_threads > 0:  # OpenMP thread counts are per thread: set it where training runs
            import torch

            torch.set_num_threads(self._torch_threads)
        try:
            while not self._stop.is_set():
                self._train_once()
        except Exception as exc:  # surfaced by run_node: the process exits non-zero
            self._log.error(f"training thread failed: {exc!r}")
            self.fatal_error = f"training thread failed: {exc!r}"
            raise

    def _train_once(self) -> None:
        with self._lock:
            if not self._inbox and self._pending_steps == 0:
                self._wake.wait(timeout=0.1)
            batches = list(self._inbox)
            self._inbox.clear()
        stored = self._store(batches)
        if not self._learner.ready:
            self._consumed_steps += stored
            self._pending_steps = 0
        elif self._pending_steps > 0:
            chunk = int(TRAIN_CHUNK_S / self._seconds_per_step) if self._seconds_per_step > 0 else 1
            steps = min(self._pending_steps, max(1, min(chunk, MAX_CHUNK_STEPS)))
            updates_before = self._learner.num_updates
            started = time.perf_counter()
            self._metrics = self._learner.train(steps)
            per_step = (time.perf_counter() - started) / steps
            self._seconds_per_step = (
                per_step if self._seconds_per_step == 0 else (0.8 * self._seconds_per_step + 0.2 * per_step)
            )
            self._pending_steps -= steps
            self._consumed_steps += steps
            self._update_rate.tick(self._learner.num_updates - updates_before)
            self._log_metrics()
            if self._learner.num_updates - self._updates_at_publish >= self._publish_every:
                self._publish_policy()
        if self._pending_steps == 0:
            self._consumed_seq = self._stream.last_seq
        progress = self._progress()
        if progress != self._last_progress:
            self._publish_progress()
        if time.monotonic() - self._last_checkpoint >= self._checkpoint_every_s:
            self._checkpoint()

    def _store(self, batches: list[tuple[str, int, Any]]) -> int:
        """Add received batches to the replay (training thread); returns the number of transitions."""
        stored = 0
        for publisher, seq, batch in batches:
            clean = self._filter_and_track(batch)
            if clean is not None:
                try:
                    self._learner.add_transitions(clean)
                except ValueError as exc:  # e.g. actions outside [-1, 1]: the learner names the problem
                    with self._lock:
                        self._stream.rejected_rows += len(clean.reward)
                    self._warn_invalid(f"{TRANSITIONS_TOPIC}: rejected message seq {seq}: {exc}")
                else:
                    stored += len(clean.reward)
            with self._lock:
                self._stream.streams[publisher] = seq
                self._stream.last_seq = seq
        self._pending_steps += stored
        self._step_rate.tick(stored)
        return stored

    def _publish_policy(self) -> None:
        onnx_bytes = self._learner.export_onnx(self._run_dir / POLICY_FILE, stochastic=True)
        version = self._learner.policy_version
        self._policy_pub.publish(encode_policy(onnx_bytes, version))
        self._updates_at_publish = self._learner.num_updates
        self._log.info(f"published policy version {version} after {self._learner.num_updates} updates")

    def _progress(self) -> LearnerProgress:
        return LearnerProgress(
            env_steps=self._consumed_steps,
            updates=self._learner.num_updates,
            policy_version=self._learner.policy_version,
            episodes=self._stream.episodes,
            last_seq=self._consumed_seq,
        )

    def _publish_progress(self) -> None:
        self._last_progress = self._progress()
        self._progress_pub.publish(encode_progress(self._last_progress))

    def _log_metrics(self) -> None:
        if self._writer is None:
            return
        step = self._learner.num_updates
        for key, value in self._metrics.items():
            if isinstance(value, int | float) and math.isfinite(value):
                self._writer.add_scalar(f"train/{key}", value, step)

    def _open_tensorboard(self) -> Any:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            self._log.info("tensorboard not installed: training metrics are not logged")
            return None
        return SummaryWriter(log_dir=str(self._run_dir / "tensorboard" / NODE_NAME), flush_secs=10)

    def _checkpoint(self) -> None:
        """Save the learner and the stream bookkeeping (training thread, or after it stopped)."""
        path = self._learner.save_checkpoint()
        with self._lock:
            state = self._stream.to_json()
        _write_json_atomic(self._run_dir / STATE_FILE, state)
        self._last_checkpoint = time.monotonic()
        self._last_checkpoint_path = str(path)

    # --- diagnostics and shutdown -------------------------------------------------------------------
    def _diagnostic_status(self) -> Status:
        with self._lock:
            stream = self._stream
            recent = list(stream.recent_returns)
            values: dict[str, Any] = {
                "env_steps": self._learner.env_steps,
                "updates": self._learner.num_updates,
                "policy_version": self._learner.policy_version,
                "updates_per_s": self._update_rate.rate(),
                "env_steps_per_s": self._step_rate.rate(),
                "pending_env_steps": self._pending_steps,
                "last_seq": self._received_seq,
                "lost_messages": stream.gaps,
                "duplicate_messages": stream.duplicates,
                "rejected_transitions": stream.rejected_rows,
                "decode_errors": self._decode_errors,
                "episodes": stream.episodes,
                "last_return": recent[-1] if recent else float("nan"),
                f"mean_return_last_{RETURN_WINDOW}": float(np.mean(recent)) if recent else float("nan"),
                "checkpoint_age_s": time.monotonic() - self._last_checkpoint,
                "checkpoint": self._last_checkpoint_path,
            }
            problems = []
            if stream.gaps:
                problems.append(f"{stream.gaps} transitions messages lost")
            if stream.rejected_rows:
                problems.append(f"{stream.rejected_rows} invalid transitions dropped")
            if self._decode_errors:
                problems.append(f"{self._decode_errors} malformed transitions messages")
        values.update({f"train.{k}": v for k, v in self._metrics.items()})
        if self.fatal_error:
            return Status(ERROR, self.fatal_error, values)
        if problems:
            return Status(WARN, "; ".join(problems), values)
        return Status(OK, "training" if self._learner.ready else "collecting", values)

    def shutdown(self) -> None:
        """Stop training, store what is still queued, and checkpoint."""
        self._stop.set()
        with self._lock:
            self._wake.notify_all()
        self._thread.join()
        with self._lock:
            batches = list(self._inbox)
            self._inbox.clear()
        self._store(batches)
        self._checkpoint()
        self._log.info(f"checkpoint saved to {self._last_checkpoint_path}")
        if self._writer is not None:
            self._writer.close()


def main(args: list[str] | None = None) -> int:
    """Entry point (``python -m rl_control.ros.learner_node --ros-args --params-file X``)."""
    return run_node(NODE_NAME, LearnerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
