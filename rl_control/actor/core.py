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

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rl_control.actor.statistics import RollingStats
from rl_control.envs.state import RobotState
from rl_control.envs.tasks import Task
from rl_control.policy.runtime import Policy
from rl_control.safety import CommandSafety
from rl_control.transitions import EpisodeTracker, TransitionBatch, TransitionBatcher

logger = logging.getLogger(__name__)


def command_order(task: Task, command_joint_names: Sequence[str]) -> np.ndarray:
    """``order`` with ``command[i] = task_values[order[i]]``; ValueError unless the names permute the task."""
    names = list(command_joint_names)
    if sorted(names) != sorted(task.joint_names):
        raise ValueError(
            f"joint_names {names} must be a permutation of task {task.name!r} joints {list(task.joint_names)}"
        )
    return np.array([task.joint_names.index(name) for name in names], dtype=np.intp)


def task_command_safety(
    task: Task, command_joint_names: Sequence[str], *, safe_mode: str = "hold", max_rate: float = 0.0
) -> CommandSafety:
    """The task's command limits as a :class:`CommandSafety` in the command (config joint) order."""
    order = command_order(task, command_joint_names)
    return CommandSafety(
        task.command_low[order],
        task.command_high[order],
        command_interface=task.command_interface,
        safe_mode=safe_mode,
        max_rate=max_rate,
        joint_names=tuple(command_joint_names),
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
    intervention_transitions: int = 0  # of which: the action was a human's (flagged in the record)
    last_error: str = ""  # last reason a state or action was refused


@dataclass
class TickResult:
    """What to publish for one tick."""

    command: np.ndarray | None  # in command (config joint) order; None = publish nothing this tick
    source: str  # "policy" | "random" | "intervention" | "safe"
    episode_done: bool = False


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
        publish_transitions: Callable[[TransitionBatch], None] | None = None,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        names = tuple(command_joint_names) or tuple(task.joint_names)
        order = command_order(task, names)
        if safety.size != len(names):
            raise ValueError(f"safety limits have {safety.size} joints, command has {len(names)}")
        self.task = task
        self.safety = safety
        self.command_joint_names = names
        self.train = train
        # command[i] = task_command[order[i]]; positions in command order likewise
        self._order = order
        self._task_from_command = np.argsort(order)
        self.rng = np.random.default_rng(seed)
        self._clock = clock
        self.policy: Policy | None = None  # swapped by reference from another thread
        # training: uniform random actions until learning starts (see :meth:`learning_started`)
        self.explore_uniformly = train
        self.transitions = TransitionBatcher(
            task.observation_dim,
            task.action_dim,
            transition_batch_size,
            publish_transitions or (lambda _: None),
        )
        self.counters = ActorCounters()
        self.inference_us = RollingStats(4096)
        self.episodes = EpisodeTracker()
        self.last_observation: np.ndarray | None = None  # the newest valid observation (policy probe set)
        self._prev_obs: np.ndarray | None = None
        self._prev_action: np.ndarray | None = None
        self._prev_by_human = False  # the pending action came from an intervention
        self._last_tick_time: float | None = None
        self.begin_episode()

    # ------------------------------------------------------------------ episodes
    @property
    def episode_steps(self) -> int:
        """Transitions recorded in the current episode."""
        return self.episodes.episode_length

    def begin_episode(self) -> None:
        """Start a new episode: task.reset (goals, last action) and a fresh transition chain."""
        self.task.reset(self.rng)
        self._prev_obs = None
        self._prev_action = None
        self.episodes.restart()

    def break_chain(self) -> None:
        """Forget the pending (obs, action): the next valid tick starts a new chain (same episode)."""
        self._prev_obs = None
        self._prev_action = None

    def learning_started(self) -> None:
        """Act with the policy from now on (training starts with uniform random actions).

        The learner's ``learning_starts`` then means what it means in ``rl-control train`` (Stable-Baselines3
        and CleanRL do the same): uniform random actions until the learner makes its first update, not the
        untrained network's actions, which are narrow and biased by the initial weights.
        """
        self.explore_uniformly = False

    def set_policy(self, policy: Policy | None) -> None:
        """Make ``policy`` active (a reference swap: safe from another thread, used from the next tick)."""
        self.policy = policy

    def intervention_from_command_order(self, values: Sequence[float]) -> np.ndarray:
        """A human action given in command joint order, checked and reordered into the task's order."""
        action = np.asarray(values, dtype=np.float64)
        if action.shape != (self.task.action_dim,) or not np.all(np.isfinite(action)):
            raise ValueError(
                f"expected {self.task.action_dim} finite actions in [-1, 1] (joint order "
                f"{list(self.command_joint_names)}), got {action.tolist()}"
            )
        return action[self._task_from_command]

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
        the policy; it is stored as the transition's action, flagged as an intervention."""
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
        self.last_observation = obs

        if self._prev_obs is not None and self._prev_action is not None:
            done = self._record(obs)
            if done:
                return TickResult(None, "safe", episode_done=True)

        if not enabled:
            counters.disabled += 1
            return self.safe(state)

        try:
            action, source = self._choose_action(obs, intervention)
        except ValueError as exc:  # e.g. OnnxPolicy refusing a non-finite action
            return self._refuse("bad_actions", str(exc), state)
        if action is None:
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
        field_name = f"{source}_actions"  # policy_actions, random_actions or intervention_actions
        setattr(counters, field_name, getattr(counters, field_name) + 1)
        self._prev_obs = obs
        self._prev_action = np.asarray(action, dtype=np.float32)
        self._prev_by_human = source == "intervention"
        return TickResult(command, source)

    def _choose_action(
        self, obs: np.ndarray, intervention: np.ndarray | None
    ) -> tuple[np.ndarray | None, str]:
        """The action for ``obs`` and its source; ``(None, "")`` in deploy mode without a policy.

        Raises ValueError (naming the policy version) when the policy fails."""
        if intervention is not None:
            return np.clip(np.asarray(intervention, dtype=np.float64), -1.0, 1.0), "intervention"
        policy = None if self.explore_uniformly else self.policy
        if policy is None:
            if self.train:
                return self.rng.uniform(-1.0, 1.0, self.task.action_dim), "random"
            return None, ""
        noise = None
        if policy.stochastic and self.train:
            noise = self.rng.standard_normal(policy.act_dim).astype(np.float32)
        start = time.perf_counter()
        try:
            action = policy(obs, noise)
        except ValueError as exc:
            raise ValueError(f"policy v{policy.version} failed: {exc}") from exc
        self.inference_us.add((time.perf_counter() - start) * 1e6)
        return action, "policy"

    def _record(self, next_obs: np.ndarray) -> bool:
        """Record the transition into ``next_obs``; returns True when the episode ended."""
        assert self._prev_obs is not None and self._prev_action is not None
        reward = float(self.task.reward(self._prev_obs, self._prev_action, next_obs))
        terminated = bool(self.task.terminated(next_obs))
        truncated = not terminated and self.episodes.episode_length + 1 >= self.task.episode_steps
        self.counters.transitions += 1
        self.counters.intervention_transitions += self._prev_by_human
        if self.train:
            self.transitions.append(
                self._prev_obs,
                self._prev_action,
                reward,
                next_obs,
                terminated,
                truncated,
                intervention=self._prev_by_human,
            )
        self._prev_obs = None
        self._prev_action = None
        if not self.episodes.add(reward, terminated or truncated):
            return False
        self.transitions.flush()
        return True
