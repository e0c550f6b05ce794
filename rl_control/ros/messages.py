"""Topic names, QoS profiles and encodings shared by the rl_control ROS 2 nodes.

Only standard message types are used (nothing to compile). The encodings:

Transitions (``/rl_control/transitions``, ``std_msgs/Float64MultiArray``, actor -> learner)
    A batch of ``B`` transitions as a row-major ``B x W`` matrix. ``layout.dim[0]`` has
    ``label="transitions:seq=<n>"``, ``size=B``, ``stride=B*W``; ``layout.dim[1]`` has
    ``label="fields:obs=<O>,action=<A>,reward=1,next_obs=<O>,terminated=1,truncated=1,intervention=1"``,
    ``size=W``, ``stride=W``. Each row is
    ``[obs (O), action (A), reward, next_obs (O), terminated, truncated, intervention]`` with the three flags
    as 0.0/1.0 (``intervention``: a human chose the action). ``seq`` counts messages per publisher from 0,
    so the receiver detects gaps. Messages of the earlier layout (no ``intervention`` column, e.g. in bags
    recorded before it) decode with every row a non-intervention row.

Policy (``/rl_control/policy``, ``std_msgs/UInt8MultiArray``, learner -> actor)
    The ONNX model bytes in ``data``; ``layout.dim[0]`` has ``label="onnx:version=<v>"`` and
    ``size=len(data)``. A signed policy has a second dim with ``label="hmac-sha256:<64 hex digits>"``,
    ``size=0``, ``stride=0``: the HMAC of the version and the bytes with the shared key
    (``rl_control.policy.authority.sign_policy``). An unsigned message keeps the single dim.

Learner progress (``/rl_control/learner_progress``, ``std_msgs/Int64MultiArray``, learner -> actor/sim)
    ``data = [env_steps, updates, policy_version, episodes, last_seq, backlog, intervention_transitions]``;
    ``layout.dim[0].label`` names the elements (``"env_steps,updates,...,intervention_transitions"``) and
    decoding maps by those names (elements after the first three may be missing: they read as defaults).
"""

from __future__ import annotations

import array
import re
from dataclasses import dataclass

import numpy as np
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)
from std_msgs.msg import Float64MultiArray, Int64MultiArray, MultiArrayDimension, UInt8MultiArray

from rl_control.topics import (  # noqa: F401 (re-exported: the nodes take topic names from here)
    CLOCK_TOPIC,
    CMD_VEL_TOPIC,
    DIAGNOSTICS_TOPIC,
    IMU_TOPIC,
    JOINT_STATES_TOPIC,
    LEARNER_PROGRESS_TOPIC,
    ODOM_TOPIC,
    POLICY_TOPIC,
    TRANSITIONS_TOPIC,
)
from rl_control.transitions import FLAG_FIELDS, TransitionBatch

# --- service names ---------------------------------------------------------------------------------
SIM_RESET_SERVICE = "sim_node/reset"
SIM_PAUSE_SERVICE = "sim_node/pause"


def command_topic(controller: str) -> str:
    """Command topic of a ros2_control forward command controller (``<controller>/commands``, relative)."""
    name = controller.strip("/")
    if not name or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_/]*", name):
        raise ValueError(
            f"invalid controller name {controller!r}: expected a ROS name like 'forward_command_controller'"
        )
    return f"{name}/commands"


# --- QoS profiles -----------------------------------------------------------------------------------
# Robot state and commands: reliable like ros2_control's broadcasters/controllers (system default QoS),
# shallow so a slow reader gets the newest sample rather than a backlog.
STATE_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
COMMAND_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
# /clock: reliable depth 1 publisher is compatible with rclpy's best-effort time-source subscription.
CLOCK_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
# Transitions: no silent drops. Deep reliable history, transient-local so a restarted learner receives
# the batches it missed (it skips sequence numbers it already stored).
TRANSITIONS_QOS = QoSProfile(
    depth=1000,
    reliability=ReliabilityPolicy.RELIABLE,
    history=HistoryPolicy.KEEP_LAST,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
# Policy and progress: the latest value only, delivered to late joiners.
POLICY_QOS = QoSProfile(
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    history=HistoryPolicy.KEEP_LAST,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
PROGRESS_QOS = QoSProfile(
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    history=HistoryPolicy.KEEP_LAST,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
DIAGNOSTICS_QOS = QoSProfile(
    depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST
)


# --- transitions ---------------------------------------------------------------------------------
_SEQ_RE = re.compile(r"transitions:seq=(\d+)")
_FIELDS_RE = re.compile(
    r"fields:obs=(\d+),action=(\d+),reward=1,next_obs=(\d+),terminated=1,truncated=1(,intervention=1)?"
)


def _fields_label(obs_dim: int, act_dim: int) -> str:
    return (
        f"fields:obs={obs_dim},action={act_dim},reward=1,next_obs={obs_dim},"
        "terminated=1,truncated=1,intervention=1"
    )


def transition_row_width(obs_dim: int, act_dim: int) -> int:
    """Number of float64 values per encoded transition."""
    return 2 * obs_dim + act_dim + 4


def transitions_to_message(batch: TransitionBatch, seq: int) -> Float64MultiArray:
    """Encode a batch of transitions with message sequence number ``seq`` (see the module docstring)."""
    obs = np.asarray(batch.obs, dtype=np.float64)
    action = np.asarray(batch.action, dtype=np.float64)
    if obs.ndim != 2 or action.ndim != 2 or obs.shape[0] != action.shape[0]:
        raise ValueError(
            f"transitions_to_message: obs {obs.shape} and action {action.shape} must be [B, dim] with equal B"
        )
    rows, obs_dim = obs.shape
    act_dim = action.shape[1]
    columns = [
        obs,
        action,
        np.asarray(batch.reward, dtype=np.float64).reshape(rows, 1),
        np.asarray(batch.next_obs, dtype=np.float64).reshape(rows, obs_dim),
        *(np.asarray(getattr(batch, flag), dtype=np.float64).reshape(rows, 1) for flag in FLAG_FIELDS),
    ]
    matrix = np.concatenate(columns, axis=1)
    if seq < 0:
        raise ValueError(f"transitions_to_message: seq must be >= 0, got {seq}")
    width = matrix.shape[1]
    msg = Float64MultiArray()
    msg.layout.dim = [
        MultiArrayDimension(label=f"transitions:seq={int(seq)}", size=rows, stride=rows * width),
        MultiArrayDimension(label=_fields_label(obs_dim, act_dim), size=width, stride=width),
    ]
    data = array.array("d")
    data.frombytes(np.ascontiguousarray(matrix).tobytes())
    msg.data = data
    return msg


def transitions_from_message(
    msg: Float64MultiArray, obs_dim: int, act_dim: int
) -> tuple[int, TransitionBatch]:
    """Decode a transitions message into ``(seq, TransitionBatch)``.

    Raises ``ValueError`` naming the topic and the expected versus received layout on a malformed message
    (non-finite values are returned as they are: :func:`rl_control.transitions.validate` drops them).
    """
    where = f"{TRANSITIONS_TOPIC}: bad transitions message"
    dims = msg.layout.dim
    if len(dims) != 2:
        raise ValueError(f"{where}: expected 2 layout dims (transitions, fields), got {len(dims)}")
    seq_match = _SEQ_RE.fullmatch(dims[0].label)
    if seq_match is None:
        raise ValueError(f"{where}: dim[0].label {dims[0].label!r} is not 'transitions:seq=<n>'")
    fields_match = _FIELDS_RE.fullmatch(dims[1].label)
    got = tuple(int(g) for g in fields_match.groups()[:3]) if fields_match else None
    if fields_match is None or got != (obs_dim, act_dim, obs_dim):
        raise ValueError(
            f"{where}: expected fields {_fields_label(obs_dim, act_dim)!r}, got {dims[1].label!r}"
        )
    flagged = fields_match.group(4) is not None  # False: the layout before the intervention column
    width = transition_row_width(obs_dim, act_dim) - (0 if flagged else 1)
    rows = int(dims[0].size)
    if int(dims[1].size) != width:
        raise ValueError(f"{where}: expected row width {width}, got dim[1].size={dims[1].size}")
    data = np.frombuffer(msg.data, dtype=np.float64) if len(msg.data) else np.zeros(0)
    if data.size != rows * width:
        raise ValueError(f"{where}: expected {rows} x {width} = {rows * width} values, got {data.size}")
    matrix = data.reshape(rows, width).astype(np.float32)
    a = obs_dim
    b = a + act_dim
    flags = b + 1 + obs_dim  # first flag column
    batch = TransitionBatch(
        obs=matrix[:, :a].copy(),
        action=matrix[:, a:b].copy(),
        reward=matrix[:, b].copy(),
        next_obs=matrix[:, b + 1 : flags].copy(),
        terminated=matrix[:, flags].copy(),
        truncated=matrix[:, flags + 1].copy(),
        intervention=matrix[:, flags + 2].copy() if flagged else np.zeros(rows, np.float32),
    )
    return int(seq_match.group(1)), batch


# --- policy -----------------------------------------------------------------------------------------
_POLICY_RE = re.compile(r"onnx:version=(\d+)")
_SIGNATURE_RE = re.compile(r"hmac-sha256:([0-9a-f]{64})")


def encode_policy(onnx_bytes: bytes, version: int, signature: str = "") -> UInt8MultiArray:
    """Wrap ONNX model bytes, their policy version and (optionally) their HMAC hex digest into a message."""
    if not onnx_bytes:
        raise ValueError("encode_policy: empty ONNX bytes")
    if version < 0:
        raise ValueError(f"encode_policy: version must be >= 0, got {version}")
    if signature and _SIGNATURE_RE.fullmatch(f"hmac-sha256:{signature}") is None:
        raise ValueError(f"encode_policy: signature must be 64 lowercase hex digits, got {signature!r}")
    msg = UInt8MultiArray()
    label = f"onnx:version={int(version)}"
    msg.layout.dim = [MultiArrayDimension(label=label, size=len(onnx_bytes), stride=1)]
    if signature:
        msg.layout.dim.append(MultiArrayDimension(label=f"hmac-sha256:{signature}", size=0, stride=0))
    msg.data = array.array("B", onnx_bytes)
    return msg


def decode_signed_policy(msg: UInt8MultiArray) -> tuple[int, bytes, str]:
    """Return ``(version, onnx_bytes, signature)`` (``signature`` is ``""`` when unsigned).

    Raises ``ValueError`` naming the topic if the message is malformed."""
    where = f"{POLICY_TOPIC}: bad policy message"
    dims = msg.layout.dim
    if len(dims) not in (1, 2):
        raise ValueError(
            f"{where}: expected a layout dim labelled 'onnx:version=<v>' (and optionally one labelled "
            f"'hmac-sha256:<hex>'), got {len(dims)} dims"
        )
    match = _POLICY_RE.fullmatch(dims[0].label)
    if match is None:
        raise ValueError(f"{where}: dim[0].label {dims[0].label!r} is not 'onnx:version=<v>'")
    signature = ""
    if len(dims) == 2:
        signed = _SIGNATURE_RE.fullmatch(dims[1].label)
        if signed is None:
            raise ValueError(
                f"{where}: dim[1].label {dims[1].label[:80]!r} is not 'hmac-sha256:<64 hex digits>'"
            )
        signature = signed.group(1)
    data = bytes(msg.data)
    if len(data) != int(dims[0].size) or not data:
        raise ValueError(f"{where}: expected {dims[0].size} bytes, got {len(data)}")
    return int(match.group(1)), data, signature


def decode_policy(msg: UInt8MultiArray) -> tuple[int, bytes]:
    """Return ``(version, onnx_bytes)`` without the signature (see :func:`decode_signed_policy`)."""
    version, data, _ = decode_signed_policy(msg)
    return version, data


# --- learner progress --------------------------------------------------------------------------------
PROGRESS_FIELDS = (
    "env_steps",
    "updates",
    "policy_version",
    "episodes",
    "last_seq",
    "backlog",
    "intervention_transitions",
)


@dataclass(frozen=True)
class LearnerProgress:
    """What the learner has consumed and produced so far (used for lockstep UTD throttling and display)."""

    env_steps: int = 0  # transitions stored in the replay
    updates: int = 0  # gradient updates done
    policy_version: int = 0  # version of the latest published policy (0 = none yet)
    episodes: int = 0  # episode ends seen in the transition stream
    last_seq: int = -1  # sequence number of the last transitions message stored
    backlog: int = 0  # env steps stored but not yet trained on (from every actor)
    intervention_transitions: int = 0  # stored transitions whose action a human chose (run total)


def encode_progress(progress: LearnerProgress) -> Int64MultiArray:
    """Encode learner progress as an ``Int64MultiArray`` with labelled elements."""
    msg = Int64MultiArray()
    values = [int(getattr(progress, name)) for name in PROGRESS_FIELDS]
    label = ",".join(PROGRESS_FIELDS)
    msg.layout.dim = [MultiArrayDimension(label=label, size=len(values), stride=len(values))]
    msg.data = values
    return msg


def decode_progress(msg: Int64MultiArray) -> LearnerProgress:
    """Decode learner progress by element label; unknown extra elements are ignored."""
    where = f"{LEARNER_PROGRESS_TOPIC}: bad progress message"
    if len(msg.layout.dim) != 1:
        raise ValueError(f"{where}: expected 1 labelled layout dim, got {len(msg.layout.dim)}")
    names = msg.layout.dim[0].label.split(",")
    values = list(msg.data)
    if len(names) != len(values):
        raise ValueError(f"{where}: {len(names)} labels {names} but {len(values)} values")
    by_name = dict(zip(names, values, strict=True))
    missing = [name for name in PROGRESS_FIELDS[:3] if name not in by_name]
    if missing:
        raise ValueError(f"{where}: missing elements {missing} (got {names})")
    return LearnerProgress(**{name: int(by_name[name]) for name in PROGRESS_FIELDS if name in by_name})
