"""Live progress of a running graph, for ``rl-control launch``.

A small rclpy node inside the launcher process listens to the graph's own topics (transitions, learner
progress, policies): it shows episodes, returns, updates/s and the policy version. In a graph whose robot
is the simulator it evaluates each new policy deterministically in an in-process copy of the task's
simulation (never touching the running graph), and declares success when that evaluation reaches the
task's success threshold. At the end it exports the deterministic ONNX from the learner's run directory
and evaluates that file.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.live import Live
from rich.table import Table

from rl_control.config import ExperimentConfig
from rl_control.results import LEARNING_CURVE_FILE, TAG_EVAL_RETURN, TENSORBOARD_DIR, plot_learning_curve
from rl_control.transitions import EpisodeTracker

log = logging.getLogger(__name__)

EVAL_EPISODES = 5
FINAL_EVAL_EPISODES = 10
MIN_EVAL_PERIOD_S = 10.0


def evaluate_onnx(
    policy, task: str, episodes: int, seed: int = 1000, control_rate_hz: float | None = None
) -> list[float]:
    """Deterministic returns of an :class:`~rl_control.learning.OnnxPolicy` on ``task`` in simulation
    (at ``control_rate_hz``, the experiment's, when given)."""
    from rl_control.envs import RobotTaskEnv
    from rl_control.learning import evaluate_policy

    env = RobotTaskEnv(task, control_rate_hz=control_rate_hz)
    try:
        return evaluate_policy(env, lambda obs: policy(obs), episodes=episodes, seed=seed)
    finally:
        env.close()


def _short(value: str | None) -> str:
    """A diagnostics value (a string) with numbers shown to one decimal."""
    if value is None:
        return "-"
    try:
        return f"{float(value):.1f}"
    except ValueError:
        return value or "-"


class TrainingMonitor:
    """Progress display and success detection for a launched graph."""

    def __init__(
        self,
        config: ExperimentConfig,
        *,
        graph: str,
        live: bool = True,
        namespace: str = "/",
        evaluate_policies: bool = True,
    ) -> None:
        """``evaluate_policies``: evaluate each published policy in simulation (off for a graph driving a
        real robot: the simulation is not that robot, and the evaluations take CPU from its learner)."""
        from rl_control.envs import make_task
        from rl_control.graph import get_graph

        self.config = config
        self.graph = graph
        self.namespace = namespace  # the learner's: the monitor listens to its topics
        #: a graph without a learner (deploy): the display shows the actor's episodes and returns
        self.training = any(node.name == "learner_node" for node in get_graph(graph).nodes)
        self.evaluate_policies = evaluate_policies and self.training
        self.task = make_task(config.shared.task, control_rate_hz=config.shared.control_rate_hz)
        self.console = Console(stderr=True)
        self.live_enabled = live and self.console.is_terminal
        self.succeeded = False
        self._lock = threading.Lock()
        self._returns: list[float] = []
        #: over the transitions each actor publishes (one tracker per publisher: several robots interleave)
        self._episodes: dict[str, EpisodeTracker] = {}
        self._transitions = 0
        self._progress = (0, 0, 0)  # env_steps, updates, policy_version
        self._interventions = 0  # transitions the learner stored whose action a human chose
        self._rate_window: collections.deque[tuple[float, int]] = collections.deque(maxlen=20)
        self._eval: tuple[int, float] | None = None
        self._episode_points: list[tuple[int, float]] = []  # (transitions seen at the episode's end, return)
        self._evaluations: list[tuple[int, float]] = []  # (learner env steps, deterministic mean return)
        self._writer: Any = None  # TensorBoard writer of the evaluations (training graphs)
        self._actor: dict[str, str] = {}  # the actor's latest /diagnostics values (any graph)
        self._pending_policy: tuple[int, bytes] | None = None
        self._policy_event = threading.Event()
        self._stop = threading.Event()
        self._started = time.monotonic()
        self._threads: list[threading.Thread] = []
        self._live: Live | None = None
        self._context: Any = None  # rclpy.Context while the monitor runs

    def evaluate(self, policy, episodes: int) -> list[float]:
        """Deterministic returns of ``policy`` on the experiment's task at the experiment's control rate."""
        shared = self.config.shared
        return evaluate_onnx(policy, shared.task, episodes, control_rate_hz=shared.control_rate_hz)

    # -- node output -------------------------------------------------------------------------------

    def node_output(self, node: str, line: str) -> None:
        """Print one line of a node's output with its name as prefix."""
        colour = {
            "sim_node": "cyan",
            "driver_node": "cyan",
            "actor_node": "green",
            "learner_node": "magenta",
        }.get(node.rsplit("/", 1)[-1], "white")
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
        node = rclpy.create_node("rl_control_launcher", namespace=self.namespace, context=self._context)
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
        if self.evaluate_policies:
            node.create_subscription(
                messages.UInt8MultiArray, messages.POLICY_TOPIC, self._on_policy, messages.POLICY_QOS
            )
        node.create_subscription(
            DiagnosticArray, messages.DIAGNOSTICS_TOPIC, self._on_diagnostics, messages.DIAGNOSTICS_QOS
        )
        executor = SingleThreadedExecutor(context=self._context)
        executor.add_node(node)
        if self.training:
            from torch.utils.tensorboard import SummaryWriter

            log_dir = Path(self.config.shared.run_dir) / TENSORBOARD_DIR / "monitor"
            self._writer = SummaryWriter(log_dir=str(log_dir), flush_secs=10)

        def spin() -> None:
            while not self._stop.is_set() and self._context.ok():
                executor.spin_once(timeout_sec=0.1)
            executor.shutdown()
            node.destroy_node()

        self._threads = [
            threading.Thread(target=spin, name="monitor-spin", daemon=True),
            threading.Thread(target=self._display, name="monitor-display", daemon=True),
        ]
        if self.evaluate_policies:
            self._threads.append(
                threading.Thread(target=self._evaluate_policies, name="monitor-eval", daemon=True)
            )
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
        if self._writer is not None:
            self._writer.close()
        self.console.print(self._table())

    def _on_transitions(self, msg, info) -> None:
        from rl_control.ros.messages import transitions_from_message

        try:
            _, batch = transitions_from_message(msg, self.task.observation_dim, self.task.action_dim)
        except ValueError as exc:
            log.warning("%s", exc)
            return
        with self._lock:
            self._transitions += len(batch.reward)
            gid = info.get("publisher_gid")
            publisher = bytes(gid["data"]).hex() if gid else ""
            finished = self._episodes.setdefault(publisher, EpisodeTracker()).add_batch(batch)
            self._returns.extend(finished)
            self._episode_points.extend((self._transitions, episode_return) for episode_return in finished)

    def _on_progress(self, msg) -> None:
        from rl_control.ros.messages import decode_progress

        try:
            progress = decode_progress(msg)
        except ValueError as exc:
            log.warning("%s", exc)
            return
        with self._lock:
            self._progress = (progress.env_steps, progress.updates, progress.policy_version)
            self._interventions = progress.intervention_transitions
            self._rate_window.append((time.monotonic(), progress.updates))

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.name.split(":")[0].rsplit("/", 1)[-1] == "actor_node":
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
                returns = self.evaluate(OnnxPolicy.from_bytes(data), EVAL_EPISODES)
            except Exception as exc:  # a bad policy must not stop the monitor
                log.warning("could not evaluate policy v%d: %s", version, exc)
                continue
            mean_return = float(np.mean(returns))
            with self._lock:
                self._eval = (version, mean_return)
                env_steps = self._progress[0]
                self._evaluations.append((env_steps, mean_return))
            if self._writer is not None:
                self._writer.add_scalar(TAG_EVAL_RETURN, mean_return, env_steps)
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
            if not self.training:
                return self._deploy_table()
            rows = [
                ("graph", f"{self.graph} / {self.task.name}"),
                ("elapsed", f"{time.monotonic() - self._started:.0f} s"),
                ("episodes", str(len(self._returns))),
                ("transitions (seen / learner)", f"{self._transitions} / {env_steps}"),
                ("last return", f"{returns[-1]:.1f}" if returns else "-"),
                ("mean return (last 20)", f"{np.mean(returns):.1f}" if returns else "-"),
                ("updates", f"{updates}  ({self._updates_per_s():.0f}/s)"),
                ("policy version", str(version)),
                ("intervention transitions", str(self._interventions)),
                ("deterministic eval (sim)", self._evaluation_text(evaluation)),
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

    def _evaluation_text(self, evaluation: tuple[int, float] | None) -> str:
        if not self.evaluate_policies:
            return "off (a robot graph: see the actor's episodes)"
        return f"v{evaluation[0]}: {evaluation[1]:.1f}" if evaluation else "-"

    def _deploy_table(self) -> Table:
        """Deploy graphs (no learner): the actor's episodes and returns, from its diagnostics."""
        actor = self._actor
        rows = [
            ("graph", f"{self.graph} / {self.task.name}"),
            ("elapsed", f"{time.monotonic() - self._started:.0f} s"),
            ("actor", actor.get("message", "waiting for the actor's diagnostics")),
            ("episodes", actor.get("episodes", "-")),
            ("last return", _short(actor.get("last_episode_return"))),
            (
                "actor rate / target",
                f"{_short(actor.get('rate_hz'))} / {_short(actor.get('target_rate_hz'))} Hz",
            ),
            ("success threshold", f"{self.task.success_threshold:.1f}"),
        ]
        table = Table(title="rl_control (deploy)", show_header=False, min_width=50)
        for name, value in rows:
            table.add_row(name, value)
        return table

    def _display(self) -> None:
        last_line = 0.0
        while not self._stop.wait(0.5):
            if self._live is not None:
                self._live.update(self._table())
            elif time.monotonic() - last_line > 15.0 and not self.training:
                last_line = time.monotonic()
                with self._lock:
                    actor = dict(self._actor)
                log.info(
                    "actor episodes %s, last return %s, rate %s Hz",
                    actor.get("episodes", "-"),
                    _short(actor.get("last_episode_return")),
                    _short(actor.get("rate_hz")),
                )
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
                "intervention_transitions": self._interventions,
                "success_threshold": self.task.success_threshold,
            }
        status = 0
        try:
            path = export_run(run_dir)
            returns = self.evaluate(OnnxPolicy.from_file(path), FINAL_EVAL_EPISODES)
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
        with self._lock:
            episodes, evaluations = list(self._episode_points), list(self._evaluations)
        curve = plot_learning_curve(
            run_dir / LEARNING_CURVE_FILE,
            episodes,
            evaluations,
            title=f"{self.task.name} ({self.config.learner_node.preset}, ROS graph)",
            success_threshold=self.task.success_threshold,
        )
        summary["learning_curve"] = str(curve)
        (run_dir / "launch_summary.json").write_text(json.dumps(summary, indent=2))
        return status
