"""The actor's health in one place: the values its diagnostics publish and the summary level/message."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rl_control.actor.control_loop import ControlLoop
from rl_control.actor.policy_swap import PolicySwapper

OK, WARN, ERROR = "ok", "warn", "error"


@dataclass
class ActorHealth:
    """Level (``ok``/``warn``/``error``), a one-line message and the diagnostic key/values."""

    level: str
    message: str
    values: dict[str, Any] = field(default_factory=dict)


def actor_health(
    loop: ControlLoop,
    swapper: PolicySwapper,
    *,
    mode: str,
    state_errors: int,
    last_state_error: str,
    joint_states_topic: str,
    now: float,
) -> ActorHealth:
    """Collect the figures of the control loop, the core, the safety filter and the policy swapper."""
    core, stats, inputs = loop.core, loop.stats, loop.inputs
    counters, safety = core.counters, core.safety.counters
    tick_p50, tick_p99 = stats.tick_error_us.percentiles()
    _, interval_p99 = stats.interval_error_us.percentiles()
    inference_p50, inference_p99 = core.inference_us.percentiles()
    latency_p50, latency_p99 = stats.latency_us.percentiles()
    joints = inputs.joints
    state_age_ms = float("inf") if joints is None else (now - joints.received) * 1e3
    episodes = core.episodes
    values: dict[str, Any] = {
        "mode": mode,
        "pacing": loop.pacing.value,
        "rate_hz": stats.achieved_rate_hz(now),
        "target_rate_hz": 1.0 / loop.period_s,
        "tick_error_p50_us": tick_p50,
        "tick_error_p99_us": tick_p99,
        "tick_interval_error_p99_us": interval_p99,
        "inference_p50_us": inference_p50,
        "inference_p99_us": inference_p99,
        "latency_p50_us": latency_p50,
        "latency_p99_us": latency_p99,
        "deadline_misses": loop.deadline_clock.misses,
        "watchdog_ticks": loop.watchdog_ticks,
        "policy_version": swapper.version,
        "policy_swaps": swapper.swaps,
        "policies_rejected": swapper.rejected,
        "policy_rollbacks": swapper.rollbacks,
        "state_age_ms": state_age_ms,
        "stale_ticks": counters.stale,
        "stale_events": inputs.stale_events,
        "invalid_state_ticks": counters.invalid_state,
        "state_errors": state_errors,
        "bad_actions": counters.bad_actions,
        "safe_commands": safety.safe_commands,
        "clipped_commands": safety.clipped,
        "disabled_ticks": counters.disabled,
        "intervention_ticks": counters.intervention_actions,
        "intervention_transitions": counters.intervention_transitions,
        "random_ticks": counters.random_actions,
        "policy_ticks": counters.policy_actions,
        "episodes": episodes.episodes,
        "last_episode_return": episodes.last_return,
        "last_episode_steps": episodes.last_length,
        "transitions_sent": loop.throttle.sent,
        "transition_msgs": loop.throttle.messages,
        "learner_env_steps": loop.throttle.learner_env_steps,
        "throttled": loop.throttle.paused,
        "throttle_events": loop.throttle.pause_events,
        "reset_failures": 0 if loop.resets is None else loop.resets.failures,
    }
    level, message = OK, "running"
    if joints is None:
        level, message = WARN, f"no {joint_states_topic} received yet"
    elif state_age_ms > inputs.state_timeout_s * 1e3:
        level, message = ERROR, f"stale state ({state_age_ms:.0f} ms old): sending the safe command"
    elif swapper.version < 0:
        message = "no policy yet: " + ("random exploration" if mode == "train" else "safe command")
    elif loop.throttle.paused:
        message = "paused: waiting for the learner (lockstep UTD throttle)"
    for key, text in (
        ("last_state_error", last_state_error),
        ("last_error", counters.last_error),
        ("last_policy_error", swapper.last_error),
    ):
        if text:
            values[key] = text
    if swapper.last_error and level == OK:
        level = WARN
    return ActorHealth(level, message, values)
