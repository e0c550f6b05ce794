"""The actor's ROS-free parts: joint-name mapping, per-tick logic, transitions, deadline pacing."""

from __future__ import annotations

import math
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from rl_control.actor.core import ActorCore
from rl_control.actor.pacing import DeadlineClock
from rl_control.actor.policy_swap import PolicyRejectedError, check_policy
from rl_control.actor.state_mapping import JointStateMapper, StateMappingError
from rl_control.actor.statistics import RollingStats
from rl_control.envs import RobotState, make_task
from rl_control.safety import CommandSafety
from rl_control.transitions import TransitionBatch


class LinearPolicy:
    """A deterministic stand-in policy: action = clip(W obs + noise)."""

    stochastic = True

    def __init__(self, obs_dim: int, act_dim: int, version: int = 1, scale: float = 0.5) -> None:
        self.obs_dim, self.act_dim, self.version = obs_dim, act_dim, version
        self.weights = np.full((act_dim, obs_dim), scale, dtype=np.float32)
        self.metadata: dict[str, str] = {}
        self.calls: list[np.ndarray | None] = []

    def __call__(self, obs: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray:
        self.calls.append(noise)
        out = self.weights @ obs + (0.0 if noise is None else 0.1 * noise)
        return np.clip(out, -1.0, 1.0).astype(np.float32)


def pendulum_state(theta: float, omega: float = 0.0) -> RobotState:
    return RobotState(position=np.array([theta]), velocity=np.array([omega]), effort=np.zeros(1))


def make_core(
    train: bool = True, batch: int = 10, published: list | None = None, learning: bool = True
) -> ActorCore:
    """A pendulum core; ``learning``: the learner has started (policies act; before, uniform random)."""
    task = make_task("pendulum_swingup")
    safety = CommandSafety(task.command_low, task.command_high, command_interface=task.command_interface)
    sink = published if published is not None else []
    core = ActorCore(task, safety, train=train, transition_batch_size=batch, publish_transitions=sink.append)
    if learning:
        core.learning_started()
    return core


def test_training_explores_uniformly_until_learning_starts_even_with_a_policy() -> None:
    core = make_core(train=True, learning=False)
    core.policy = LinearPolicy(3, 1, scale=10.0)  # would saturate at +1: max torque
    actions = [core.tick(pendulum_state(0.1 * k)).command for k in range(100)]
    commands = np.concatenate([a for a in actions if a is not None])
    assert core.counters.random_actions == 100 and core.counters.policy_actions == 0
    high = float(core.safety.high[0])
    assert commands.min() < -0.5 * high and commands.max() > 0.5 * high  # spread over [-1, 1] actions
    core.learning_started()
    assert core.tick(pendulum_state(0.0)).source == "policy"
    assert make_core(train=False, learning=False).explore_uniformly is False  # deploy: never random


# --------------------------------------------------------------------------- joint-name mapping
def joint_state(
    names: list[str], position: list[float], velocity: list[float], effort: list[float]
) -> SimpleNamespace:
    """A stand-in for sensor_msgs/JointState (the mapper reads attributes only: no ROS needed)."""
    stamp = SimpleNamespace(sec=3, nanosec=500_000_000)
    return SimpleNamespace(
        name=names, position=position, velocity=velocity, effort=effort, header=SimpleNamespace(stamp=stamp)
    )


def test_mapper_reorders_by_name_and_ignores_extra_joints() -> None:
    mapper = JointStateMapper(("hip", "knee"))
    msg = joint_state(["wheel", "knee", "hip"], [9.0, 2.0, 1.0], [0.9, 0.2, 0.1], [90.0, 20.0, 10.0])
    sample = mapper.map(msg, received=7.0)
    np.testing.assert_array_equal(sample.position, [1.0, 2.0])
    np.testing.assert_array_equal(sample.velocity, [0.1, 0.2])
    np.testing.assert_array_equal(sample.effort, [10.0, 20.0])
    assert sample.stamp == pytest.approx(3.5) and sample.received == 7.0
    # a different order on the next message is mapped correctly too (cache keyed by the name list)
    sample = mapper.map(joint_state(["hip", "knee"], [5.0, 6.0], [0.0, 0.0], []), received=8.0)
    np.testing.assert_array_equal(sample.position, [5.0, 6.0])
    assert np.all(np.isnan(sample.effort))  # absent field -> NaN, never silently zero


def test_mapper_reports_missing_joints_and_bad_lengths() -> None:
    mapper = JointStateMapper(("hip", "knee"), topic="/joint_states")
    with pytest.raises(StateMappingError, match=r"joint_states: missing joints \['knee'\]"):
        mapper.map(joint_state(["hip", "wheel"], [1.0, 2.0], [0.0, 0.0], []), received=0.0)
    with pytest.raises(StateMappingError, match="2 names but 1 velocity values"):
        mapper.map(joint_state(["hip", "knee"], [1.0, 2.0], [0.0], []), received=0.0)
    # a joint named twice is ambiguous (which entry is the joint?): refused, never "the second one wins"
    with pytest.raises(StateMappingError, match=r"joint_states: duplicate joint names \['hip'\]"):
        mapper.map(joint_state(["hip", "knee", "hip"], [1.0, 2.0, 3.0], [], []), received=0.0)
    with pytest.raises(StateMappingError, match="no positions"):
        mapper.map(joint_state(["hip", "knee"], [], [], []), received=0.0)


# --------------------------------------------------------------------------- per-tick logic
def test_policy_drives_command_and_noise_only_in_training() -> None:
    core = make_core(train=True)
    policy = LinearPolicy(3, 1, scale=10.0)  # saturates -> max torque
    core.policy = policy
    result = core.tick(pendulum_state(0.0))
    assert result.source == "policy"
    np.testing.assert_allclose(result.command, core.task.command_high)
    assert policy.calls[-1] is not None and policy.calls[-1].shape == (1,)

    deploy = make_core(train=False)
    deploy.policy = policy
    deploy.tick(pendulum_state(0.0))
    assert policy.calls[-1] is None  # deterministic in deploy mode


def test_no_policy_random_in_training_safe_in_deploy() -> None:
    core = make_core(train=True)
    commands = np.array([core.tick(pendulum_state(0.1)).command[0] for _ in range(50)])
    assert np.all(np.abs(commands) <= core.task.command_high[0])
    assert np.std(commands) > 0.1
    assert core.counters.random_actions == 50
    deploy = make_core(train=False)
    result = deploy.tick(pendulum_state(0.1))
    assert result.source == "safe" and result.command[0] == 0.0  # effort interface: zero torque
    assert deploy.counters.no_policy == 1


@pytest.mark.parametrize("bad", ["nan_position", "nan_velocity", "stale", "nan_policy"])
def test_invalid_inputs_give_finite_safe_command(bad: str) -> None:
    core = make_core()
    policy = LinearPolicy(3, 1)
    if bad == "nan_policy":
        policy.weights[:] = np.nan
    core.policy = policy
    state = pendulum_state(np.nan if bad == "nan_position" else 0.3, np.nan if bad == "nan_velocity" else 0.0)
    result = core.tick(state, stale=bad == "stale")
    assert result.source == "safe"
    assert result.command is not None and np.all(np.isfinite(result.command))
    np.testing.assert_array_equal(result.command, [0.0])
    counter = {"stale": core.counters.stale, "nan_policy": core.counters.bad_actions}.get(
        bad, core.counters.invalid_state
    )
    assert counter == 1


def test_command_order_follows_config_joint_names() -> None:
    task = make_task("arm_reach")
    names = tuple(reversed(task.joint_names))
    order = [task.joint_names.index(n) for n in names]
    safety = CommandSafety(task.command_low[order], task.command_high[order], command_interface="position")
    core = ActorCore(task, safety, command_joint_names=names, train=False)
    core.policy = LinearPolicy(task.observation_dim, task.action_dim, scale=0.0)  # zero action: hold
    position = np.array([0.1, 0.2, 0.3, 0.4])
    state = RobotState(position=position, velocity=np.zeros(4), effort=np.zeros(4))
    result = core.tick(state)
    np.testing.assert_allclose(result.command, position[::-1])
    with pytest.raises(ValueError, match="permutation"):
        ActorCore(task, safety, command_joint_names=("a", "b", "c", "d"))


def test_transitions_rewards_truncation_and_batches() -> None:
    published: list[TransitionBatch] = []
    core = make_core(train=True, batch=30, published=published)
    core.policy = LinearPolicy(3, 1)
    steps = core.task.episode_steps
    thetas = np.linspace(math.pi, 0.0, steps + 1)
    done_at = None
    for i, theta in enumerate(thetas):
        result = core.tick(pendulum_state(theta, -0.5))
        if result.episode_done:
            done_at = i
    assert done_at == steps  # the (steps+1)-th state closes the episode's last transition
    rows = sum(len(b) for b in published)
    assert rows == steps and core.episodes.episodes == 1
    assert [len(b) for b in published] == [30] * (steps // 30) + ([steps % 30] if steps % 30 else [])
    last = published[-1]
    assert last.truncated[-1] == 1.0 and last.terminated[-1] == 0.0 and last.truncated[:-1].sum() == 0
    first = published[0]
    np.testing.assert_allclose(first.next_obs[0], first.obs[1])  # the chain links consecutive ticks
    expected = core.task.reward(first.obs[0], first.action[0], first.next_obs[0])
    assert first.reward[0] == pytest.approx(expected, rel=1e-5)
    assert core.episodes.last_length == steps
    assert core.episodes.last_return == pytest.approx(sum(float(b.reward.sum()) for b in published), 1e-4)


def test_invalid_tick_breaks_the_chain_and_deploy_records_nothing() -> None:
    published: list[TransitionBatch] = []
    core = make_core(train=True, batch=2, published=published)
    core.policy = LinearPolicy(3, 1)
    core.tick(pendulum_state(0.1))
    core.tick(pendulum_state(np.nan))  # no transition across an invalid observation
    core.tick(pendulum_state(0.2))
    core.tick(pendulum_state(0.3))
    core.tick(pendulum_state(0.4))
    assert core.counters.transitions == 2
    np.testing.assert_allclose(published[0].obs[0, 1], math.sin(0.2), rtol=1e-6)

    deploy = make_core(train=False, published=published)
    deploy.policy = LinearPolicy(3, 1)
    for theta in (0.1, 0.2, 0.3):
        deploy.tick(pendulum_state(theta))
    deploy.transitions.flush()
    assert len(published) == 1


def test_intervention_is_applied_stored_flagged_and_deadman_blocks() -> None:
    published: list[TransitionBatch] = []
    core = make_core(train=True, batch=1, published=published)
    core.policy = LinearPolicy(3, 1)
    result = core.tick(pendulum_state(0.1), intervention=np.array([-0.5]))
    assert result.source == "intervention"
    np.testing.assert_allclose(result.command, 0.5 * core.task.command_low)
    core.tick(pendulum_state(0.2))
    np.testing.assert_allclose(published[0].action, [[-0.5]])
    assert published[0].intervention.tolist() == [1.0]  # marked as the human's
    core.tick(pendulum_state(0.25))  # the policy's action: not an intervention
    assert published[1].intervention.tolist() == [0.0]
    assert (core.counters.intervention_transitions, core.counters.transitions) == (1, 2)
    result = core.tick(pendulum_state(0.3), enabled=False)
    assert result.source == "safe" and core.counters.disabled == 1


def test_check_policy_rejects_wrong_dims_joints_and_nan() -> None:
    task = make_task("pendulum_swingup")
    check_policy(LinearPolicy(3, 1), task, task.joint_names)
    with pytest.raises(PolicyRejectedError, match=r"obs_dim=4.*needs obs_dim=3"):
        check_policy(LinearPolicy(4, 1), task, task.joint_names)
    wrong_joints = LinearPolicy(3, 1)
    wrong_joints.metadata = {"joint_names": '["elbow"]'}
    with pytest.raises(PolicyRejectedError, match="trained for joints"):
        check_policy(wrong_joints, task, task.joint_names)
    nan_policy = LinearPolicy(3, 1)
    nan_policy.weights[:] = np.nan
    with pytest.raises(PolicyRejectedError, match="finite"):
        check_policy(nan_policy, task, task.joint_names)


# --------------------------------------------------------------------------- pacing
def test_deadline_clock_keeps_absolute_schedule_and_counts_misses() -> None:
    period = 0.005
    clock = DeadlineClock(period)
    clock.start()
    start = time.monotonic()
    deadlines, wakes = [], []
    for i in range(60):
        deadline, now = clock.wait()
        assert now >= deadline
        deadlines.append(deadline)
        wakes.append(now)
        if i == 30:
            time.sleep(0.02)  # a stall of 4 periods: those slots are skipped, not caught up in a burst
    steps = np.round(np.diff(deadlines) / period)
    assert np.all(np.abs(np.diff(deadlines) - steps * period) < 1e-9)  # deadlines stay on the t0 + k*T grid
    assert np.all(steps >= 1)  # one tick per slot at most
    assert steps[31] >= 3 and clock.misses >= 2  # the tick after the stall is late, missed slots skipped
    assert deadlines[0] - start == pytest.approx(period, abs=1e-3)  # anchored at start(), one period later


def test_deadline_clock_wakes_early_on_stop() -> None:
    clock = DeadlineClock(10.0)
    stop = threading.Event()
    threading.Timer(0.05, stop.set).start()
    started = time.monotonic()
    deadline, now = clock.wait(stop)
    assert now < deadline and time.monotonic() - started < 2.0


def test_rolling_stats_window() -> None:
    stats = RollingStats(4)
    assert all(math.isnan(v) for v in stats.percentiles())
    for value in range(10):
        stats.add(float(value))
    np.testing.assert_array_equal(np.sort(stats.values()), [6.0, 7.0, 8.0, 9.0])
    assert stats.total == 10 and stats.percentiles((50.0,))[0] == pytest.approx(7.5)


@pytest.mark.parametrize("stored", ['["hinge"]', "hinge", "", "[]"])
def test_check_policy_accepts_matching_joint_metadata(stored: str) -> None:
    task = make_task("pendulum_swingup")
    policy = LinearPolicy(3, 1)
    policy.metadata = {"joint_names": stored.replace("hinge", task.joint_names[0])}
    check_policy(policy, task, task.joint_names)


def test_policy_raising_value_error_gives_safe_command() -> None:
    class Refusing(LinearPolicy):
        def __call__(self, obs: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray:
            raise ValueError("policy produced a non-finite action")

    core = make_core()
    core.policy = Refusing(3, 1)
    result = core.tick(pendulum_state(0.2))
    assert result.source == "safe" and result.command[0] == 0.0
    assert core.counters.bad_actions == 1 and "non-finite" in core.counters.last_error


def test_imu_and_odometry_conversion() -> None:
    from nav_msgs.msg import Odometry
    from sensor_msgs.msg import Imu

    from rl_control.actor.state_mapping import imu_sample, odom_sample, robot_state

    imu = Imu()
    imu.orientation.x, imu.orientation.y, imu.orientation.z, imu.orientation.w = 0.1, 0.2, 0.3, 0.9
    imu.angular_velocity.x, imu.angular_velocity.y, imu.angular_velocity.z = 1.0, 2.0, 3.0
    imu.linear_acceleration.z = 9.81
    imu.header.stamp.sec = 2
    odom = Odometry()
    odom.twist.twist.linear.x, odom.twist.twist.linear.y = 0.5, -0.25
    odom.header.stamp.nanosec = 20_000_000
    imu_s, odom_s = imu_sample(imu, received=1.0), odom_sample(odom, received=1.5)
    np.testing.assert_array_equal(imu_s.orientation, [0.9, 0.1, 0.2, 0.3])  # ROS (x, y, z, w) -> (w, x, y, z)
    np.testing.assert_array_equal(imu_s.angular_velocity, [1.0, 2.0, 3.0])
    assert imu_s.stamp == 2.0 and odom_s.stamp == pytest.approx(0.02)
    mapper = JointStateMapper(("a",))
    joints = mapper.map(joint_state(["a"], [0.5], [0.0], [0.0]), received=1.0)
    state = robot_state(joints, imu_s, odom_s)
    np.testing.assert_array_equal(state.base_linear_velocity, [0.5, -0.25, 0.0])
    np.testing.assert_array_equal(state.imu_linear_acceleration, [0.0, 0.0, 9.81])
    assert robot_state(joints).imu_orientation is None


def test_rolling_stats_recent_window_wraps() -> None:
    stats = RollingStats(5)
    for value in range(3):
        stats.add(float(value))
    np.testing.assert_array_equal(stats.recent(2), [1.0, 2.0])
    np.testing.assert_array_equal(stats.recent(10), [0.0, 1.0, 2.0])
    for value in range(3, 8):  # wraps around: holds 3..7, newest last
        stats.add(float(value))
    np.testing.assert_array_equal(stats.recent(4), [4.0, 5.0, 6.0, 7.0])
    np.testing.assert_array_equal(stats.recent(2), [6.0, 7.0])
    assert stats.percentiles((50.0,), window=2)[0] == pytest.approx(6.5)
