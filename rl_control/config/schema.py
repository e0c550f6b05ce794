"""The experiment config: one ROS 2 parameter YAML file for the whole node graph.

Layout (the same file works with ``ros2 launch`` and with ``rl-control launch``)::

    /**:                      # shared by every node
      ros__parameters:
        task: pendulum_swingup
    sim_node:
      ros__parameters:
        sim_mode: lockstep
        randomization: {enabled: false}
    actor_node:
      ros__parameters: {...}
    learner_node:
      ros__parameters:
        preset: droq
        agent: {utd_ratio: 10}   # overrides on top of the preset

Every key is checked at load time: unknown keys (with a "did you mean"), wrong types, out-of-range values
and missing files are :class:`ConfigError`\\ s naming the file, the node section and the key.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rl_control.config.errors import ConfigError, FieldError
from rl_control.config.validation import Location, build, did_you_mean, unflatten
from rl_control.envs.randomization import RandomizationConfig
from rl_control.learning.config import PRESET_NAMES, AgentConfig, preset_config

SHARED_SECTION = "/**"
NODE_NAMES = ("sim_node", "actor_node", "learner_node")
#: Parameters every rclpy node declares itself; accepted in any section, never validated by us.
ROS_BUILTIN_PARAMETERS = frozenset({"use_sim_time", "start_type_description_service", "qos_overrides"})


def _task_names() -> tuple[str, ...]:
    from rl_control.envs.tasks import TASK_NAMES

    return TASK_NAMES


@dataclass
class SharedConfig:
    """Values every node needs (the ``/**`` section)."""

    task: str = field(
        default="pendulum_swingup",
        metadata={"help": "task to run (robot, observation, action mapping, reward); see docs/simulation.md"},
    )
    controller: str = field(
        default="forward_command_controller",
        metadata={"help": "ros2_control controller name: commands go to /<controller>/commands"},
    )
    joint_names: list[str] = field(
        default_factory=list, metadata={"help": "joint order of the command array (empty: the task's joints)"}
    )
    control_rate_hz: float = field(
        default=50.0, metadata={"help": "policy/control rate in Hz", "min": 1.0, "max": 2000.0}
    )
    run_dir: str = field(
        default="runs/pendulum_sim",
        metadata={"help": "directory for checkpoints, replay, exported policies and TensorBoard logs"},
    )
    seed: int = field(default=0, metadata={"help": "random seed", "min": 0})
    mode: str = field(
        default="train",
        metadata={
            "help": "train: stochastic policy feeding the learner; deploy: deterministic, no learning",
            "choices": ("train", "deploy"),
        },
    )

    def __post_init__(self) -> None:
        names = _task_names()
        if self.task not in names:
            raise FieldError(
                "task",
                f"unknown task {self.task!r}{did_you_mean(self.task, names)}; available: {', '.join(names)}",
            )
        if not self.controller or "/" in self.controller:
            raise FieldError("controller", f"must be a plain controller name, got {self.controller!r}")
        if len(set(self.joint_names)) != len(self.joint_names):
            raise FieldError("joint_names", f"duplicate joint names in {self.joint_names}")


@dataclass
class SimNodeConfig:
    """The MuJoCo simulator node (``sim_node``)."""

    sim_mode: str = field(
        default="lockstep",
        metadata={
            "help": "lockstep: one control period per command (training); realtime: paced by the wall clock",
            "choices": ("lockstep", "realtime"),
        },
    )
    real_time_factor: float = field(
        default=1.0,
        metadata={
            "help": "realtime mode: simulated seconds per wall-clock second",
            "min": 0.01,
            "max": 100.0,
        },
    )
    publish_clock: bool = field(default=True, metadata={"help": "publish /clock (for use_sim_time)"})
    randomization: RandomizationConfig = field(
        default_factory=RandomizationConfig,
        metadata={"help": "domain randomization, sampled per episode (see docs/simulation.md)"},
    )


@dataclass
class ActorNodeConfig:
    """The ONNX policy runner (``actor_node``)."""

    policy_file: str = field(
        default="",
        metadata={
            "help": "ONNX policy to load at start ('' = wait for the learner's policy topic)",
            "path": True,
        },
    )
    state_timeout_s: float = field(
        default=0.2,
        metadata={"help": "no joint state for this long: send the safe command", "min": 0.001, "max": 10.0},
    )
    safe_command: str = field(
        default="hold",
        metadata={
            "help": "command when the state is stale or invalid: hold position or zero effort",
            "choices": ("hold", "zero"),
        },
    )
    transition_batch_size: int = field(
        default=25, metadata={"help": "transitions per message to the learner", "min": 1, "max": 10000}
    )
    reset_service: str = field(
        default="/sim_node/reset",
        metadata={"help": "std_srvs/Trigger service called at episode end ('' = none, e.g. on hardware)"},
    )
    max_policy_lag_steps: int = field(
        default=200,
        metadata={
            "help": "lockstep: pause while env steps sent minus steps the learner trained on exceed this "
            "(0 = never pause)",
            "min": 0,
        },
    )
    require_enable: bool = field(
        default=False,
        metadata={
            "help": "deadman: act only while /rl_control/enable (std_msgs/Bool) is true and fresher than "
            "state_timeout_s; otherwise send the safe command"
        },
    )
    max_command_rate: float = field(
        default=0.0,
        metadata={"help": "slew limit on policy commands in command units per second (0 = off)", "min": 0.0},
    )
    sim_mode: str = field(
        default="auto",
        metadata={
            "help": "control-loop pacing: lockstep (act once per new joint state, for a lockstep sim_node), "
            "realtime (own clock at control_rate_hz) or auto (sim_node.sim_mode from the same params file; "
            "realtime when the file has no sim_node section, e.g. on hardware)",
            "choices": ("auto", "lockstep", "realtime"),
        },
    )
    realtime_priority: int = field(
        default=0,
        metadata={
            "help": "SCHED_FIFO priority of the control thread (the executor thread gets one less); "
            "0 = normal scheduling. Needs CAP_SYS_NICE or an rtprio limit; if refused, a warning is logged",
            "min": 0,
            "max": 98,
        },
    )


@dataclass
class LearnerNodeConfig:
    """The online off-policy learner (``learner_node``)."""

    preset: str = field(
        default="droq",
        metadata={"help": "algorithm preset; 'agent' keys override its values", "choices": PRESET_NAMES},
    )
    agent: AgentConfig = field(
        default_factory=lambda: preset_config("droq"),
        metadata={"help": "agent hyper-parameters (overrides on top of the preset)"},
    )
    demo_files: list[str] = field(
        default_factory=list,
        metadata={"help": "npz demonstration files seeding the demo buffer", "path": True},
    )
    publish_every_updates: int = field(
        default=500, metadata={"help": "publish a new ONNX policy every this many gradient updates", "min": 1}
    )
    checkpoint_every_s: float = field(
        default=60.0, metadata={"help": "checkpoint period in seconds (and always on shutdown)", "min": 1.0}
    )
    resume: bool = field(
        default=True, metadata={"help": "resume from the run directory if it has a checkpoint"}
    )
    torch_threads: int = field(
        default=0,
        metadata={
            "help": "CPU threads torch uses for training (0 = torch's default, one per core)",
            "min": 0,
            "max": 256,
        },
    )


SECTION_CLASSES: dict[str, type] = {
    SHARED_SECTION: SharedConfig,
    "sim_node": SimNodeConfig,
    "actor_node": ActorNodeConfig,
    "learner_node": LearnerNodeConfig,
}


@dataclass
class ExperimentConfig:
    """A fully resolved experiment: the shared values and each node's own section."""

    shared: SharedConfig = field(default_factory=SharedConfig)
    sim_node: SimNodeConfig = field(default_factory=SimNodeConfig)
    actor_node: ActorNodeConfig = field(default_factory=ActorNodeConfig)
    learner_node: LearnerNodeConfig = field(default_factory=LearnerNodeConfig)
    source: str = ""

    def section(self, name: str) -> Any:
        """The config object of section ``name`` (``"/**"`` or a node name)."""
        return self.shared if name == SHARED_SECTION else getattr(self, name)

    def to_ros_yaml(self) -> dict[str, Any]:
        """The resolved config as a ROS 2 parameter mapping (every key explicit except empty lists,
        which ROS 2 parameters cannot hold and which mean "the default")."""
        return {
            name: {"ros__parameters": _without_empty_lists(dataclasses.asdict(self.section(name)))}
            for name in SECTION_CLASSES
        }


def _without_empty_lists(mapping: dict[str, Any]) -> dict[str, Any]:
    return {
        key: _without_empty_lists(value) if isinstance(value, dict) else value
        for key, value in mapping.items()
        if value != []
    }


def _check_ros_compatible(value: Any, loc: Location, key: str) -> None:
    """Reject YAML that ROS 2's parameter parser would refuse or misread."""
    if isinstance(value, dict):
        for sub_key, sub_value in value.items():
            _check_ros_compatible(sub_value, loc, f"{key}.{sub_key}")
    elif isinstance(value, list):
        if not value:
            raise loc.error(
                key, "empty lists are not valid ROS 2 parameters; omit the key to use the default"
            )
        kinds = {type(item) for item in value}
        if len(kinds) > 1:
            raise loc.error(
                key,
                f"list mixes {sorted(k.__name__ for k in kinds)}; ROS 2 parameter arrays "
                "hold one type (write 0.0, not 0, in a list of floats)",
            )
        if kinds & {dict, list} or None in value:
            raise loc.error(key, "lists must hold plain numbers, strings or booleans")
    elif value is None:
        raise loc.error(key, "null is not a valid ROS 2 parameter value; omit the key to use the default")


def _build_section(name: str, params: dict[str, Any], loc: Location) -> Any:
    params = {k: v for k, v in params.items() if k not in ROS_BUILTIN_PARAMETERS}
    for key, value in params.items():
        _check_ros_compatible(value, loc, key)
    if name != "learner_node":
        return build(SECTION_CLASSES[name], params, loc)
    agent_overrides = params.pop("agent", {})
    learner = build(LearnerNodeConfig, params, loc)
    if not isinstance(agent_overrides, dict):
        raise loc.error("agent", f"expected a mapping of agent keys, got {type(agent_overrides).__name__}")
    learner.agent = build(
        AgentConfig, agent_overrides, loc.nested("agent"), base=preset_config(learner.preset)
    )
    return learner


def parse_experiment(
    document: Any, *, file: str | None = None, base_dir: Path | None = None
) -> ExperimentConfig:
    """Validate a parsed YAML document (mapping of sections) into an :class:`ExperimentConfig`."""
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError(
            f"top level must be a mapping of node sections, got {type(document).__name__}", file=file
        )
    sections: dict[str, dict[str, Any]] = {}
    for raw_name, body in document.items():
        name = str(raw_name)
        name = name if name == SHARED_SECTION else name.lstrip("/")
        if name not in SECTION_CLASSES:
            raise ConfigError(
                f"unknown section{did_you_mean(name, SECTION_CLASSES)}; expected "
                f"{', '.join(SECTION_CLASSES)}",
                file=file,
                section=str(raw_name),
            )
        if not isinstance(body, dict) or set(body) != {"ros__parameters"}:
            raise ConfigError(
                "each section must contain exactly one key, 'ros__parameters'", file=file, section=name
            )
        params = body["ros__parameters"] or {}
        if not isinstance(params, dict):
            raise ConfigError("'ros__parameters' must be a mapping", file=file, section=name)
        if name in sections:
            raise ConfigError("section appears twice", file=file, section=name)
        sections[name] = params
    for name, params in sections.items():  # shared keys belong in /** only, so all nodes agree on them
        if name != SHARED_SECTION:
            for key in params:
                if key in _field_names(SharedConfig):
                    raise ConfigError(
                        f"'{key}' is shared by all nodes: set it under '/**'",
                        file=file,
                        section=name,
                        key=key,
                    )
    built = {
        name: _build_section(name, dict(sections.get(name, {})), Location(file, name, base_dir=base_dir))
        for name in SECTION_CLASSES
    }
    return ExperimentConfig(
        shared=built[SHARED_SECTION],
        sim_node=built["sim_node"],
        actor_node=built["actor_node"],
        learner_node=built["learner_node"],
        source=file or "",
    )


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def load_experiment(path: str | Path) -> ExperimentConfig:
    """Read and validate an experiment YAML file; raise :class:`ConfigError` on any problem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("config file not found", file=str(path))
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", file=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", file=str(path)) from None
    return parse_experiment(document, file=str(path), base_dir=path.parent.resolve())


def params_file_from_argv(argv: list[str] | None = None) -> str | None:
    """The ``--params-file`` given to this ROS process, for error messages."""
    argv = sys.argv if argv is None else argv
    for index, arg in enumerate(argv[:-1]):
        if arg == "--params-file":
            return argv[index + 1]
    return None


def config_from_parameters(
    node_name: str, parameters: dict[str, Any], *, file: str | None = None
) -> ExperimentConfig:
    """Validate a node's flat ROS parameters (dotted names) into an :class:`ExperimentConfig`.

    ``parameters`` holds the shared keys and the node's own keys (ROS merges ``/**`` into every node).
    Sections of other nodes keep their defaults.
    """
    if node_name not in NODE_NAMES:
        raise ValueError(f"unknown node {node_name!r}; expected one of {NODE_NAMES}")
    nested = unflatten({k: v for k, v in parameters.items() if k.split(".")[0] not in ROS_BUILTIN_PARAMETERS})
    shared_keys = _field_names(SharedConfig)
    shared = {k: v for k, v in nested.items() if k in shared_keys}
    own = {k: v for k, v in nested.items() if k not in shared_keys}
    document = {SHARED_SECTION: {"ros__parameters": shared}, node_name: {"ros__parameters": own}}
    base_dir = Path(file).resolve().parent if file else None
    return parse_experiment(document, file=file, base_dir=base_dir)


def config_from_node(node: Any) -> ExperimentConfig:
    """Validate the parameters of an rclpy node created with
    ``automatically_declare_parameters_from_overrides=True``."""
    names = node.list_parameters([], 0).names
    values = {param.name: param.value for param in node.get_parameters(names)}
    return config_from_parameters(node.get_name(), values, file=params_file_from_argv())
