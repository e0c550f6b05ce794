"""The policy contract: what a deployer must know about an exported policy, carried in its ONNX metadata.

A policy trained on one task, joint order, controller and control rate is only correct on a robot that
matches them. :class:`PolicyContract` records these facts (plus the observation layout, the action
scaling, whether observation normalization is baked in, the domain randomization it was trained under and
the package version) as ``metadata_props`` string values (JSON for structured ones). :func:`check`
compares a policy's contract with what the deployment expects and raises :class:`ContractMismatchError`
naming the first field that disagrees; :func:`check_joint_states` does the same for the joint names a robot
actually publishes.

Metadata keys (all strings): ``contract`` (:data:`CONTRACT_VERSION`), ``task``, ``joint_names`` (JSON list,
the policy's joint order), ``command_joint_names`` (JSON list, the controller's order), ``controller``,
``command_interface``, ``observation_layout`` (JSON ``{name: [start, stop]}``), ``action_scaling`` (JSON),
``control_rate_hz``, ``observation_normalization`` (``"true"``/``"false"``, written by the export),
``randomization`` (JSON) and ``package_version``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata as package_metadata
from typing import Any, Protocol

CONTRACT_KEY = "contract"
CONTRACT_VERSION = "1"
NORMALIZATION_KEY = "observation_normalization"
DEFAULT_CONTROLLER = "forward_command_controller"
PACKAGE_NAME = "rl_control"
#: Fields :func:`check` compares, in the order they are reported; the others describe, they do not bind.
CHECKED_FIELDS = (
    "task",
    "joint_names",
    "command_joint_names",
    "controller",
    "command_interface",
    "control_rate_hz",
    "observation_layout",
    "action_scaling",
)
_JSON_FIELDS = frozenset(
    {"joint_names", "command_joint_names", "observation_layout", "action_scaling", "randomization"}
)
_RATE_TOLERANCE = 1e-6


class ContractError(ValueError):
    """A policy's contract is missing, unreadable or does not match its deployment."""


class ContractMismatchError(ContractError):
    """A contract field disagrees with the deployment; :attr:`field` names it."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"policy contract field {field_name!r}: {message}")
        self.field = field_name


class TaskDescription(Protocol):
    """What the contract reads from a task (``rl_control.envs.Task`` satisfies it)."""

    name: str
    joint_names: tuple[str, ...]
    command_interface: str
    control_rate_hz: float
    observation_layout: dict[str, tuple[int, int]]

    def action_scaling(self) -> dict[str, object]: ...


class DeploymentSettings(Protocol):
    """The shared experiment settings a deployment fixes (``rl_control.config.SharedConfig`` satisfies it)."""

    controller: str
    joint_names: list[str]
    control_rate_hz: float


def package_version() -> str:
    """The installed ``rl_control`` version ("unknown" when running from an uninstalled tree)."""
    try:
        return package_metadata.version(PACKAGE_NAME)
    except package_metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class PolicyContract:
    """What a policy was trained for; see the module docstring for its metadata form."""

    task: str
    joint_names: tuple[str, ...]
    command_joint_names: tuple[str, ...]
    controller: str
    command_interface: str
    control_rate_hz: float
    observation_layout: dict[str, tuple[int, int]]
    action_scaling: dict[str, Any]
    randomization: dict[str, Any] = field(default_factory=dict)
    observation_normalization: bool | None = None  # None: not recorded (set by the ONNX export)
    package_version: str = field(default_factory=package_version)

    @classmethod
    def for_task(
        cls,
        task: TaskDescription,
        *,
        controller: str,
        command_joint_names: Sequence[str] = (),
        control_rate_hz: float | None = None,
        randomization: Mapping[str, Any] | None = None,
    ) -> PolicyContract:
        """The contract of ``task`` driven through ``controller`` (joints in ``command_joint_names`` order,
        default the task's), at ``control_rate_hz`` (default the task's), trained under ``randomization``
        (a plain mapping, e.g. ``dataclasses.asdict(RandomizationConfig)``; ``None`` or one with
        ``enabled`` false = the nominal model, recorded as ``{"enabled": false}``)."""
        return cls(
            task=task.name,
            joint_names=tuple(task.joint_names),
            command_joint_names=tuple(command_joint_names) or tuple(task.joint_names),
            controller=controller,
            command_interface=task.command_interface,
            control_rate_hz=float(control_rate_hz if control_rate_hz is not None else task.control_rate_hz),
            observation_layout={name: (int(a), int(b)) for name, (a, b) in task.observation_layout.items()},
            action_scaling=_plain_json(task.action_scaling()),
            randomization=_plain_json(dict(randomization or {}))
            if randomization and randomization.get("enabled")
            else {"enabled": False},
        )

    @property
    def randomized(self) -> bool:
        """True when the policy was trained with domain randomization enabled."""
        return bool(self.randomization.get("enabled", False))

    def to_metadata(self) -> dict[str, str]:
        """The contract as ONNX ``metadata_props`` (string values, JSON for structured ones)."""
        values: dict[str, str] = {
            CONTRACT_KEY: CONTRACT_VERSION,
            "task": self.task,
            "controller": self.controller,
            "command_interface": self.command_interface,
            "control_rate_hz": repr(self.control_rate_hz),
            "package_version": self.package_version,
            "joint_names": json.dumps(list(self.joint_names)),
            "command_joint_names": json.dumps(list(self.command_joint_names)),
            "observation_layout": json.dumps({k: list(v) for k, v in self.observation_layout.items()}),
            "action_scaling": json.dumps(self.action_scaling, sort_keys=True),
            "randomization": json.dumps(self.randomization, sort_keys=True),
        }
        if self.observation_normalization is not None:
            values.update(normalization_metadata(self.observation_normalization))
        return values

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], source: str = "policy") -> PolicyContract:
        """Parse a contract from ONNX metadata; :class:`ContractError` names ``source`` and the bad key."""
        if CONTRACT_KEY not in metadata:
            raise ContractError(f"{source}: carries no policy contract (metadata key {CONTRACT_KEY!r})")
        if metadata[CONTRACT_KEY] != CONTRACT_VERSION:
            raise ContractError(
                f"{source}: contract version {metadata[CONTRACT_KEY]!r}, "
                f"this package reads {CONTRACT_VERSION!r}"
            )
        parsed: dict[str, Any] = {}
        for key in (*CHECKED_FIELDS, "randomization", "package_version"):
            if key not in metadata:
                raise ContractError(f"{source}: contract metadata lacks {key!r}")
            text = metadata[key]
            try:
                parsed[key] = json.loads(text) if key in _JSON_FIELDS else text
            except json.JSONDecodeError as error:
                raise ContractError(
                    f"{source}: contract metadata {key!r} is not valid JSON ({error})"
                ) from None
        try:
            rate = float(parsed["control_rate_hz"])
            layout = {str(k): (int(v[0]), int(v[1])) for k, v in parsed["observation_layout"].items()}
            normalization = metadata.get(NORMALIZATION_KEY)
            return cls(
                task=parsed["task"],
                joint_names=tuple(str(name) for name in parsed["joint_names"]),
                command_joint_names=tuple(str(name) for name in parsed["command_joint_names"]),
                controller=parsed["controller"],
                command_interface=parsed["command_interface"],
                control_rate_hz=rate,
                observation_layout=layout,
                action_scaling=dict(parsed["action_scaling"]),
                randomization=dict(parsed["randomization"]),
                observation_normalization=None if normalization is None else normalization == "true",
                package_version=parsed["package_version"],
            )
        except (TypeError, ValueError, AttributeError, IndexError, KeyError) as error:
            raise ContractError(f"{source}: malformed contract metadata ({error})") from None


def normalization_metadata(enabled: bool) -> dict[str, str]:
    """The metadata entry the ONNX export adds: whether observation normalization is part of the graph."""
    return {NORMALIZATION_KEY: "true" if enabled else "false"}


def _plain_json(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists), so compared contracts match exactly."""
    return json.loads(json.dumps(value))


def check(contract: PolicyContract, expected: PolicyContract) -> None:
    """Raise :class:`ContractMismatchError` for the first of :data:`CHECKED_FIELDS` that differs."""
    for name in CHECKED_FIELDS:
        have, want = getattr(contract, name), getattr(expected, name)
        if name == "control_rate_hz":
            same = math.isclose(have, want, rel_tol=_RATE_TOLERANCE)
        else:
            same = have == want
        if not same:
            raise ContractMismatchError(
                name, f"the policy was trained with {have!r}, this deployment has {want!r}"
            )


def check_joint_states(contract: PolicyContract, received_joint_names: Sequence[str]) -> None:
    """Check the joint names a robot publishes (``JointState.name``): every policy joint must be there.

    The order may differ (states are mapped by name) and extra joints are ignored; a missing or
    duplicated policy joint raises :class:`ContractMismatchError` on ``joint_names``.
    """
    received = list(received_joint_names)
    missing = [name for name in contract.joint_names if name not in received]
    if missing:
        raise ContractMismatchError(
            "joint_names", f"the robot's joint states lack {missing} (received {received})"
        )
    repeated = sorted({name for name in contract.joint_names if received.count(name) > 1})
    if repeated:
        raise ContractMismatchError("joint_names", f"the robot's joint states repeat {repeated}")


def contract_of(policy: object, source: str = "policy") -> PolicyContract | None:
    """The contract a loaded policy (``OnnxPolicy``: its ``metadata``) carries; ``None`` without one."""
    metadata = getattr(policy, "metadata", None) or {}
    if CONTRACT_KEY not in metadata:
        return None
    return PolicyContract.from_metadata(metadata, source)


def expected_contract(settings: DeploymentSettings, task: TaskDescription) -> PolicyContract:
    """The contract a deployment with these shared settings and this task requires of a policy."""
    return PolicyContract.for_task(
        task,
        controller=settings.controller,
        command_joint_names=settings.joint_names,
        control_rate_hz=settings.control_rate_hz,
    )


def contract_check_for(
    settings: DeploymentSettings, task: TaskDescription, *, require_contract: bool = False
) -> Callable[[object], None]:
    """A ``check(policy) -> None`` for a policy swapper: raises :class:`ContractError` on a mismatch.

    ``settings`` is the actor's shared configuration (``config.shared``). A policy without a contract
    (exported before contracts existed) passes unless ``require_contract``; the swapper's own dimension
    checks still apply to it.
    """
    expected = expected_contract(settings, task)

    def check_policy_contract(policy: object) -> None:
        contract = contract_of(policy)
        if contract is None:
            if require_contract:
                raise ContractError(f"policy carries no contract (metadata key {CONTRACT_KEY!r})")
            return
        check(contract, expected)

    return check_policy_contract
