"""Live progress of a running graph, for ``rl-control launch``.

A small rclpy node inside the launcher process listens to the graph's own topics (transitions, learner
progress, policies): it shows episodes, returns, updates/s and the policy version, evaluates each new
policy deterministically in an in-process copy of the task's simulation (never touching the running
graph), and declares success when that evaluation reaches the task's success threshold. At the end it
exports the deterministic ONNX from the learner's run directory and evaluates that file.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.live import Live
from rich.table import Table

from rl_control.config import ExperimentConfig

log = logging.getLogger(__name__)

EVAL_EPISODES = 5
FINAL_EVAL_EPISODES = 10
MIN_EVAL_PERIOD_S = 10.0


def evaluate_onnx(policy, task: str, episodes: int, seed: int = 1000) -> list[float]:
    """Deterministic returns of an :class:`~rl_control.learning.OnnxPolicy` on ``task`` in simulation."""
    from rl_control.envs import RobotTaskEnv
    from rl_control.learning import evaluate_policy

    env = RobotTaskEnv(task)
    try:
        return evaluate_policy(env, lambda obs: policy(obs), episodes=episodes, seed=seed)
    finally:
        env.close()


def _short(value: str | None) -> str:
    """A diagnostics value (a string) with numbers shown to one decimal."""
    try:
        return f"{float(value):.1f}"
    except (TypeError, ValueError):
        return value or "-"


class TrainingMonitor:
    """Progress display and success detection for a launched graph."""

    def __init__(self, config: ExperimentConfig, *, graph: str, live: bool = True) -> None:
        from rl_control.envs import make_task

        self.config = config
        self.graph = graph
        self.task = make_task(config.shared.task)
        self.console = Console(stderr=True)
        self.live_enabled = live and self.console.is_terminal
        self.succeeded = False
        self._lock = threading.Lock()
        self._returns: list[float] = []
        self._episode_return = 0.0
        self._transitions = 0
        self._progress = (0, 0, 0)  # env_steps, updates, policy_version
        self._rate_window: collections.deque[tuple[float, int]] = collections.deque(maxlen=20)
        self._eval: tuple[int, float] | None = None
        self._actor: dict[str, str] = {}  # the actor's latest /diagnostics values (any graph)
        self._pending_policy: tuple[int, bytes] | None = None
        self._policy_event = threading.Event()
        self._stop = threading.Event()
        self._started = time.monotonic()
        self._threads: list[threading.Thread] = []
        self._live: Live | None = None
        self._context = None

    # -- node output -------------------------------------------------------------------------------
    def node_output(self, node: str, line: str) -> None:
        """Print one line of a node's output with its name as prefix."""
        colour = {"sim_node": "cyan", "actor_node": "green", "learner_node": "magenta"}.get(node, "white")
        self.console.print(
            f"[{colour}]\\[{node}][/{colour}] {line}", highlight=False, markup=True, soft_wrap=True
        )

    # -- ROS side ------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start listening (own rclpy context, spun in a thread) and the display."""
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor

        from rl_control.ros import messages

        self._context = rclpy.Context()
        self._context.init()
        node = rclpy.create_node("rl_control_launcher", context=self._context)
        node.create_subscription(
            messages.Float64MultiArray,
            messages.TRANSITIONS_TOPIC,
            self._on_transitions,
            messages.TRANSITIONS_QOS,
        )
        node.create_subscription(
            messages.Int64MultiArray,
            messages.LEARNER_PROGRESS_TOPIC,
            self._on_progress,
            messages.PROGRESS_QOS,
        )
        node.create_subscription(
            messages.UInt8MultiArray, messages.POLICY_TOPIC, self._on_policy, messages.POLICY_QOS
        )
        node.create_subscription(
            DiagnosticArray, messages.DIAGNOSTICS_TOPIC, self._on_diagnostics, messages.DIAGNOSTICS_QOS
        )
        executor = SingleThreadedExecutor(context=self._context)
        executor.add_node(node)

        def spin() -> None:
            while not self._stop.is_set() and self._context.ok():
                executor.spin_once(timeout_sec=0.1)
            executor.shutdown()
            node.destroy_node()

        self._threads = [
            threading.Thread(target=spin, name="monitor-spin", daemon=True),
            threading.Thread(target=self._evaluate_policies, name="monitor-eval", daemon=True),
            threading.Thread(target=self._display, name="monitor-display", daemon=True),
        ]
        if self.live_enabled:
            self._live = Live(self._table(), console=self.console, refresh_per_second=2, transient=False)
            self._live.start()
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop listening and the display."""
        self._stop.set()
        self._policy_event.set()
        for thread in self._threads:
            thread.join(timeout=5.0)
        if self._live is not None:
            self._live.stop()
        if self._context is not None and self._context.ok():
            self._context.shutdown()
        self.console.print(self._table())

    def _on_transitions(self, msg) -> None:
        from rl_control.ros.messages import decode_transitions

        try:
            _, batch = decode_transitions(msg, self.task.observation_dim, self.task.action_dim)
        except ValueError as exc:
            log.warning("%s", exc)
            return
        with self._lock:
            self._transitions += len(batch.reward)
            for reward, terminated, truncated in zip(
                batch.reward, batch.terminated, batch.truncated, strict=True
            ):
                self._episode_return += float(reward)
                if terminated or truncated:
                    self._returns.append(self._episode_return)
                    self._episode_return = 0.0

    def _on_progress(self, msg) -> None:
        from rl_control.ros.messages import decode_progress

        try:
            progress = decode_progress(msg)
        except ValueError as exc:
            log.warning("%s", exc)
            return
        with self._lock:
            self._progress = (progress.env_steps, progress.updates, progress.policy_version)
            self._rate_window.append((time.monotonic(), progress.updates))

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.name.split(":")[0] == "actor_node":
                with self._lock:
                    self._actor = {kv.key: kv.value for kv in status.values} | {"message": status.message}

    def _on_policy(self, msg) -> None:
        from rl_control.ros.messages import decode_policy

        try:
            version, data = decode_policy(msg)
        except ValueError as exc:
            log.warning("%s", exc)
            return
        with self._lock:
            self._pending_policy = (version, data)
        self._policy_event.set()

    # -- evaluation and display ------------------------------------------------------------------------
    def _evaluate_policies(self) -> None:
        from rl_control.learning import OnnxPolicy

        last_eval = 0.0
        while not self._stop.is_set():
            self._policy_event.wait(timeout=1.0)
            if self._stop.is_set():
                return
            remaining = MIN_EVAL_PERIOD_S - (time.monotonic() - last_eval)
            if remaining > 0:  # evaluations are rate-limited: wait, then take the newest policy
                self._stop.wait(remaining)
                continue
            with self._lock:
                pending, self._pending_policy = self._pending_policy, None
                self._policy_event.clear()
            if pending is None:
                continue
            version, data = pending
            last_eval = time.monotonic()
            try:
                returns = evaluate_onnx(OnnxPolicy.from_bytes(data), self.config.shared.task, EVAL_EPISODES)
            except Exception as exc:  # a bad policy must not stop the monitor
                log.warning("could not evaluate policy v%d: %s", version, exc)
                continue
            mean_return = float(np.mean(returns))
            with self._lock:
                self._eval = (version, mean_return)
            if mean_return >= self.task.success_threshold:
                self.succeeded = True
            if not self.live_enabled:
                log.info(
                    "policy v%d: deterministic return %.1f (success at %.1f)",
                    version,
                    mean_return,
                    self.task.success_threshold,
                )

    def _updates_per_s(self) -> float:
        if len(self._rate_window) < 2:
            return 0.0
        (t0, u0), (t1, u1) = self._rate_window[0], self._rate_window[-1]
        return (u1 - u0) / (t1 - t0) if t1 > t0 else 0.0

    def _table(self) -> Table:
        with self._lock:
            env_steps, updates, version = self._progress
            returns = self._returns[-20:]
            evaluation = self._eval
            rows = [
                ("graph", f"{self.graph} / {self.task.name}"),
                ("elapsed", f"{time.monotonic() - self._started:.0f} s"),
                ("episodes", str(len(self._returns))),
                ("transitions (seen / learner)", f"{self._transitions} / {env_steps}"),
                ("last return", f"{returns[-1]:.1f}" if returns else "-"),
                ("mean return (last 20)", f"{np.mean(returns):.1f}" if returns else "-"),
                ("updates", f"{updates}  ({self._updates_per_s():.0f}/s)"),
                ("policy version", str(version)),
                ("deterministic eval", f"v{evaluation[0]}: {evaluation[1]:.1f}" if evaluation else "-"),
                ("success threshold", f"{self.task.success_threshold:.1f}"),
            ]
            if self._actor:
                actor = self._actor
                rows += [
                    ("actor", actor.get("message", "")),
                    (
                        "actor rate / target",
                        f"{_short(actor.get('rate_hz'))} / {_short(actor.get('target_rate_hz'))} Hz",
                    ),
                    (
                        "actor episodes (last return)",
                        f"{actor.get('episodes', '-')} ({_short(actor.get('last_episode_return'))})",
                    ),
                ]
        table = Table(title="rl_control", show_header=False, min_width=50)
        for name, value in rows:
            table.add_row(name, value)
        return table

    def _display(self) -> None:
        last_line = 0.0
        while not self._stop.wait(0.5):
            if self._live is not None:
                self._live.update(self._table())
            elif time.monotonic() - last_line > 15.0:
                last_line = time.monotonic()
                with self._lock:
                    env_steps, updates, version = self._progress
                    mean = f"{np.mean(self._returns[-20:]):.1f}" if self._returns else "-"
                    episodes = len(self._returns)
                log.info(
                    "episodes %d, mean return %s, learner steps %d, updates %d (%.0f/s), policy v%d",
                    episodes,
                    mean,
                    env_steps,
                    updates,
                    self._updates_per_s(),
                    version,
                )

    def finish(self, run_dir: Path, reason: str) -> int:
        """Export the deterministic ONNX from ``run_dir``, evaluate it and write ``launch_summary.json``.

        Returns an exit status: 0 when the policy was exported and evaluated.
        """
        from rl_control.learning import OnnxPolicy, export_run

        with self._lock:
            summary: dict[str, object] = {
                "task": self.task.name,
                "stop_reason": reason,
                "elapsed_s": time.monotonic() - self._started,
                "episodes": len(self._returns),
                "episode_returns": list(self._returns),
                "learner_env_steps": self._progress[0],
                "updates": self._progress[1],
                "policy_version": self._progress[2],
                "success_threshold": self.task.success_threshold,
            }
        status = 0
        try:
            path = export_run(run_dir)
            returns = evaluate_onnx(OnnxPolicy.from_file(path), self.config.shared.task, FINAL_EVAL_EPISODES)
        except Exception as exc:  # reported; the exit status says it failed
            self.console.print(f"[red]export or evaluation of {run_dir} failed: {exc}[/red]")
            summary["error"] = str(exc)
            status = 1
        else:
            mean_return = float(np.mean(returns))
            summary |= {
                "policy_file": str(path),
                "final_eval_returns": returns,
                "final_eval_mean": mean_return,
                "success": mean_return >= self.task.success_threshold,
            }
            verdict = "SUCCESS" if summary["success"] else "below the success threshold"
            self.console.print(
                f"exported {path}: deterministic return {mean_return:.1f} over {len(returns)} episodes "
                f"(threshold {self.task.success_threshold:.1f}): {verdict}"
            )
            self.console.print(
                f"deploy it: rl-control launch CONFIG --graph deploy --sim-mode realtime --policy {path}"
            )
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "launch_summary.json").write_text(json.dumps(summary, indent=2))
        return status
