"""The actor's ROS-free units: hand-off box, UTD throttle, episode resets, policy swaps, pacing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from rl_control.actor.control_loop import WATCHDOG_PERIODS, ControlLoop, Pacing
from rl_control.actor.core import ActorCore, task_command_safety
from rl_control.actor.episodes import RESET_TIMEOUT_S, RETRY_S, EpisodeResets, ResetPhase
from rl_control.actor.inputs import LatestInputs
from rl_control.actor.policy_swap import PolicySwapper
from rl_control.actor.state_mapping import JointSample
from rl_control.actor.statistics import LoopStatistics
from rl_control.actor.throttle import UtdThrottle
from rl_control.envs import make_task
from rl_control.policy.runtime import Policy


def joints(position: float, *, stamp: float, received: float) -> JointSample:
    one = np.array([position])
    return JointSample(one, np.zeros(1), np.zeros(1), stamp=stamp, received=received)


class ConstantPolicy:
    """A policy whose action is ``value`` for every observation."""

    stochastic = False

    def __init__(self, value: float, obs_dim: int = 3, act_dim: int = 1, version: int = 1) -> None:
        self.value, self.obs_dim, self.act_dim, self.version = value, obs_dim, act_dim, version
        self.metadata: dict[str, str] = {}

    def __call__(self, obs: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray:
        return np.full(self.act_dim, self.value, dtype=np.float32)


# --------------------------------------------------------------------------- hand-off box
def test_latest_inputs_keep_the_newest_sample_and_wake_the_control_thread() -> None:
    inputs = LatestInputs(0.1)
    assert inputs.stale(0.0) and inputs.joints is None  # never received: stale
    inputs.put_joints(joints(0.1, stamp=1.0, received=10.0))
    inputs.put_joints(joints(0.2, stamp=2.0, received=10.01))
    assert inputs.arrived.is_set() and inputs.joint_count == 2
    assert inputs.joints is not None and inputs.joints.position[0] == 0.2
    assert not inputs.stale(10.05) and inputs.stale(10.2)
    assert inputs.stale_events == 1  # fresh -> stale once (the first stale before any state is not an event)
    inputs.put_enable(True, 10.0)
    assert inputs.fresh(inputs.enable, 10.05) and not inputs.fresh(inputs.enable, 10.2)


# --------------------------------------------------------------------------- UTD throttle
def test_throttle_pauses_while_the_learner_lags_and_ignores_steps_from_before() -> None:
    throttle = UtdThrottle(max_lag=10)
    throttle.record_progress(5000)  # a resumed learner: 5000 steps that are not this actor's
    throttle.record_sent(8)
    assert not throttle.should_pause(pending=2)  # lag 10: not above the limit
    assert throttle.should_pause(pending=3) and throttle.pause_events == 1
    assert throttle.should_pause(pending=4) and throttle.pause_events == 1  # one pause, counted once
    throttle.record_progress(5008)
    assert not throttle.should_pause(pending=4) and not throttle.paused
    assert not UtdThrottle(max_lag=0).should_pause(pending=10**6)  # 0: never pauses


def test_throttle_pauses_while_the_learner_is_behind_on_other_actors_steps() -> None:
    """Several robots, one learner: its step count grows with the others' steps, its backlog tells."""
    throttle = UtdThrottle(max_lag=10)
    throttle.record_progress(0)
    throttle.record_sent(5)
    throttle.record_progress(40, learner_backlog=12)  # 40 consumed, mostly other actors' steps
    assert throttle.lag(pending=0) == 12 and throttle.should_pause(pending=0)
    throttle.record_progress(52, learner_backlog=0)
    assert not throttle.should_pause(pending=0)


# --------------------------------------------------------------------------- episode resets
class FakeCall:
    def __init__(self) -> None:
        self.answer: tuple[bool, str] | None = None

    def done(self) -> bool:
        return self.answer is not None

    def outcome(self) -> tuple[bool, str]:
        assert self.answer is not None
        return self.answer


class FakeService:
    name = "/sim_node/reset"

    def __init__(self) -> None:
        self.available = True
        self.calls: list[FakeCall] = []
        self.on_done: list[Callable[[], None]] = []

    def ready(self) -> bool:
        return self.available

    def request(self, on_done: Callable[[], None]) -> FakeCall:
        self.calls.append(FakeCall())
        self.on_done.append(on_done)
        return self.calls[-1]


def test_reset_waits_for_the_answer_and_a_post_reset_state_then_starts_an_episode() -> None:
    inputs, service, episodes, now = LatestInputs(1.0), FakeService(), [], [100.0]
    resets = EpisodeResets(service, inputs, lambda: episodes.append(1), lockstep=False, clock=lambda: now[0])
    inputs.put_joints(joints(0.0, stamp=1.0, received=99.0))
    resets.request(100.0)
    assert resets.phase is ResetPhase.REQUESTED and resets.pending(100.01)
    service.calls[0].answer = (True, "")
    now[0] = 100.02
    service.on_done[0]()
    assert resets.pending(100.02) and resets.phase is ResetPhase.AWAITING_STATE  # old state: still waiting
    inputs.put_joints(joints(3.0, stamp=2.0, received=100.03))
    assert not resets.pending(100.04) and resets.phase is ResetPhase.RUNNING and episodes == [1]


def test_reset_retries_an_unavailable_failing_or_silent_service() -> None:
    inputs, service, episodes = LatestInputs(1.0), FakeService(), []
    resets = EpisodeResets(service, inputs, lambda: episodes.append(1), lockstep=True)
    service.available = False
    resets.request(0.0)
    assert resets.phase is ResetPhase.UNAVAILABLE and resets.pending(RETRY_S / 2) and not service.calls
    service.available = True
    assert resets.pending(RETRY_S + 0.01) and len(service.calls) == 1 and resets.failures == 1
    service.calls[0].answer = (False, "sim busy")
    assert resets.pending(RETRY_S + 0.02) and len(service.calls) == 2 and resets.failures == 2
    assert resets.pending(RETRY_S + 0.02 + RESET_TIMEOUT_S + 0.1) and len(service.calls) == 3  # no answer
    service.calls[2].answer = (True, "")
    assert resets.pending(10.0)  # lockstep: the first state published after the request is the new episode's
    inputs.put_joints(joints(0.0, stamp=5.0, received=10.0))
    assert not resets.pending(10.0) and episodes == [1] and resets.failures == 3


# --------------------------------------------------------------------------- policy swapper
def test_swapper_runs_task_and_pluggable_checks_and_keeps_the_old_policy_on_refusal() -> None:
    task = make_task("pendulum_swingup")
    active: list[Policy] = []
    refused: list[str] = []

    def no_negative_actions(policy: Policy) -> None:
        if policy(np.zeros(policy.obs_dim, np.float32))[0] < 0:
            raise ValueError("negative action on the probe set")

    policies = {b"good": ConstantPolicy(0.5, version=2), b"neg": ConstantPolicy(-0.5, version=3)}
    policies[b"wrong_dims"] = ConstantPolicy(0.5, obs_dim=7, version=4)
    swapper = PolicySwapper(
        task,
        active.append,
        checks=[no_negative_actions],
        load=policies.__getitem__,
        on_rejected=refused.append,
    )
    swapper.start()
    try:
        for version, data in ((2, b"good"), (3, b"neg"), (4, b"wrong_dims"), (5, b"garbage")):
            swapper.offer(version, data)
            deadline = time.monotonic() + 5.0
            while swapper.swaps + swapper.rejected < version - 1 and time.monotonic() < deadline:
                time.sleep(0.005)
        swapper.offer(2, b"good")  # the active policy again (re-delivery): ignored
    finally:
        swapper.stop()
    assert active == [policies[b"good"]] and swapper.version == 2 and swapper.swaps == 1
    assert swapper.rejected == 3
    assert "negative action on the probe set" in refused[0]
    assert "obs_dim=7" in refused[1] and "cannot load ONNX (KeyError" in refused[2]


# --------------------------------------------------------------------------- control loop
def make_loop(pacing: Pacing, rate_hz: float, published: list[float]) -> ControlLoop:
    task = make_task("pendulum_swingup")
    core = ActorCore(task, task_command_safety(task, task.joint_names), train=False)
    core.set_policy(ConstantPolicy(0.5))
    inputs = LatestInputs(0.05)
    return ControlLoop(
        core,
        inputs,
        lambda command: published.append(time.monotonic()),
        pacing=pacing,
        rate_hz=rate_hz,
        throttle=UtdThrottle(0),
        stats=LoopStatistics(1024),
    )


def test_triggered_pacing_acts_on_each_new_state_and_the_watchdog_ticks_without_state() -> None:
    published: list[float] = []
    rate_hz = 20.0  # 50 ms period: the watchdog fires 100 ms after the last state
    loop = make_loop(Pacing.TRIGGERED, rate_hz, published)
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    thread.start()
    try:
        for k in range(5):  # states 10 ms apart: faster than the clock period, one command each
            loop.inputs.put_joints(joints(0.1, stamp=float(k), received=time.monotonic()))
            loop.on_state(time.monotonic())  # what the node's JointState callback does
            deadline = time.monotonic() + 1.0
            while len(published) < k + 1 and time.monotonic() < deadline:
                time.sleep(0.0005)
            time.sleep(0.01)
        assert len(published) == 5 and loop.watchdog_ticks == 0
        time.sleep(WATCHDOG_PERIODS / rate_hz + 3.5 / rate_hz)  # no new state: the clock takes over
    finally:
        stop.set()
        loop.inputs.wake()
        thread.join(timeout=2.0)
    assert loop.fatal_error is None
    assert 2 <= loop.watchdog_ticks <= 5 and len(published) == 5 + loop.watchdog_ticks
    assert loop.core.counters.stale >= 1  # the watchdog's ticks found the state stale: safe commands
    assert loop.stats.latency_us.values().size == 5  # one latency sample per new state


def test_lockstep_pacing_acts_once_per_stamp() -> None:
    published: list[float] = []
    loop = make_loop(Pacing.LOCKSTEP, 50.0, published)
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    thread.start()
    try:
        for stamp in (1.0, 1.0, 2.0, 2.0, 3.0):  # idle re-publications repeat a stamp
            loop.inputs.put_joints(joints(0.1, stamp=stamp, received=time.monotonic()))
            time.sleep(0.02)
    finally:
        stop.set()
        loop.inputs.wake()
        thread.join(timeout=2.0)
    assert len(published) == 3


def test_a_crashing_tick_sends_the_safe_command_and_reports_the_error() -> None:
    published: list[float] = []
    loop = make_loop(Pacing.REALTIME, 200.0, published)
    loop.inputs.put_joints(joints(0.1, stamp=1.0, received=time.monotonic()))

    def broken_tick(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("boom")

    loop.core_tick = broken_tick  # type: ignore[assignment]
    loop.run(threading.Event())
    assert loop.fatal_error == "control loop crashed: RuntimeError: boom" and len(published) == 1


@pytest.mark.parametrize("rate_hz", [0.0, -5.0])
def test_the_loop_refuses_a_non_positive_rate(rate_hz: float) -> None:
    with pytest.raises(ValueError, match="control_rate_hz must be > 0"):
        make_loop(Pacing.REALTIME, rate_hz, [])
