"""Policy swaps off the control thread: build a received policy, check it, then swap it in by reference.

The loader thread builds the onnxruntime session of the newest offered policy (only the newest matters: an
offer replaces a pending one), runs the checks — the task's own (:func:`check_policy`) and any pluggable
candidate check (``check(policy) -> None``, raising to refuse; e.g. the policy authority's probe set and
inference budget, :mod:`rl_control.policy.authority`) — and installs it. A swap never delays a tick; a
rejected policy keeps the old one. The swapper keeps the policy an install replaced: after
``rollback_ticks`` invalid outputs in a row of the active policy (reported by the control thread,
:meth:`PolicySwapper.report_tick`) it goes back to that one (or to none).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import queue
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rl_control.envs.tasks import Task
from rl_control.policy.authority import PolicyRefusedError, PolicyRollback
from rl_control.policy.runtime import OnnxPolicy, Policy

#: A candidate check: raises (any exception; its message is the reason) to refuse the policy.
CandidateCheck = Callable[[Policy], None]
#: Refused policies remembered so that a re-delivery of the same bytes is not loaded and probed again.
REMEMBERED_REFUSALS = 16


class PolicyRejectedError(ValueError):
    """A policy does not fit the task (dimensions, joints) or produced an invalid action."""


def _joint_name_list(text: str) -> list[str]:
    """Joint names stored in ONNX metadata: a JSON list or a comma/space separated string."""
    if text.lstrip().startswith("["):
        try:
            return [str(name) for name in json.loads(text)]
        except (json.JSONDecodeError, TypeError):
            pass
    return [name for name in text.replace(",", " ").split() if name]


def check_policy(policy: Policy, task: Task, joint_names: Sequence[str]) -> None:
    """Check a freshly loaded policy against the task before it may drive the robot.

    Raises :class:`PolicyRejectedError` naming what does not match. A test inference on a zero observation
    must return a finite ``[act_dim]`` action.
    """
    if policy.obs_dim != task.observation_dim or policy.act_dim != task.action_dim:
        raise PolicyRejectedError(
            f"policy v{policy.version} has obs_dim={policy.obs_dim}, act_dim={policy.act_dim}; task "
            f"{task.name!r} needs obs_dim={task.observation_dim}, act_dim={task.action_dim}"
        )
    metadata = getattr(policy, "metadata", {}) or {}
    stored = metadata.get("joint_names", "")
    names = _joint_name_list(str(stored)) if stored else []
    # policies exported without joint names are accepted on their dimensions alone
    if names and names != list(task.joint_names):
        raise PolicyRejectedError(
            f"policy v{policy.version} was trained for joints {names}, task {task.name!r} has "
            f"{list(task.joint_names)}"
        )
    noise = np.zeros(policy.act_dim, dtype=np.float32) if policy.stochastic else None
    try:
        action = np.asarray(policy(np.zeros(policy.obs_dim, dtype=np.float32), noise))
    except Exception as exc:
        raise PolicyRejectedError(f"policy v{policy.version} failed a test inference: {exc}") from exc
    if action.shape != (policy.act_dim,) or not np.all(np.isfinite(action)):
        raise PolicyRejectedError(
            f"policy v{policy.version} returned {action!r} for a zero observation; expected {policy.act_dim} "
            "finite values"
        )


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


@dataclass(frozen=True)
class InstalledPolicy:
    """A policy that passed every check, with its version and the identity of its bytes (None: a file)."""

    policy: Policy
    version: int
    identity: tuple[int, bytes] | None


class PolicySwapper:
    """Receives policy bytes (any thread), builds and checks them on its own thread, installs the good ones.

    ``install(policy)`` makes a policy active (e.g. the core's reference swap; ``None`` after a rollback to
    no policy); ``checks`` run after the task check, in order. Counters (``version``, ``swaps``,
    ``rejected``, ``rollbacks``, ``last_error``) feed diagnostics.
    """

    def __init__(
        self,
        task: Task,
        install: Callable[[Policy | None], None],
        *,
        checks: Sequence[CandidateCheck] = (),
        rollback_ticks: int = 5,
        load: Callable[[bytes], Policy] = OnnxPolicy.from_bytes,
        on_installed: Callable[[Policy, int], None] = lambda _policy, _version: None,
        on_rejected: Callable[[str], None] = lambda _reason: None,
        prepare_thread: Callable[[], None] = lambda: None,
        source: str = "policy",
    ) -> None:
        self.task = task
        self.source = source  # names the policy's origin (e.g. the topic) in rejection reasons
        self._install_fn = install
        self.checks = tuple(checks)
        self._load = load
        self._on_installed = on_installed
        self._on_rejected = on_rejected
        self._prepare_thread = prepare_thread
        self.version = -1
        self.swaps = 0
        self.rejected = 0
        self.last_error = ""
        self._identity: tuple[int, bytes] | None = None  # (version, digest) of the active policy
        # active + previous policy and the active one's invalid outputs in a row; the loader installs, the
        # control thread reports ticks: both under the lock (held for a few assignments only)
        self._rollback: PolicyRollback[InstalledPolicy] = PolicyRollback(rollback_ticks)
        self._lock = threading.Lock()
        self._refused: deque[tuple[int, bytes]] = deque(maxlen=REMEMBERED_REFUSALS)
        # newest pending (version, ONNX bytes); None wakes the loader for shutdown
        self._queue: queue.Queue[tuple[int, bytes] | None] = queue.Queue(maxsize=1)
        self._thread = threading.Thread(target=self._run, name="actor_policy_loader", daemon=True)

    def check(self, policy: Policy) -> None:
        """Every check a candidate must pass (raises :class:`PolicyRejectedError` or the check's error)."""
        check_policy(policy, self.task, self.task.joint_names)
        for candidate_check in self.checks:
            candidate_check(policy)

    @property
    def rollbacks(self) -> int:
        """Rollbacks to the previous policy so far."""
        return self._rollback.rollbacks

    def install(self, policy: Policy, version: int, data: bytes | None = None) -> None:
        """Make a checked ``policy`` active now (the control thread picks it up at its next tick); the
        policy it replaces becomes the rollback target."""
        identity = None if data is None else (version, _digest(data))
        with self._lock:
            self._rollback.install(InstalledPolicy(policy, version, identity))
            self._activate(policy, version, identity)
            self.swaps += 1
        self._on_installed(policy, version)

    def _activate(self, policy: Policy | None, version: int, identity: tuple[int, bytes] | None) -> None:
        self._install_fn(policy)
        self.version = version
        self._identity = identity

    def report_tick(self, valid: bool) -> None:
        """Control thread: whether the active policy's output this tick was valid (finite and accepted).

        After ``rollback_ticks`` invalid outputs in a row the previous policy (or none) is active again and
        the dropped one is remembered as refused (a re-delivery of it is ignored)."""
        if valid and self._rollback.invalid_in_a_row == 0:
            return  # the common case without taking the lock
        with self._lock:
            dropped = self._rollback.tick(valid)
            if dropped is None:
                return
            restored = self._rollback.active
            if restored is None:
                self._activate(None, -1, None)
            else:
                self._activate(restored.policy, restored.version, restored.identity)
        if dropped.identity is not None:
            self._refused.append(dropped.identity)
        now = "no policy" if restored is None else f"policy v{restored.version}"
        self.reject(
            f"{self.source} v{dropped.version} rolled back after {self._rollback.limit} invalid outputs in a "
            f"row; now {now}"
        )

    def reject(self, reason: str) -> None:
        """Count a refused policy (also used for messages refused before loading, e.g. by the receiver)."""
        self.rejected += 1
        self.last_error = reason
        self._on_rejected(reason)

    def offer(self, version: int, data: bytes) -> None:
        """Queue ``data`` for the loader, replacing a pending one (the active policy again, or one refused
        or rolled back before, is ignored)."""
        identity = (version, _digest(data))
        if identity == self._identity or identity in self._refused:
            return  # the same policy again (transient-local re-delivery after a reconnect)
        self._put((version, data))

    def _put(self, item: tuple[int, bytes] | None) -> None:
        with contextlib.suppress(queue.Empty):
            self._queue.get_nowait()
        with contextlib.suppress(queue.Full):  # a concurrent offer won: that one is newer anyway
            self._queue.put_nowait(item)

    def start(self) -> None:
        """Start the loader thread."""
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop the loader thread (a policy being built is finished first)."""
        self._put(None)
        if self._thread.is_alive():
            self._thread.join(timeout=timeout_s)

    def _run(self) -> None:
        # Blocks without polling: a thread waking up to hold the GIL could be preempted while holding it
        # and delay the control thread.
        self._prepare_thread()
        while True:
            item = self._queue.get()
            if item is None:
                break
            self._load_and_install(*item)

    def _load_and_install(self, version: int, data: bytes) -> None:
        source = f"{self.source} v{version}"
        try:
            policy = self._load(data)
        except Exception as exc:
            self._refuse(version, data, f"{source}: cannot load ONNX ({type(exc).__name__}: {exc})")
            return
        try:
            self.check(policy)
        except (PolicyRejectedError, PolicyRefusedError) as exc:
            self._refuse(version, data, f"{source}: {exc}")
            return
        except Exception as exc:
            self._refuse(version, data, f"{source}: refused ({type(exc).__name__}: {exc})")
            return
        self.install(policy, version, data)

    def _refuse(self, version: int, data: bytes, reason: str) -> None:
        self._refused.append((version, _digest(data)))
        self.reject(reason)
