"""Policy authority: which candidate policy may drive the robot, and when to take it back.

Every check is ROS-free and cheap to call from an actor's policy loader thread; the actor node wires them:

* :func:`check_policy_size` — a size cap, checked on the raw message before any decoding;
* :func:`sign_policy` / :func:`verify_policy_signature` — an HMAC-SHA256 over the policy version and the
  ONNX bytes with a key file shared by learner and actor (:func:`load_policy_key`);
* :class:`ObservationRing` + :func:`probe_policy` — a candidate runs on the last observations the actor
  really saw (plus the zero observation): every action must be finite and within the action bounds, and
  the p99 call time within an inference budget (a fraction of the control period);
* :class:`PolicyRollback` — after K invalid ticks in a row the previous policy takes over again.

:class:`PolicyAuthority` bundles the candidate checks behind one ``check(policy)`` that raises
:class:`PolicyRefusedError` with the reason.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, TypeVar

import numpy as np

logger = logging.getLogger(__name__)

#: Name of the signature scheme carried next to a signed policy.
SIGNATURE_SCHEME = "hmac-sha256"
#: Calls timed by :func:`probe_policy`: enough for a p99 that tolerates two preempted calls.
TIMED_PROBE_CALLS = 200
#: Shortest accepted key: 16 bytes (128 bits).
MIN_KEY_BYTES = 16


class PolicyRefusedError(ValueError):
    """A candidate policy that must not drive the robot; the message says why."""


class ProbedPolicy(Protocol):
    """What the probe needs from a policy (``OnnxPolicy`` satisfies it)."""

    obs_dim: int
    act_dim: int
    version: int
    stochastic: bool

    def __call__(self, obs: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray: ...


# ------------------------------------------------------------------------------------------------ size
def check_policy_size(size: int, max_bytes: int, source: str) -> None:
    """Refuse a policy message of ``size`` bytes above ``max_bytes`` (before decoding it)."""
    if size > max_bytes:
        raise PolicyRefusedError(
            f"{source}: message of {size / 2**20:.1f} MiB exceeds the size cap of "
            f"{max_bytes / 2**20:.1f} MiB (actor_node.max_policy_bytes)"
        )


# ------------------------------------------------------------------------------------------------ HMAC
def load_policy_key(path: str | Path) -> bytes:
    """Read the shared policy key file: it must exist and hold at least :data:`MIN_KEY_BYTES` bytes.

    Surrounding whitespace is stripped (a key written with ``echo`` works). A key file that other users
    can read is accepted with a warning naming it.
    """
    path = Path(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"policy_key_file {path}: not a regular file")
        key = path.read_bytes().strip()
    except OSError as exc:
        raise ValueError(f"policy_key_file {path}: cannot read the policy key ({exc.strerror})") from exc
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(
            f"policy_key_file {path}: key has {len(key)} bytes, needs at least {MIN_KEY_BYTES} "
            "(e.g. `head -c 32 /dev/urandom | base64 > key`)"
        )
    if info.st_mode & (stat.S_IROTH | stat.S_IWOTH):
        logger.warning("policy_key_file %s is accessible to other users; run `chmod 600 %s`", path, path)
    return key


def _mac(key: bytes, data: bytes, version: int) -> hmac.HMAC:
    mac = hmac.new(key, version.to_bytes(8, "big", signed=False), hashlib.sha256)
    mac.update(data)
    return mac


def sign_policy(key: bytes, data: bytes, version: int) -> str:
    """Hex HMAC-SHA256 over the policy version (8 bytes, big endian) followed by the ONNX bytes."""
    return _mac(key, data, version).hexdigest()


def verify_policy_signature(key: bytes, data: bytes, version: int, signature: str, source: str) -> None:
    """Raise :class:`PolicyRefusedError` unless ``signature`` is the HMAC of ``(version, data)``."""
    if not signature:
        raise PolicyRefusedError(
            f"{source}: policy v{version} is not signed and signed policies are required"
        )
    if not hmac.compare_digest(sign_policy(key, data, version), signature.lower()):
        raise PolicyRefusedError(f"{source}: policy v{version} has a wrong {SIGNATURE_SCHEME} signature")


# ------------------------------------------------------------------------------------------------ probe
class ObservationRing:
    """The last ``capacity`` observations the actor saw (written by the control thread, read by the loader).

    :meth:`add` copies one row into preallocated storage (no allocation per tick); :meth:`probe_set`
    returns a copy: the zero observation first, then the stored rows, oldest first.
    """

    def __init__(self, capacity: int, obs_dim: int) -> None:
        if capacity < 0 or obs_dim < 1:
            raise ValueError(f"ObservationRing needs capacity >= 0, obs_dim >= 1; got {capacity}, {obs_dim}")
        self.capacity = capacity
        self.obs_dim = obs_dim
        self._rows = np.zeros((capacity, obs_dim), dtype=np.float32)
        self._count = 0  # observations ever added

    def __len__(self) -> int:
        return min(self._count, self.capacity)

    def add(self, obs: np.ndarray) -> None:
        """Store one observation, overwriting the oldest when full."""
        if self.capacity:
            self._rows[self._count % self.capacity] = obs
            self._count += 1

    def probe_set(self) -> np.ndarray:
        """``[1 + len(self), obs_dim]`` float32: the zero observation, then the stored ones."""
        count, capacity = self._count, self.capacity
        rows = self._rows.copy()
        rows = np.roll(rows, -(count % capacity), axis=0) if count > capacity else rows[:count]
        return np.concatenate([np.zeros((1, self.obs_dim), dtype=np.float32), rows])


@dataclass(frozen=True)
class ProbeReport:
    """What :func:`probe_policy` measured on an accepted policy."""

    observations: int  # distinct observations checked
    timed_calls: int
    p99_s: float  # nearest-rank 99th percentile of the call time
    max_s: float


#: Share of the action range a probed action may lie beyond a bound: float32 rounding of a saturated tanh
#: output (-1.0000001 was measured on a fine-tuned arm policy, refused until this slack). The task clips
#: every action to its bounds before it becomes a command.
ACTION_BOUND_SLACK = 1e-5


def _probe_name(index: int) -> str:
    return "the zero observation" if index == 0 else f"recent observation #{index}"


def _refuse_action(policy: ProbedPolicy, index: int, action: np.ndarray, low: float, high: float) -> str:
    """Why ``action`` for probe observation ``index`` is unacceptable ('' = acceptable)."""
    what = _probe_name(index)
    if action.shape != (policy.act_dim,):
        return f"returned shape {action.shape} for {what}, expected ({policy.act_dim},)"
    if not np.all(np.isfinite(action)):
        return f"returned a non-finite action {action.tolist()} for {what}"
    slack = ACTION_BOUND_SLACK * (high - low)
    if np.any(action < low - slack) or np.any(action > high + slack):
        return f"returned {action.tolist()} for {what}, outside the action bounds [{low:g}, {high:g}]"
    return ""


def probe_policy(
    policy: ProbedPolicy,
    observations: np.ndarray,
    *,
    budget_s: float,
    action_low: float = -1.0,
    action_high: float = 1.0,
    timed_calls: int = TIMED_PROBE_CALLS,
    clock: Callable[[], float] = time.thread_time,
) -> ProbeReport:
    """Check ``policy`` on every probe observation and time ``timed_calls`` calls against ``budget_s``.

    Each action (deterministic: zero noise for stochastic policies) must have shape ``[act_dim]``, be finite
    and lie in ``[action_low, action_high]``. The p99 (nearest rank) of the call time must be within
    ``budget_s``. Call time is the calling thread's CPU time (onnxruntime runs single-threaded sessions in
    the caller): the policy's own cost, not the time other processes preempted it on a loaded machine.
    Observations are checked in turn, the first one untimed (it warms the session up), then
    ``timed_calls`` timed calls cycling through them; timing stops as soon as more calls went over the
    budget than the p99 allows, so a policy taking 120 ms per call is refused after four calls, not after
    the whole probe set. Raises :class:`PolicyRefusedError` with the reason.
    """
    source = f"policy v{policy.version}"
    noise = np.zeros(policy.act_dim, dtype=np.float32) if policy.stochastic else None

    def checked_call(index: int) -> float:
        """Run and check observation ``index``; returns the call's duration on ``clock``."""
        start = clock()
        try:
            action = np.asarray(policy(observations[index], noise))
        except Exception as exc:
            raise PolicyRefusedError(f"{source} failed on {_probe_name(index)}: {exc}") from exc
        duration = clock() - start
        problem = _refuse_action(policy, index, action, action_low, action_high)
        if problem:
            raise PolicyRefusedError(f"{source} {problem}")
        return duration

    checked_call(0)
    allowed_over = timed_calls - math.ceil(0.99 * timed_calls)
    durations: list[float] = []
    over = 0
    for call in range(timed_calls):
        durations.append(checked_call((call + 1) % len(observations)))
        if durations[-1] > budget_s:
            over += 1
            if over > allowed_over:
                raise PolicyRefusedError(
                    f"{source} is too slow: {over} of {call + 1} calls took longer than the inference "
                    f"budget of {budget_s * 1e3:.2f} ms (slowest {max(durations) * 1e3:.1f} ms)"
                )
    for index in range(timed_calls + 1, len(observations)):
        checked_call(index)
    ordered = sorted(durations)
    p99 = ordered[max(math.ceil(0.99 * len(ordered)) - 1, 0)]
    return ProbeReport(len(observations), len(durations), p99, ordered[-1])


# ------------------------------------------------------------------------------------------------ authority
@dataclass(frozen=True)
class AuthoritySettings:
    """The actor's policy rules (from ``actor_node`` config; see docs/actor.md)."""

    max_policy_bytes: int
    inference_budget_s: float
    key: bytes | None = None  # the shared HMAC key; None = no key configured
    require_signed: bool = False
    probe_observations: int = 64
    invalid_ticks_for_rollback: int = 5

    def __post_init__(self) -> None:
        if self.require_signed and self.key is None:
            raise ValueError("require_signed_policies needs a policy_key_file")


class PolicyAuthority:
    """Decides on candidate policies for one actor: size, signature, probe set and inference budget."""

    def __init__(self, settings: AuthoritySettings, obs_dim: int) -> None:
        self.settings = settings
        self.observations = ObservationRing(settings.probe_observations, obs_dim)
        self.last_report: ProbeReport | None = None

    def check_size(self, size: int, source: str) -> None:
        """The size cap; call it before decoding the message."""
        check_policy_size(size, self.settings.max_policy_bytes, source)

    def authenticate(self, data: bytes, version: int, signature: str, source: str) -> bool:
        """Verify the signature when a key is configured; returns whether the policy is authenticated.

        Refuses unsigned policies when signed ones are required, and a wrong signature whenever a key is
        configured (an unsigned policy is let through only when signatures are optional)."""
        key = self.settings.key
        if key is None or (not signature and not self.settings.require_signed):
            return False
        verify_policy_signature(key, data, version, signature, source)
        return True

    def check(self, policy: ProbedPolicy) -> None:
        """Probe ``policy`` on the recent observations within the inference budget; raises to refuse."""
        self.last_report = probe_policy(
            policy, self.observations.probe_set(), budget_s=self.settings.inference_budget_s
        )


# ------------------------------------------------------------------------------------------------ rollback
P = TypeVar("P")


class PolicyRollback(Generic[P]):
    """The active and the previous policy, and the count of invalid ticks in a row of the active one.

    Owned by one thread (the control thread): :meth:`install` a checked policy, report every tick the
    active policy ran with :meth:`tick`. After ``limit`` invalid ticks in a row the previous policy (or
    none) becomes active again and :meth:`tick` returns the policy it dropped.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"rollback needs a limit of at least 1 invalid tick, got {limit}")
        self.limit = limit
        self.active: P | None = None
        self.previous: P | None = None
        self.invalid_in_a_row = 0
        self.rollbacks = 0

    def install(self, policy: P) -> None:
        """Make ``policy`` active; the one it replaces becomes the rollback target."""
        if self.active is not None:
            self.previous = self.active
        self.active = policy
        self.invalid_in_a_row = 0

    def tick(self, valid: bool) -> P | None:
        """Count one tick of the active policy; returns the dropped policy when this tick rolls back."""
        if valid:
            self.invalid_in_a_row = 0
            return None
        self.invalid_in_a_row += 1
        if self.invalid_in_a_row < self.limit or self.active is None:
            return None
        dropped = self.active
        self.active, self.previous = self.previous, None
        self.invalid_in_a_row = 0
        self.rollbacks += 1
        return dropped


def accepts_policy_updates(setting: str, mode: str, policy_file: str) -> bool:
    """Whether the actor listens to the policy topic (``actor_node.policy_updates``).

    ``auto`` ignores the topic in deploy mode with a ``policy_file`` (the deployed policy stays) and accepts
    it otherwise (training, or a deploy actor that has no policy of its own)."""
    if setting not in ("auto", "accept", "ignore"):
        raise ValueError(f"policy_updates must be auto, accept or ignore, got {setting!r}")
    if setting == "auto":
        return not (mode == "deploy" and policy_file)
    return setting == "accept"
