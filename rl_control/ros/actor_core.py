"""The actor's per-tick logic without ROS: observation, policy, safety, episodes and transitions.

:class:`ActorCore` is driven by the actor node's control thread (one :meth:`ActorCore.tick` per control
period, or per new joint state in lockstep). It never raises on bad data: a stale or non-finite state, a
policy producing NaN, or a task refusing the state all lead to the safe command, counted by reason.

Transitions are the chain ``(obs_t, action_t, reward, obs_t+1, terminated, truncated)`` of consecutive valid
ticks; a tick without a valid observation or without a stored action (safe command, deadman released)
breaks the chain so no transition spans it. Episodes end on ``task.terminated`` or after
``task.episode_steps`` transitions (truncated); the node then resets the sim (if configured) and calls
:meth:`ActorCore.begin_episode`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from rl_control.envs.state import RobotState
from rl_control.envs.tasks import Task
from rl_control.ros.actor_loop import RollingStats
from rl_control.safety import CommandSafety

logger = logging.getLogger(__name__)


class Policy(Protocol):
    """What the actor needs from a policy (``rl_control.learning.OnnxPolicy`` satisfies it)."""

    obs_dim: int
    act_dim: int
    version: int
    stochastic: bool

    def __call__(self, obs: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray: ...


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


@dataclass
class ActorCounters:
    """Monotonic counts for diagnostics."""

    ticks: int = 0
    policy_actions: int = 0
    random_actions: int = 0
    intervention_actions: int = 0
    stale: int = 0  # ticks with a stale (or not yet received) state
    invalid_state: int = 0  # ticks whose observation was non-finite or refused by the task
    bad_actions: int = 0  # policy outputs that were non-finite or refused by the task
    disabled: int = 0  # ticks with the deadman released
    no_policy: int = 0  # deploy ticks without a policy
    transitions: int = 0  # transitions recorded
    episodes: int = 0  # episodes completed
    last_error: str = ""  # last reason a state or action was refused


@dataclass
class TickResult:
    """What to publish for one tick."""

    command: np.ndarray | None  # in command (config joint) order; None = publish nothing this tick
    source: str  # "policy" | "random" | "intervention" | "safe"
    episode_done: bool = False


@dataclass
class EpisodeStats:
    """The last finished episode."""

    index: int = 0
    steps: int = 0
    episode_return: float = 0.0
    terminated: bool = False


@dataclass
class TransitionBuffer:
    """Preallocated rows of transitions; handed to ``publish`` when full or flushed."""

    obs_dim: int
    act_dim: int
    capacity: int
    publish: Callable[[TransitionBuffer], None]
    rows: int = 0
    obs: np.ndarray = field(init=False)
    action: np.ndarray = field(init=False)
    reward: np.ndarray = field(init=False)
    next_obs: np.ndarray = field(init=False)
    terminated: np.ndarray = field(init=False)
    truncated: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.obs = np.zeros((self.capacity, self.obs_dim), dtype=np.float32)
        self.action = np.zeros((self.capacity, self.act_dim), dtype=np.float32)
        self.reward = np.zeros(self.capacity, dtype=np.float32)
        self.next_obs = np.zeros((self.capacity, self.obs_dim), dtype=np.float32)
        self.terminated = np.zeros(self.capacity, dtype=np.float32)
        self.truncated = np.zeros(self.capacity, dtype=np.float32)

    def view(self) -> TransitionBuffer:
        """A same-typed object whose arrays are the filled rows only (copies)."""
        n = self.rows
        out = TransitionBuffer(self.obs_dim, self.act_dim, max(n, 1), self.publish)
        out.rows = n
        out.obs, out.action = self.obs[:n].copy(), self.action[:n].copy()
        out.reward, out.next_obs = self.reward[:n].copy(), self.next_obs[:n].copy()
        out.terminated, out.truncated = self.terminated[:n].copy(), self.truncated[:n].copy()
        return out

    def append(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: float,
        next_obs: np.ndarray,
        terminated: bool,
        truncated: bool,
    ) -> None:
        """Store one transition; publishes the batch when it becomes full."""
        i = self.rows
        self.obs[i], self.action[i], self.reward[i] = obs, action, reward
        self.next_obs[i], self.terminated[i], self.truncated[i] = next_obs, terminated, truncated
        self.rows += 1
        if self.rows == self.capacity:
            self.flush()

    def flush(self) -> None:
        """Publish the stored rows (if any) and empty the buffer."""
        if self.rows:
            self.publish(self.view())
            self.rows = 0


class ActorCore:
    """Observation → policy → safe command, plus episode bookkeeping and transition batching."""

    def __init__(
        self,
        task: Task,
        safety: CommandSafety,
        *,
        command_joint_names: Sequence[str] = (),
        train: bool = True,
        transition_batch_size: int = 25,
        publish_transitions: Callable[[TransitionBuffer], None] | None = None,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        names = tuple(command_joint_names) or tuple(task.joint_names)
        if sorted(names) != sorted(task.joint_names):
            raise ValueError(
                f"joint_names {list(names)} must be a permutation of task {task.name!r} joints "
                f"{list(task.joint_names)}"
            )
        if safety.size != len(names):
            raise ValueError(f"safety limits have {safety.size} joints, command has {len(names)}")
        self.task = task
        self.safety = safety
        self.command_joint_names = names
        self.train = train
        # command[i] = task_command[order[i]]; positions in command order likewise
        self._order = np.array([task.joint_names.index(n) for n in names], dtype=np.intp)
        self.rng = np.random.default_rng(seed)
        self._clock = clock
        self.policy: Policy | None = None  # swapped by reference from another thread
        self.transitions = TransitionBuffer(
            task.observation_dim,
            task.action_dim,
            transition_batch_size,
            publish_transitions or (lambda _: None),
        )
        self.counters = ActorCounters()
        self.inference_us = RollingStats(4096)
        self.last_episode = EpisodeStats()
        self._prev_obs: np.ndarray | None = None
        self._prev_action: np.ndarray | None = None
        self._episode_steps = 0
        self._episode_return = 0.0
        self._last_tick_time: float | None = None
        self.begin_episode()

    # ------------------------------------------------------------------ episodes
    @property
    def episode_steps(self) -> int:
        """Transitions recorded in the current episode."""
        return self._episode_steps

    def begin_episode(self) -> None:
        """Start a new episode: task.reset (goals, last action) and a fresh transition chain."""
        self.task.reset(self.rng)
        self._prev_obs = None
        self._prev_action = None
        self._episode_steps = 0
        self._episode_return = 0.0

    def break_chain(self) -> None:
        """Forget the pending (obs, action): the next valid tick starts a new chain (same episode)."""
        self._prev_obs = None
        self._prev_action = None

    def to_command_order(self, values: np.ndarray) -> np.ndarray:
        """Reorder a task-joint-order array into the command (config joint) order."""
        return values[self._order]

    # ------------------------------------------------------------------ per tick
    def safe(self, state: RobotState | None) -> TickResult:
        """The safe command for ``state`` (or without state), breaking the transition chain."""
        self.break_chain()
        position = None if state is None else self.to_command_order(np.asarray(state.position))
        return TickResult(self.safety.safe_command(position), "safe")

    def _refuse(self, counter: str, message: str, state: RobotState | None) -> TickResult:
        setattr(self.counters, counter, getattr(self.counters, counter) + 1)
        if message != self.counters.last_error:
            logger.warning("actor: %s -> safe command", message)
        self.counters.last_error = message
        return self.safe(state)

    def tick(
        self,
        state: RobotState | None,
        *,
        stale: bool = False,
        enabled: bool = True,
        intervention: np.ndarray | None = None,
    ) -> TickResult:
        """One control step. ``intervention`` is a human action in [-1, 1] (task joint order) overriding
        the policy; it is stored as the transition's action."""
        counters = self.counters
        counters.ticks += 1
        now = self._clock()
        dt = 0.0 if self._last_tick_time is None else now - self._last_tick_time
        self._last_tick_time = now
        if state is None or stale:
            counters.stale += 1
            return self.safe(state)
        try:
            obs = self.task.observation(state)
        except (ValueError, IndexError) as exc:
            return self._refuse("invalid_state", f"observation refused: {exc}", state)
        if not np.all(np.isfinite(obs)):
            return self._refuse("invalid_state", "non-finite observation", state)

        if self._prev_obs is not None and self._prev_action is not None:
            done = self._record(obs)
            if done:
                return TickResult(None, "safe", episode_done=True)

        if not enabled:
            counters.disabled += 1
            return self.safe(state)

        if intervention is not None:
            action, source = np.clip(np.asarray(intervention, dtype=np.float64), -1.0, 1.0), "intervention"
        else:
            policy = self.policy
            if policy is not None:
                noise = None
                if policy.stochastic and self.train:
                    noise = self.rng.standard_normal(policy.act_dim).astype(np.float32)
                start = time.perf_counter()
                try:
                    action = policy(obs, noise)
                except ValueError as exc:  # e.g. OnnxPolicy refusing a non-finite action
                    return self._refuse("bad_actions", f"policy v{policy.version} failed: {exc}", state)
                self.inference_us.add((time.perf_counter() - start) * 1e6)
                source = "policy"
            elif self.train:
                action, source = self.rng.uniform(-1.0, 1.0, self.task.action_dim), "random"
            else:
                counters.no_policy += 1
                return self.safe(state)
        try:
            task_command = self.task.command(action, state)
        except ValueError as exc:
            return self._refuse("bad_actions", f"{source} action refused: {exc}", state)
        command, accepted = self.safety.filter(
            self.to_command_order(task_command), dt, self.to_command_order(np.asarray(state.position))
        )
        if not accepted:
            return self._refuse("bad_actions", f"{source} command non-finite", state)
        if source == "policy":
            counters.policy_actions += 1
        elif source == "random":
            counters.random_actions += 1
        else:
            counters.intervention_actions += 1
        self._prev_obs = obs
        self._prev_action = np.asarray(action, dtype=np.float32)
        return TickResult(command, source)

    def _record(self, next_obs: np.ndarray) -> bool:
        """Record the transition into ``next_obs``; returns True when the episode ended."""
        assert self._prev_obs is not None and self._prev_action is not None
        reward = float(self.task.reward(self._prev_obs, self._prev_action, next_obs))
        terminated = bool(self.task.terminated(next_obs))
        self._episode_steps += 1
        self._episode_return += reward
        truncated = not terminated and self._episode_steps >= self.task.episode_steps
        self.counters.transitions += 1
        if self.train:
            self.transitions.append(
                self._prev_obs, self._prev_action, reward, next_obs, terminated, truncated
            )
        self._prev_obs = None
        self._prev_action = None
        if not (terminated or truncated):
            return False
        self.counters.episodes += 1
        self.last_episode = EpisodeStats(
            self.counters.episodes, self._episode_steps, self._episode_return, terminated
        )
        self.transitions.flush()
        return True
