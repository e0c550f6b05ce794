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
(sequence 0 again) starts a new stream. The node's own bookkeeping (last sequence number per publisher,
episode statistics, dropped rows) is committed inside the checkpoint manifest: one commit point.

Every received message is appended to a write-ahead log (``<run_dir>/wal``, fsynced) before it counts as
received; on restart the messages the checkpoint does not hold are replayed from it, so a SIGKILL loses
none of them even when the actor restarted too. Rows that are non-finite or beyond ``max_abs_reward`` /
``max_abs_observation`` (or |action| > 1) are dropped and counted; a diverged update is rolled back by the
learner and counted; non-finite weights are never published or checkpointed.

Rows flagged as interventions (a human chose the action) are also kept in the demonstration buffer and
counted (``intervention_transitions`` in diagnostics, progress and the checkpoint).
"""

from __future__ import annotations

import dataclasses
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

from rl_control.policy.authority import load_policy_key, sign_policy
from rl_control.policy.contract import PolicyContract
from rl_control.results import TAG_EPISODE_RETURN, TAG_TRAIN_PREFIX, TENSORBOARD_DIR
from rl_control.ros.messages import (
    LEARNER_PROGRESS_TOPIC,
    POLICY_QOS,
    POLICY_TOPIC,
    PROGRESS_QOS,
    TRANSITIONS_QOS,
    TRANSITIONS_TOPIC,
    LearnerProgress,
    encode_policy,
    encode_progress,
    transitions_from_message,
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
from rl_control.transitions import validate

NODE_NAME = "learner_node"
POLICY_FILE = "policy_latest.onnx"
#: Target duration of one ``learner.train`` call: bounds the time between progress messages, checkpoints
#: and the reaction to a shutdown, while training as many env steps per call as the CPU allows.
TRAIN_CHUNK_S = 0.25
MAX_CHUNK_STEPS = 64
RETURN_WINDOW = 20
#: Diagnostics warn when the achieved update-to-data ratio stays below this share of the configured one
#: while the learner has a backlog (realtime pacing on a CPU too slow for the preset).
UTD_WARN_FRACTION = 0.9
#: ... for this many consecutive diagnostics periods (about 1 s each) with a growing backlog.
UTD_WARN_WINDOWS = 3


@dataclass
class StreamState:
    """Sequence and episode bookkeeping persisted with each checkpoint."""

    #: Per publisher (hex GID of the actor's transitions publisher): last sequence number in the replay.
    streams: dict[str, int] = field(default_factory=dict)
    last_seq: int = -1  # last transitions message added to the replay, of the latest stream (-1: none)
    gaps: int = 0  # messages lost (sequence numbers skipped)
    duplicates: int = 0  # re-delivered messages skipped
    rejected_rows: int = 0  # invalid transitions dropped (non-finite or out-of-bounds values)
    out_of_bounds_rows: int = 0  # of which: finite values beyond the configured magnitude limits
    episodes: int = 0
    #: Per publisher: return of its episode in progress (robots' episodes interleave in the stream).
    episode_returns: dict[str, float] = field(default_factory=dict)
    recent_returns: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return {
            **self.__dict__,
            "streams": dict(self.streams),
            "episode_returns": dict(self.episode_returns),
            "recent_returns": list(self.recent_returns),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StreamState:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


def utd_shortfall(achieved_utd: float, configured_utd: int, backlog_env_steps: int) -> str | None:
    """A warning when the learner trains below its configured UTD while data waits for it, else None."""
    if backlog_env_steps <= MAX_CHUNK_STEPS or not achieved_utd < UTD_WARN_FRACTION * configured_utd:
        return None
    return (
        f"achieved UTD {achieved_utd:.2f} is below the configured {configured_utd} "
        f"({backlog_env_steps} env steps not yet trained on)"
    )


def _trained_randomization(config: Any) -> Any:
    """The simulator's randomization settings: the ``sim_node`` section of this node's parameter file
    (ROS gives a node only its own section), else those of ``config``."""
    from rl_control.config import load_experiment
    from rl_control.config.schema import params_file_from_argv

    params_file = params_file_from_argv()
    if params_file is not None and Path(params_file).is_file():
        return load_experiment(params_file).sim_node.randomization
    return config.sim_node.randomization


class LearnerNode:
    """The learner application behind the ``learner_node`` ROS node."""

    def __init__(self, node: Node, config: Any) -> None:
        import torch

        from rl_control.envs import make_task
        from rl_control.learning import CheckpointError, Learner
        from rl_control.learning.transition_log import TransitionLog

        shared = config.shared
        learner_cfg = config.learner_node
        if learner_cfg.nice:  # before the training threads start: they inherit it
            os.nice(learner_cfg.nice)
        self._torch_threads = learner_cfg.torch_threads
        if self._torch_threads > 0:
            torch.set_num_threads(self._torch_threads)
        self._node = node
        self._log = node.get_logger()
        task = make_task(shared.task)
        self._obs_dim = task.observation_dim
        self._act_dim = task.action_dim
        self._run_dir = Path(shared.run_dir)
        # the HMAC key shared with the actors: every published policy is signed with it
        self._policy_key = load_policy_key(shared.policy_key_file) if shared.policy_key_file else None
        self._run_dir.mkdir(parents=True, exist_ok=True)
        self._publish_every = learner_cfg.publish_every_updates
        self._checkpoint_every_s = learner_cfg.checkpoint_every_s
        self._limits = {
            "obs": learner_cfg.max_abs_observation,
            "next_obs": learner_cfg.max_abs_observation,
            "reward": learner_cfg.max_abs_reward,
        }
        contract = PolicyContract.for_task(
            task,
            controller=shared.controller,
            command_joint_names=shared.joint_names,
            control_rate_hz=shared.control_rate_hz,
            randomization=dataclasses.asdict(_trained_randomization(config)),
        )
        metadata = {"preset": learner_cfg.preset, **contract.to_metadata()}
        try:
            self._learner = Learner.create_or_resume(
                self._run_dir,
                self._obs_dim,
                self._act_dim,
                learner_cfg.agent,
                metadata=metadata,
                seed=shared.seed,
                resume=learner_cfg.resume,
                start_from=Path(learner_cfg.start_from) if learner_cfg.start_from else None,
            )
        except CheckpointError as exc:  # checkpoints exist but none is intact: a setup error, not a crash
            raise ValueError(f"run_dir {self._run_dir}: {exc}") from exc
        resumed = self._learner.env_steps > 0 or self._learner.num_updates > 0
        self._stream = StreamState.from_json(self._learner.stream_state)
        if self._learner.lost_rows:
            self._log.warning(f"{self._learner.lost_rows} stored transitions lost to damaged replay chunks")
        if self._learner.started_from is not None:
            self._log.info(
                f"started from {self._learner.started_from}: {self._learner.num_updates} updates, policy "
                f"version {self._learner.policy_version}, {self._learner.prior_rows} of its transitions as "
                "prior data"
            )
        elif resumed:
            self._log.info(
                f"resumed from {self._run_dir}: {self._learner.env_steps} env steps, "
                f"{self._learner.num_updates} updates, policy version {self._learner.policy_version}, "
                f"last transitions seq {self._stream.last_seq}, "
                f"{self._learner.intervention_transitions} intervention transitions"
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
        self._wal = TransitionLog(self._run_dir, self._obs_dim, self._act_dim)
        self._wal_damaged = 0
        self._wal_generations: deque[list[Path]] = deque()  # segments closed by each checkpoint
        self._wal_replayed = self._replay_wal()
        self.fatal_error: str | None = None
        self._decode_errors = 0
        self._wal_write_errors = 0
        self._last_progress = LearnerProgress()
        self._seconds_per_step = 0.0  # moving average of the training time per env step
        self._metrics: dict[str, float] = {}
        self._last_checkpoint = time.monotonic()
        self._last_checkpoint_path = ""
        self._updates_at_publish = self._learner.num_updates
        self._update_rate = RateMeter()
        self._step_rate = RateMeter()
        self._receive_rate = RateMeter()  # env steps arriving (the data rate the UTD is measured against)
        self._steps_at_publish = 0
        self._last_backlog = 0
        self._shortfall_windows = 0
        self._warn_decode = ThrottledLog(self._log.warning)
        self._warn_gap = ThrottledLog(self._log.warning)
        self._warn_invalid = ThrottledLog(self._log.warning)
        self._warn_wal = ThrottledLog(self._log.error)
        self._warn_utd = ThrottledLog(self._log.warning)
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
            seq, batch = transitions_from_message(msg, self._obs_dim, self._act_dim)
        except ValueError as exc:
            with self._lock:
                self._decode_errors += 1
            self._warn_decode(str(exc))
            return
        with self._lock:
            self._receive(publisher, seq, batch)

    def _receive(self, publisher: str, seq: int, batch: Any) -> None:
        """Check the sequence number, log the message, queue it (lock held)."""
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
        try:
            self._wal.append(publisher, seq, batch)  # fsynced: from here on the message is received
        except OSError as exc:  # e.g. disk full: keep training from memory, report the lost durability
            self._wal_write_errors += 1
            self._warn_wal(f"write-ahead log: cannot record seq {seq} ({exc}); it survives no SIGKILL")
        self._received[publisher] = seq
        self._received_seq = seq
        self._inbox.append((publisher, seq, batch))
        self._receive_rate.tick(len(batch.reward))
        self._wake.notify()

    def _replay_wal(self) -> int:
        """Queue the logged messages the checkpoint does not hold; returns how many."""
        contents = self._wal.read()
        self._wal_damaged = contents.damaged_records
        replayed = 0
        for message in contents.messages:
            if message.seq > self._received.get(message.publisher, -1):
                self._received[message.publisher] = message.seq
                self._received_seq = message.seq
                self._inbox.append((message.publisher, message.seq, message.batch))
                replayed += 1
        if replayed or contents.damaged_records:
            rows = sum(len(batch.reward) for _, _, batch in self._inbox)
            self._log.info(
                f"write-ahead log: replayed {replayed} received messages ({rows} transitions) the checkpoint "
                f"did not hold; {contents.damaged_records} damaged record(s) skipped"
            )
        return replayed

    def _filter_and_track(self, batch: Any, publisher: str) -> Any | None:
        """Validate (non-finite and out-of-bounds rows dropped and counted) and track the episode returns of
        ``publisher`` (each actor's episodes apart); the clean batch or None."""
        try:
            batch, dropped = validate(
                batch, self._obs_dim, self._act_dim, source=TRANSITIONS_TOPIC, limits=self._limits
            )
        except ValueError as exc:  # e.g. flags other than 0/1: no row of it can be trusted
            with self._lock:
                self._stream.rejected_rows += len(batch.reward)
            self._warn_invalid(f"{exc}; message dropped")
            return None
        if dropped.count:
            beyond = dropped.beyond_limit_only
            with self._lock:
                self._stream.rejected_rows += dropped.count
                self._stream.out_of_bounds_rows += beyond
            self._warn_invalid(
                f"dropped {dropped.count} transitions ({beyond} beyond the limits {self._limits}): "
                f"{dropped.describe(TRANSITIONS_TOPIC)}"
            )
            if not len(batch):
                return None
        stream = self._stream
        env_steps = self._learner.env_steps  # x-axis of every scalar: env steps (as rl-control train)
        for row, (reward, terminated, truncated) in enumerate(
            zip(batch.reward, batch.terminated, batch.truncated, strict=True)
        ):
            episode_return = stream.episode_returns.get(publisher, 0.0) + float(reward)
            stream.episode_returns[publisher] = episode_return
            if terminated or truncated:
                stream.episodes += 1
                stream.recent_returns = [*stream.recent_returns, episode_return][-RETURN_WINDOW:]
                if self._writer is not None:
                    self._writer.add_scalar(TAG_EPISODE_RETURN, episode_return, env_steps + row + 1)
                stream.episode_returns[publisher] = 0.0
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
        self._store(batches)
        if self._learner.ready and self._pending_steps > 0:
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

    def _store(self, batches: list[tuple[str, int, Any]]) -> None:
        """Add received batches to the replay (training thread); before learning starts they count as
        consumed, after it they wait to be trained on."""
        stored = 0
        for publisher, seq, batch in batches:
            clean = self._filter_and_track(batch, publisher)
            if clean is not None:
                # the next message stored may come from another robot (or after a gap): no n-step
                # return may run from this message into it
                clean.end_stream()
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
        if self._learner.ready:
            self._pending_steps += stored
        else:
            self._consumed_steps += stored
        self._step_rate.tick(stored)

    def _publish_policy(self) -> None:
        from rl_control.learning.learner import DivergedError

        try:
            onnx_bytes = self._learner.export_onnx(self._run_dir / POLICY_FILE, stochastic=True)
        except DivergedError as exc:  # train() rolls back divergence, so this is a last line of defence
            self._log.error(f"policy not published: {exc}")
            return
        version = self._learner.policy_version
        signature = "" if self._policy_key is None else sign_policy(self._policy_key, onnx_bytes, version)
        self._policy_pub.publish(encode_policy(onnx_bytes, version, signature))
        received = self._receive_rate.total - self._steps_at_publish
        achieved = (
            f"{(self._learner.num_updates - self._updates_at_publish) / received:.2f}" if received else "-"
        )
        self._log.info(
            f"published policy version {version} after {self._learner.num_updates} updates (achieved UTD "
            f"{achieved} since the last policy, configured {self._learner.config.utd_ratio})"
        )
        self._updates_at_publish = self._learner.num_updates
        self._steps_at_publish = self._receive_rate.total

    def _progress(self) -> LearnerProgress:
        return LearnerProgress(
            env_steps=self._consumed_steps,
            updates=self._learner.num_updates,
            policy_version=self._learner.policy_version,
            episodes=self._stream.episodes,
            last_seq=self._consumed_seq,
            backlog=self._pending_steps,
            intervention_transitions=self._learner.intervention_transitions,
        )

    def _publish_progress(self) -> None:
        self._last_progress = self._progress()
        self._progress_pub.publish(encode_progress(self._last_progress))

    def _log_metrics(self) -> None:
        if self._writer is None:
            return
        step = self._learner.env_steps
        for key, value in self._metrics.items():
            if isinstance(value, int | float) and math.isfinite(value):
                self._writer.add_scalar(f"{TAG_TRAIN_PREFIX}{key}", value, step)

    def _open_tensorboard(self) -> Any:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            self._log.info("tensorboard not installed: training metrics are not logged")
            return None
        return SummaryWriter(log_dir=str(self._run_dir / TENSORBOARD_DIR / NODE_NAME), flush_secs=10)

    def _checkpoint(self) -> None:
        """Store everything received, then commit the learner and the stream bookkeeping in one manifest.

        Training thread, or after it stopped. The write-ahead log is rotated in the same locked step
        that empties the inbox, so the closed segments hold only messages this checkpoint stores.
        """
        with self._lock:
            batches = list(self._inbox)
            self._inbox.clear()
            covered = self._wal.rotate()
        self._store(batches)
        with self._lock:
            state = self._stream.to_json()
        path = self._learner.save_checkpoint(stream_state=state)
        # Segments stay until no kept checkpoint predates them: a fallback to an older checkpoint
        # replays them too. An idle period rewrites the same checkpoint: its segments join that one's.
        if str(path) == self._last_checkpoint_path and self._wal_generations:
            self._wal_generations[-1].extend(covered)
        else:
            self._wal_generations.append(covered)
        while len(self._wal_generations) >= self._learner.run.keep_checkpoints:
            self._wal.discard(self._wal_generations.popleft())
        self._last_checkpoint = time.monotonic()
        self._last_checkpoint_path = str(path)

    # --- diagnostics and shutdown -------------------------------------------------------------------
    def _diagnostic_status(self) -> Status:
        with self._lock:
            stream = self._stream
            recent = list(stream.recent_returns)
            updates_per_s, env_steps_per_s = self._update_rate.rate(), self._step_rate.rate()
            received_per_s = self._receive_rate.rate()
            configured_utd = self._learner.config.utd_ratio
            achieved_utd = updates_per_s / received_per_s if received_per_s > 0 else float("nan")
            backlog = self._pending_steps + sum(len(batch.reward) for _, _, batch in self._inbox)
            values: dict[str, Any] = {
                "env_steps": self._learner.env_steps,
                "updates": self._learner.num_updates,
                "policy_version": self._learner.policy_version,
                "updates_per_s": updates_per_s,
                "env_steps_per_s": env_steps_per_s,
                "achieved_utd": achieved_utd,
                "configured_utd": configured_utd,
                "pending_env_steps": self._pending_steps,
                "last_seq": self._received_seq,
                "lost_messages": stream.gaps,
                "duplicate_messages": stream.duplicates,
                "intervention_transitions": self._learner.intervention_transitions,
                "demo_transitions": self._learner.demo_buffer_rows,
                "rejected_transitions": stream.rejected_rows,
                "out_of_bounds_transitions": stream.out_of_bounds_rows,
                "rolled_back_updates": self._learner.rollbacks,
                "transitions_lost_to_damaged_chunks": self._learner.lost_rows,
                "wal_replayed_messages": self._wal_replayed,
                "wal_damaged_records": self._wal_damaged,
                "wal_write_errors": self._wal_write_errors,
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
            if self._learner.rollbacks:
                problems.append(f"{self._learner.rollbacks} diverged training chunks rolled back")
            if self._wal_write_errors:
                problems.append(f"{self._wal_write_errors} received messages not in the write-ahead log")
            if self._learner.lost_rows:
                problems.append(f"{self._learner.lost_rows} stored transitions lost to damaged chunks")
            shortfall = utd_shortfall(achieved_utd, configured_utd, backlog) if self._learner.ready else None
            # Sustained only: a lockstep graph lets the backlog grow to the actor's lag bound, then waits.
            growing = shortfall is not None and backlog > self._last_backlog
            self._shortfall_windows = self._shortfall_windows + 1 if growing else 0
            self._last_backlog = backlog
            if shortfall and self._shortfall_windows >= UTD_WARN_WINDOWS:
                problems.append(shortfall)
                self._warn_utd(shortfall)
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
        self._checkpoint()
        self._wal.close()
        self._log.info(f"checkpoint saved to {self._last_checkpoint_path}")
        if self._writer is not None:
            self._writer.close()


def main(args: list[str] | None = None) -> int:
    """Entry point (``python -m rl_control.ros.learner_node --ros-args --params-file X``)."""
    return run_node(NODE_NAME, LearnerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
