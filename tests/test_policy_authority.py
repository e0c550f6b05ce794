"""rl_control.policy.authority without ROS: size cap, HMAC, probe set, inference budget, rollback."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest

from rl_control.policy.authority import (
    AuthoritySettings,
    ObservationRing,
    PolicyAuthority,
    PolicyRefusedError,
    PolicyRollback,
    accepts_policy_updates,
    check_policy_size,
    load_policy_key,
    probe_policy,
    sign_policy,
    verify_policy_signature,
)

KEY = b"0123456789abcdef0123456789abcdef"


class FunctionPolicy:
    """A policy computing ``action = fn(obs)``; counts its calls."""

    def __init__(self, fn, obs_dim: int = 3, act_dim: int = 1, stochastic: bool = True) -> None:
        self.fn = fn
        self.obs_dim, self.act_dim, self.version, self.stochastic = obs_dim, act_dim, 9, stochastic
        self.calls = 0

    def __call__(self, obs: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray:
        self.calls += 1
        if self.stochastic:
            assert noise is not None and not np.any(noise), "the probe runs the deterministic action"
        return np.asarray(self.fn(obs), dtype=np.float32)


class StepClock:
    """A fake perf_counter: every reading advances by ``step`` seconds (each call lasts 2 readings apart)."""

    def __init__(self, step: float) -> None:
        self.step, self.now = step, 0.0

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_size_cap_names_the_source_and_the_key() -> None:
    check_policy_size(2**20, 2**20, "/rl_control/policy")
    with pytest.raises(
        PolicyRefusedError, match=r"/rl_control/policy: message of 50.0 MiB .*max_policy_bytes"
    ):
        check_policy_size(50 * 2**20, 16 * 2**20, "/rl_control/policy")


def test_key_file_checks(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ValueError, match=r"policy_key_file .*missing.key: cannot read"):
        load_policy_key(tmp_path / "missing.key")
    short = tmp_path / "short.key"
    short.write_bytes(b"abc\n")
    with pytest.raises(ValueError, match=r"short.key: key has 3 bytes, needs at least 16"):
        load_policy_key(short)
    with pytest.raises(ValueError, match="not a regular file"):
        load_policy_key(tmp_path)
    key = tmp_path / "policy.key"
    key.write_bytes(KEY + b"\n")
    os.chmod(key, 0o600)
    with caplog.at_level(logging.WARNING):
        assert load_policy_key(key) == KEY
    assert not caplog.records
    os.chmod(key, 0o644)
    with caplog.at_level(logging.WARNING):
        assert load_policy_key(key) == KEY
    assert "accessible to other users" in caplog.text and str(key) in caplog.text


def test_signature_covers_bytes_and_version() -> None:
    data = b"onnx bytes"
    signature = sign_policy(KEY, data, 3)
    assert len(signature) == 64
    verify_policy_signature(KEY, data, 3, signature, "t")
    with pytest.raises(PolicyRefusedError, match="wrong hmac-sha256 signature"):
        verify_policy_signature(KEY, data + b"!", 3, signature, "t")
    with pytest.raises(PolicyRefusedError, match="wrong hmac-sha256 signature"):
        verify_policy_signature(KEY, data, 4, signature, "t")  # a replayed signature under another version
    with pytest.raises(PolicyRefusedError, match="wrong"):
        verify_policy_signature(b"another key of 16 bytes", data, 3, signature, "t")
    with pytest.raises(PolicyRefusedError, match="not signed and signed policies are required"):
        verify_policy_signature(KEY, data, 3, "", "t")


def test_authenticate_modes() -> None:
    data = b"onnx"
    optional = PolicyAuthority(AuthoritySettings(2**20, 0.005, key=KEY), 3)
    assert optional.authenticate(data, 1, "", "t") is False  # unsigned allowed when not required
    assert optional.authenticate(data, 1, sign_policy(KEY, data, 1), "t") is True
    with pytest.raises(PolicyRefusedError, match="wrong"):
        optional.authenticate(data, 1, "0" * 64, "t")  # a wrong signature is refused even then
    required = PolicyAuthority(AuthoritySettings(2**20, 0.005, key=KEY, require_signed=True), 3)
    with pytest.raises(PolicyRefusedError, match="not signed"):
        required.authenticate(data, 1, "", "t")
    keyless = PolicyAuthority(AuthoritySettings(2**20, 0.005), 3)
    assert keyless.authenticate(data, 1, "ab" * 32, "t") is False
    with pytest.raises(ValueError, match="needs a policy_key_file"):
        AuthoritySettings(2**20, 0.005, require_signed=True)


def test_observation_ring_probe_set_is_zero_then_oldest_to_newest() -> None:
    ring = ObservationRing(3, 2)
    np.testing.assert_array_equal(ring.probe_set(), [[0, 0]])
    for value in (1, 2):
        ring.add(np.full(2, value))
    np.testing.assert_array_equal(ring.probe_set(), [[0, 0], [1, 1], [2, 2]])
    for value in (3, 4, 5):
        ring.add(np.full(2, value))
    assert len(ring) == 3
    np.testing.assert_array_equal(ring.probe_set(), [[0, 0], [3, 3], [4, 4], [5, 5]])
    assert ObservationRing(0, 2).probe_set().shape == (1, 2)


def test_probe_refuses_nan_for_non_zero_observations() -> None:
    """The fault: a policy finite on the zero observation, NaN on every real one."""
    policy = FunctionPolicy(lambda obs: [float("nan") if np.any(obs) else 0.0])
    ring = ObservationRing(8, 3)
    np.testing.assert_array_equal(policy(np.zeros(3, np.float32), np.zeros(1, np.float32)), [0.0])
    probe_policy(policy, ring.probe_set(), budget_s=1.0)  # only the zero observation: passes
    ring.add(np.array([1.0, 0.0, 0.5]))
    with pytest.raises(PolicyRefusedError, match=r"non-finite action \[nan\] for recent observation #1"):
        probe_policy(policy, ring.probe_set(), budget_s=1.0)


def test_probe_accepts_a_saturated_action_one_float32_step_past_its_bound() -> None:
    """The fault: a fine-tuned policy's saturated tanh came out as -1.0000001 and every probe refused it."""
    just_past = float(np.nextafter(np.float32(-1.0), np.float32(-2.0)))
    report = probe_policy(FunctionPolicy(lambda obs: [just_past]), np.zeros((2, 3), np.float32), budget_s=1.0)
    assert report.observations == 2


def test_probe_refuses_out_of_bounds_shape_and_exceptions() -> None:
    observations = np.zeros((2, 3), np.float32)
    with pytest.raises(PolicyRefusedError, match=r"outside the action bounds \[-1, 1\]"):
        probe_policy(FunctionPolicy(lambda obs: [1.5]), observations, budget_s=1.0)
    with pytest.raises(PolicyRefusedError, match=r"outside the action bounds"):
        probe_policy(FunctionPolicy(lambda obs: [-1.001]), observations, budget_s=1.0)
    with pytest.raises(PolicyRefusedError, match=r"shape \(2,\) for the zero observation"):
        probe_policy(FunctionPolicy(lambda obs: [0.0, 0.0]), observations, budget_s=1.0)

    def boom(obs: np.ndarray) -> list[float]:
        raise ValueError("policy produced a non-finite action")

    with pytest.raises(PolicyRefusedError, match="failed on the zero observation: policy produced"):
        probe_policy(FunctionPolicy(boom), observations, budget_s=1.0)


def test_probe_refuses_a_slow_policy_after_three_calls() -> None:
    """120 ms per call against a 5 ms budget (50 Hz, fraction 0.25): refused without 200 slow calls, and
    before the rest of the probe set (64 slow calls) runs."""
    policy = FunctionPolicy(lambda obs: [0.1])
    with pytest.raises(
        PolicyRefusedError, match=r"too slow: 3 of 3 calls .* budget of 5.00 ms \(slowest 120.0 ms"
    ):
        probe_policy(policy, np.zeros((64, 3), np.float32), budget_s=0.005, clock=StepClock(0.12))
    assert policy.calls == 1 + 3


def test_probe_tolerates_two_slow_calls_in_200_and_reports_p99() -> None:
    warm_up = [0.3]  # the untimed first call: slow, as a session's first run often is, and not counted
    durations = iter(warm_up + [0.001] * 197 + [0.5, 0.5] + [0.001])

    class Clock:
        now, started = 0.0, False

        def __call__(self) -> float:
            if self.started:
                self.now += next(durations)
            self.started = not self.started
            return self.now

    report = probe_policy(
        FunctionPolicy(lambda obs: [0.1]), np.zeros((4, 3), np.float32), budget_s=0.005, clock=Clock()
    )
    assert report.observations == 4 and report.timed_calls == 200
    assert report.max_s == pytest.approx(0.5) and report.p99_s == pytest.approx(0.001)


def test_authority_check_uses_the_ring_and_the_budget() -> None:
    authority = PolicyAuthority(AuthoritySettings(2**20, inference_budget_s=0.05, probe_observations=4), 3)
    authority.observations.add(np.array([0.0, 0.0, 2.0]))
    authority.check(FunctionPolicy(lambda obs: [0.2]))
    assert authority.last_report is not None and authority.last_report.observations == 2
    assert authority.last_report.p99_s < 0.05
    with pytest.raises(PolicyRefusedError, match="recent observation #1"):
        authority.check(FunctionPolicy(lambda obs: [0.0] if obs[2] < 1.0 else [np.inf]))


def test_rollback_after_k_invalid_ticks_in_a_row() -> None:
    rollback: PolicyRollback[str] = PolicyRollback(3)
    assert rollback.tick(False) is None  # no policy: nothing to roll back
    rollback.install("v1")
    rollback.install("v2")
    assert [rollback.tick(False), rollback.tick(False), rollback.tick(True)] == [None, None, None]
    assert rollback.active == "v2"  # a valid tick in between restarts the count
    assert [rollback.tick(False), rollback.tick(False)] == [None, None]
    assert rollback.tick(False) == "v2"
    assert (rollback.active, rollback.previous, rollback.rollbacks) == ("v1", None, 1)
    for _ in range(2):
        assert rollback.tick(False) is None
    assert rollback.tick(False) == "v1"
    assert (rollback.active, rollback.rollbacks) == (None, 2)  # back to no policy (safe / random)
    with pytest.raises(ValueError, match="at least 1"):
        PolicyRollback(0)


@pytest.mark.parametrize(
    ("setting", "mode", "policy_file", "accepted"),
    [
        ("auto", "train", "", True),
        ("auto", "train", "p.onnx", True),
        ("auto", "deploy", "", True),
        ("auto", "deploy", "p.onnx", False),
        ("accept", "deploy", "p.onnx", True),
        ("ignore", "train", "", False),
    ],
)
def test_policy_updates_setting(setting: str, mode: str, policy_file: str, accepted: bool) -> None:
    assert accepts_policy_updates(setting, mode, policy_file) is accepted


def test_transfer_frames_round_trip_and_refuse_malformed() -> None:
    import io

    from rl_control.policy.transfer import ADMITTED, REFUSED, Frame, read_frame, write_frame

    stream = io.BytesIO()
    write_frame(stream, Frame(ADMITTED, 7, b"onnx bytes", signed=True))
    write_frame(stream, Frame(REFUSED, 0, b"too big: 50 MiB"))
    stream.seek(0)
    assert read_frame(stream, 1024) == Frame(ADMITTED, 7, b"onnx bytes", True)
    refused = read_frame(stream, 1024)
    assert refused is not None and refused.reason == "too big: 50 MiB"
    assert read_frame(stream, 1024) is None  # end of stream
    stream = io.BytesIO()
    write_frame(stream, Frame(ADMITTED, 1, b"x" * 100))
    with pytest.raises(ValueError, match="bad frame"):
        read_frame(io.BytesIO(stream.getvalue()), 99)  # over the payload limit
    with pytest.raises(ValueError, match="ends after 50 of 100 bytes"):
        read_frame(io.BytesIO(stream.getvalue()[:-50]), 1024)
    with pytest.raises(ValueError, match="truncated frame header"):
        read_frame(io.BytesIO(b"P\x00"), 1024)
    with pytest.raises(ValueError, match="unknown frame kind"):
        write_frame(io.BytesIO(), Frame(b"X", 0, b""))


def test_config_keys_are_validated(tmp_path: Path) -> None:
    from rl_control.config.errors import ConfigError
    from rl_control.config.schema import parse_experiment

    def parse(shared: dict, actor: dict) -> object:
        document = {"/**": {"ros__parameters": shared}, "actor_node": {"ros__parameters": actor}}
        return parse_experiment(document, file="x.yaml", base_dir=tmp_path)

    expected = r"x.yaml: \[actor_node\]: require_signed_policies: .*policy_key_file"
    with pytest.raises(ConfigError, match=expected):
        parse({}, {"require_signed_policies": True})
    with pytest.raises(ConfigError, match="policy_key_file"):
        parse({"policy_key_file": str(tmp_path / "missing.key")}, {})
    with pytest.raises(ConfigError, match="max_policy_bytes"):
        parse({}, {"max_policy_bytes": 10})
    with pytest.raises(ConfigError, match="policy_updates"):
        parse({}, {"policy_updates": "sometimes"})
    key = tmp_path / "policy.key"
    key.write_bytes(KEY)
    actor = {"require_signed_policies": True, "policy_updates": "accept"}
    config = parse({"policy_key_file": str(key)}, actor)
    assert config.actor_node.require_signed_policies and config.shared.policy_key_file == str(key)


def test_receiver_process_frames_reach_the_actor_and_a_dead_child_is_restarted() -> None:
    """PolicyReceiverProcess with a stand-in child that sends one frame and exits (no ROS needed)."""
    import sys
    import threading
    import time

    from rl_control.policy.transfer import ADMITTED, Frame
    from rl_control.ros.policy_receiver import PolicyReceiverProcess

    child = (
        "import os, sys\n"
        "from rl_control.policy.transfer import ADMITTED, Frame, write_frame\n"
        "write_frame(os.fdopen(int(sys.argv[-1]), 'wb'), Frame(ADMITTED, 5, b'onnx' * 1000))\n"
    )
    frames: list[Frame] = []
    errors: list[str] = []
    got_two = threading.Event()

    def on_frame(frame: Frame) -> None:
        frames.append(frame)
        if len(frames) >= 2:
            got_two.set()

    receiver = PolicyReceiverProcess(
        node_name="unused",
        topic="unused",
        max_policy_bytes=2**20,
        key_file="",
        require_signed=False,
        on_frame=on_frame,
        log_error=errors.append,
    )
    receiver._command = [sys.executable, "-c", child]  # the stand-in child takes the --fd argument last
    started = time.monotonic()
    receiver.start()
    try:
        assert got_two.wait(60.0), f"frames {len(frames)}, errors {errors}"
    finally:
        receiver.stop()
    assert frames[0] == Frame(ADMITTED, 5, b"onnx" * 1000)
    assert receiver.restarts >= 1 and "policy receiver process exited (0); restarting it" in errors
    assert time.monotonic() - started >= 1.0  # restarts are spaced by RESTART_DELAY_S


def test_guarded_loop_feeds_the_probe_ring_and_the_swapper_rolls_back_after_k_invalid_ticks() -> None:
    """ControlLoop + PolicyTickGuard + PolicySwapper (no ROS, no threads but the loader's)."""
    import time

    from rl_control.actor.control_loop import ControlLoop, Pacing
    from rl_control.actor.core import ActorCore, task_command_safety
    from rl_control.actor.inputs import LatestInputs
    from rl_control.actor.policy_guard import PolicyTickGuard
    from rl_control.actor.policy_swap import PolicySwapper
    from rl_control.actor.state_mapping import JointSample
    from rl_control.actor.throttle import UtdThrottle
    from rl_control.envs import make_task

    task = make_task("pendulum_swingup")
    core = ActorCore(task, task_command_safety(task, task.joint_names), train=False)
    good = FunctionPolicy(lambda obs: [0.5], stochastic=False)
    fails_when_fast = FunctionPolicy(lambda obs: [-0.25] if obs[2] < 5.0 else [np.nan], stochastic=False)
    loads: list[bytes] = []

    def load(data: bytes) -> FunctionPolicy:
        loads.append(data)
        return good

    swapper = PolicySwapper(task, core.set_policy, rollback_ticks=3, load=load)  # type: ignore[arg-type]
    ring = ObservationRing(4, task.observation_dim)
    published: list[np.ndarray] = []
    inputs = LatestInputs(1.0)
    loop = ControlLoop(
        core,
        inputs,
        published.append,
        pacing=Pacing.REALTIME,
        rate_hz=50.0,
        throttle=UtdThrottle(0),
        guard=PolicyTickGuard(core, swapper, ring),
    )

    def tick(velocity: float) -> float:
        now = time.monotonic()
        inputs.put_joints(
            JointSample(np.array([0.4]), np.array([velocity]), np.zeros(1), stamp=now, received=now)
        )
        loop.tick(now)
        return float(published[-1][0]) / float(task.command_high[0])

    swapper.install(good, 1, b"v1")  # type: ignore[arg-type]
    assert tick(0.0) == pytest.approx(0.5)
    assert len(ring) == 1 and ring.probe_set()[1][2] == 0.0  # zero observation first, then the real one
    swapper.install(fails_when_fast, 5, b"v5")  # type: ignore[arg-type]
    assert tick(0.0) == pytest.approx(-0.25)
    assert [tick(8.0), tick(8.0)] == [0.0, 0.0]  # invalid outputs: safe command, no rollback yet
    assert tick(0.0) == pytest.approx(-0.25)  # a valid output in between restarts the count
    assert [tick(8.0), tick(8.0), tick(8.0)] == [0.0, 0.0, 0.0]
    assert (swapper.version, swapper.rollbacks, core.policy) == (1, 1, good)
    assert "v5 rolled back after 3 invalid outputs in a row; now policy v1" in swapper.last_error
    assert tick(8.0) == pytest.approx(0.5)
    assert len(ring) == 4 and ring.probe_set()[-1][2] == 8.0  # the newest real observations
    swapper.offer(5, b"v5")  # a re-delivery of the rolled-back policy is not even loaded
    swapper.start()
    try:
        time.sleep(0.5)
    finally:
        swapper.stop()
    assert loads == [] and swapper.version == 1
    for _ in range(3):
        tick(0.0)
    assert swapper.rollbacks == 1  # valid ticks of the restored policy never roll it back
