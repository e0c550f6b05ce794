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
import itertools
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rl_control.config.errors import ConfigError, ErrorCollector, FieldError
from rl_control.config.validation import Location, build, did_you_mean, unflatten
from rl_control.config.yaml_file import load_yaml_file
from rl_control.envs.randomization import RandomizationConfig
from rl_control.learning.config import PRESET_NAMES, AgentConfig, preset_config
from rl_control.policy.contract import DEFAULT_CONTROLLER

SHARED_SECTION = "/**"
NODE_NAMES = ("sim_node", "actor_node", "learner_node", "driver_node", "joy_node")
#: Largest estimated memory of the learner's networks with their gradients, Adam moments and targets.
MAX_NETWORK_BYTES = 4 << 30
#: Input/output width assumed by the network memory estimate (generous for the shipped robots).
_ESTIMATE_IO_WIDTH = 256
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
        default=DEFAULT_CONTROLLER,
        metadata={
            "help": "ros2_control controller name: commands go to <controller>/commands (relative name)"
        },
    )
    joint_names: list[str] = field(
        default_factory=list,
        metadata={"help": "joint order of the command array (empty: the task's joints)", "max_items": 64},
    )
    control_rate_hz: float = field(
        default=50.0, metadata={"help": "policy/control rate in Hz", "min": 1.0, "max": 2000.0}
    )
    run_dir: str = field(
        default="runs/pendulum_sim",
        metadata={
            "help": "directory for checkpoints, replay, exported policies and TensorBoard logs",
            "path": "dir",
        },
    )
    seed: int = field(default=0, metadata={"help": "random seed", "min": 0, "max": 2**63 - 1})
    mode: str = field(
        default="train",
        metadata={
            "help": "train: stochastic policy feeding the learner; deploy: deterministic, no learning",
            "choices": ("train", "deploy"),
        },
    )
    policy_key_file: str = field(
        default="",
        metadata={
            "help": "file with the key (at least 16 bytes) shared by learner and actor: the learner signs "
            "each policy it publishes with an HMAC-SHA256, the actor verifies it ('' = not signed)",
            "path": "file",
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
            "tunable": True,
        },
    )
    publish_clock: bool = field(default=True, metadata={"help": "publish /clock (for use_sim_time)"})
    command_timeout_s: float = field(
        default=0.5,
        metadata={
            "help": "realtime mode: no valid command for this long (wall clock) applies the safe command "
            "(hold position / zero effort), like JointTrajectoryController's cmd_timeout; 0 = off. "
            "Lockstep mode waits for commands, so simulated time stands still instead",
            "min": 0.0,
            "max": 60.0,
            "tunable": True,
        },
    )
    randomization: RandomizationConfig = field(
        default_factory=RandomizationConfig,
        metadata={"help": "domain randomization, sampled per episode (see docs/simulation.md)"},
    )


DYNAMIXEL_MODELS = ("XM430-W350", "XH430-W350", "XL330-M288")
DYNAMIXEL_BAUD_RATES = (57600, 115200, 1000000, 2000000, 3000000, 4000000)


@dataclass
class DynamixelEmulatorConfig:
    """The servo-bus emulator (``rl-control emulate dynamixel``); the driver ignores these keys."""

    reality_gap: str = field(
        default="default",
        metadata={
            "help": "named reality gap of the emulated robot (see docs/howto_real_robot.md)",
            "choices": ("none", "default", "harsh"),
        },
    )
    seed: int = field(default=0, metadata={"help": "seed of the emulated sensor noise and faults", "min": 0})
    silent_ids: list[int] = field(
        default_factory=list, metadata={"help": "servo ids that never answer", "min": 0, "max": 252}
    )
    overload_ids: list[int] = field(
        default_factory=list,
        metadata={
            "help": "servo ids that raise the overload error bit (torque shutdown)",
            "min": 0,
            "max": 252,
        },
    )
    overheating_ids: list[int] = field(
        default_factory=list,
        metadata={
            "help": "servo ids that raise the overheating error bit (torque shutdown)",
            "min": 0,
            "max": 252,
        },
    )
    drop_reply_probability: float = field(
        default=0.0, metadata={"help": "probability that a status packet is lost", "min": 0.0, "max": 1.0}
    )
    corrupt_crc_probability: float = field(
        default=0.0,
        metadata={"help": "probability that a status packet has a bad CRC", "min": 0.0, "max": 1.0},
    )
    latency_spike_s: float = field(
        default=0.0, metadata={"help": "extra delay before every status packet", "min": 0.0, "max": 1.0}
    )
    realtime_priority: int = field(
        default=60,
        metadata={
            "help": "SCHED_FIFO priority of the emulator's bus thread: it stands for servo hardware, which "
            "answers whatever the load of the computer; 0 = normal scheduling (on a busy machine replies "
            "then come late and the driver counts failed reads the real arm would not cause); if refused "
            "(no CAP_SYS_NICE or rtprio limit) a warning is logged",
            "min": 0,
            "max": 98,
        },
    )


@dataclass
class DriverNodeConfig:
    """The Dynamixel X-series driver (``driver_node``): servo ids, mounting, limits and bus timing.

    Per-servo keys are parallel lists in ``servo_ids`` order; optional lists may be omitted (defaults)."""

    port: str = field(default="/dev/ttyUSB0", metadata={"help": "serial device of the U2D2/FTDI adapter"})
    baud_rate: int = field(
        default=1000000,
        metadata={"help": "bus baud rate (as set in the servos)", "choices": DYNAMIXEL_BAUD_RATES},
    )
    servo_ids: list[int] = field(
        default_factory=list,
        metadata={
            "help": "Dynamixel ids on the bus (empty: no driver; the graphs use sim_node)",
            "min": 0,
            "max": 252,
        },
    )
    servo_joints: list[str] = field(
        default_factory=list, metadata={"help": "joint name of each servo id (the robot model's names)"}
    )
    models: list[str] = field(
        default_factory=list,
        metadata={
            "help": "model of each servo (checked against its model number)",
            "choices": DYNAMIXEL_MODELS,
        },
    )
    operating_modes: list[str] = field(
        default_factory=list,
        metadata={
            "help": "operating mode of each servo (default: position); current takes effort commands [N m]",
            "choices": ("position", "current_based_position", "current"),
        },
    )
    zero_offsets_rad: list[float] = field(
        default_factory=list,
        metadata={"help": "servo angle (from tick 2048) at joint zero, per servo (default 0.0)"},
    )
    directions: list[int] = field(
        default_factory=list,
        metadata={
            "help": "+1 or -1: joint direction relative to the servo, per servo (default 1)",
            "choices": (1, -1),
        },
    )
    gear_ratios: list[float] = field(
        default_factory=list,
        metadata={"help": "servo turns per joint turn, per servo (default 1.0)", "min": 0.01, "max": 1000.0},
    )
    position_min_rad: list[float] = field(
        default_factory=list,
        metadata={"help": "lowest joint position command per servo (default: model range)"},
    )
    position_max_rad: list[float] = field(
        default_factory=list,
        metadata={"help": "highest joint position command per servo (default: model range)"},
    )
    current_limits_a: list[float] = field(
        default_factory=list,
        metadata={
            "help": "Current Limit (38) per servo in A; also the goal current of current-based position mode "
            "(default: the model's)",
            "min": 0.0,
            "max": 10.0,
        },
    )
    position_p_gains: list[int] = field(
        default_factory=list,
        metadata={"help": "Position P Gain (84) per servo (default: the model's)", "min": 0, "max": 16383},
    )
    state_rate_hz: float = field(
        default=200.0,
        metadata={"help": "bus cycles (sync read + sync write) per second", "min": 1.0, "max": 2000.0},
    )
    error_check_rate_hz: float = field(
        default=5.0,
        metadata={
            "help": "hardware error status reads per second (a separate sync read)",
            "min": 0.1,
            "max": 100.0,
        },
    )
    command_timeout_s: float = field(
        default=0.5,
        metadata={
            "help": "no valid command for this long: hold position (position modes) / zero current",
            "min": 0.01,
            "max": 60.0,
        },
    )
    return_delay_us: int = field(
        default=0,
        metadata={"help": "Return Delay Time (9) written to every servo, in us", "min": 0, "max": 508},
    )
    bus_watchdog_ms: int = field(
        default=100,
        metadata={
            "help": "Bus Watchdog (98): servos stop by themselves after this long without an instruction "
            "(0 = off; rounded to 20 ms units)",
            "min": 0,
            "max": 2540,
        },
    )
    retries: int = field(
        default=2,
        metadata={"help": "extra attempts of a failed read or write within one cycle", "min": 0, "max": 10},
    )
    failures_before_error: int = field(
        default=5,
        metadata={
            "help": "consecutive failed cycles before diagnostics ERROR and the safe behaviour",
            "min": 1,
        },
    )
    realtime_priority: int = field(
        default=0,
        metadata={
            "help": "SCHED_FIFO priority of the bus thread (read, publish, write at state_rate_hz), as "
            "ros2_control runs its read/update/write loop; 0 = normal scheduling. Needs CAP_SYS_NICE or "
            "an rtprio limit; if refused, a warning is logged",
            "min": 0,
            "max": 98,
        },
    )
    reset_speed_rad_s: float = field(
        default=1.0,
        metadata={
            "help": "joint speed of the move to the home pose (~/reset, the episode reset); the move takes "
            "at most 3 s",
            "min": 0.05,
            "max": 10.0,
        },
    )
    reset_tolerance_rad: float = field(
        default=0.1,
        metadata={
            "help": "the reset succeeds once every position-mode joint is this close to the home pose "
            "(within 1 s after the move); an arm whose friction stops it short needs more",
            "min": 0.005,
            "max": 1.0,
        },
    )
    autostart: bool = field(
        default=True, metadata={"help": "configure and activate the lifecycle node at start"}
    )
    emulator: DynamixelEmulatorConfig = field(
        default_factory=DynamixelEmulatorConfig,
        metadata={"help": "settings of the servo-bus emulator for this robot"},
    )

    def __post_init__(self) -> None:
        count = len(self.servo_ids)
        if len(set(self.servo_ids)) != count:
            raise FieldError("servo_ids", f"duplicate servo ids in {self.servo_ids}")
        if count and not self.port:
            raise FieldError("port", "must name the serial device, e.g. /dev/ttyUSB0")
        for name in ("servo_joints", "models"):
            if len(getattr(self, name)) != count:
                raise FieldError(
                    name, f"needs one entry per servo id ({count}), got {len(getattr(self, name))}"
                )
        if len(set(self.servo_joints)) != count:
            raise FieldError("servo_joints", f"duplicate joint names in {self.servo_joints}")
        for name in (
            "operating_modes",
            "zero_offsets_rad",
            "directions",
            "gear_ratios",
            "position_min_rad",
            "position_max_rad",
            "current_limits_a",
            "position_p_gains",
        ):
            given = len(getattr(self, name))
            if given not in (0, count):
                raise FieldError(name, f"needs one entry per servo id ({count}) or none, got {given}")
        if any(lo >= hi for lo, hi in zip(self.position_min_rad, self.position_max_rad, strict=False)):
            raise FieldError("position_min_rad", "each minimum must be below its position_max_rad")


@dataclass
class ActorNodeConfig:
    """The ONNX policy runner (``actor_node``)."""

    policy_file: str = field(
        default="",
        metadata={
            "help": "ONNX policy to load at start ('' = wait for the learner's policy topic)",
            "path": "file",
        },
    )
    state_timeout_s: float = field(
        default=0.2,
        metadata={
            "help": "no joint state for this long: send the safe command",
            "min": 0.001,
            "max": 10.0,
            "tunable": True,
        },
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
        default="sim_node/reset",
        metadata={
            "help": "std_srvs/Trigger service called at episode end, relative to the node's namespace "
            "('' = none, e.g. on hardware)"
        },
    )
    autostart: bool = field(
        default=True,
        metadata={
            "help": "configure and activate the lifecycle node at start (false: wait for ~/change_state)"
        },
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
    cmd_vel_timeout_s: float = field(
        default=0.5,
        metadata={
            "help": "tasks with a velocity command (quadruped_walk): a geometry_msgs/Twist on cmd_vel is "
            "followed for this long; without a fresher one deploy mode stops the robot (safe command), "
            "training keeps the task's command",
            "min": 0.001,
            "max": 60.0,
        },
    )
    max_command_rate: float = field(
        default=0.0,
        metadata={
            "help": "slew limit on policy commands in command units per second (0 = off)",
            "min": 0.0,
            "tunable": True,
        },
    )
    pacing: str = field(
        default="realtime",
        metadata={
            "help": "control-loop pacing: realtime (own clock at control_rate_hz), triggered (act as soon as "
            "a new joint state arrives; the clock is the watchdog) or lockstep (act once per new joint state "
            "of a lockstep sim_node, no stale check). The launchers set lockstep when sim_node runs lockstep "
            "and never lockstep without a sim_node",
            "choices": ("realtime", "triggered", "lockstep"),
        },
    )
    busy_poll: bool = field(
        default=False,
        metadata={
            "help": "the executor thread polls for messages instead of sleeping until one arrives: with "
            "pacing triggered a state is acted on sooner (the thread and its caches stay warm) at the cost "
            "of CPU time; for a robot computer with a core to spare"
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
    policy_updates: str = field(
        default="auto",
        metadata={
            "help": "policies on /rl_control/policy: accept, ignore (not even subscribed) or auto (ignore in "
            "deploy mode with a policy_file, accept otherwise)",
            "choices": ("auto", "accept", "ignore"),
        },
    )
    require_signed_policies: bool = field(
        default=False,
        metadata={
            "help": "accept only policies whose HMAC-SHA256 matches policy_key_file (needs the key file); "
            "without it a wrong signature is still refused, a missing one accepted"
        },
    )
    max_policy_bytes: int = field(
        default=16 * 2**20,
        metadata={
            "help": "size cap on a policy message, checked before decoding it (the default presets export "
            "under 1 MiB)",
            "min": 1024,
            "max": 2**30,
        },
    )
    policy_probe_observations: int = field(
        default=64,
        metadata={
            "help": "a candidate policy must give finite actions in [-1, 1] on the zero observation and on "
            "this many most recent observations before it is swapped in",
            "min": 0,
            "max": 10000,
        },
    )
    inference_budget_fraction: float = field(
        default=0.25,
        metadata={
            "help": "a candidate policy's p99 inference time must stay within this fraction of the control "
            "period (1 / control_rate_hz)",
            "min": 0.01,
            "max": 1.0,
        },
    )
    rollback_invalid_ticks: int = field(
        default=5,
        metadata={
            "help": "after this many invalid policy outputs in a row (non-finite or refused), go back to the "
            "previous policy (or none)",
            "min": 1,
            "max": 100000,
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
        metadata={
            "help": "npz demonstration files seeding the demo buffer",
            "path": "file",
            "max_items": 256,
        },
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
    start_from: str = field(
        default="",
        metadata={
            "help": "a training run directory to begin from when run_dir holds no checkpoint yet (e.g. "
            "fine-tuning on the robot from the simulation run): its weights, with its transitions as prior "
            "data sampled at agent.demo_fraction; the new transitions fill a fresh replay"
        },
    )
    max_abs_reward: float = field(
        default=1000.0,
        metadata={
            "help": "transitions whose |reward| exceeds this are dropped and counted (a finite but huge "
            "reward overflows the critic's targets); set well above the task's largest per-step reward",
            "min": 1e-6,
            "max": 1e30,
        },
    )
    max_abs_observation: float = field(
        default=1.0e4,
        metadata={
            "help": "transitions with any |observation| value above this are dropped and counted",
            "min": 1e-6,
            "max": 1e30,
        },
    )
    torch_threads: int = field(
        default=0,
        metadata={
            "help": "CPU threads torch uses for training (0 = torch's default, one per core)",
            "min": 0,
            "max": 256,
        },
    )
    nice: int = field(
        default=0,
        metadata={
            "help": "niceness the learner process adds to itself at start: on a robot's computer, 10 lets "
            "the driver and the actor (left at 0) take the CPU first",
            "min": 0,
            "max": 19,
        },
    )


@dataclass
class JoyNodeConfig:
    """Joystick teleoperation (``joy_node``): ``sensor_msgs/Joy`` → the actor's deadman and intervention.

    The robot graphs start joy_node when ``axes`` is set; see :mod:`rl_control.teleop`."""

    joy_topic: str = field(default="/joy", metadata={"help": "sensor_msgs/Joy topic of the joystick driver"})
    axes: list[int] = field(
        default_factory=list,
        metadata={
            "help": "Joy axis index per command joint (command joint order); empty: no joy_node",
            "min": 0,
            "max": 63,
            "max_items": 64,
        },
    )
    axis_scales: list[float] = field(
        default_factory=list,
        metadata={
            "help": "gain and sign per mapped axis: action = clip(scale * axis, -1, 1) (empty: all 1.0)",
            "min": -10.0,
            "max": 10.0,
            "max_items": 64,
        },
    )
    deadman_button: int = field(
        default=4,
        metadata={"help": "Joy button index that must be held to enable the robot", "min": 0, "max": 63},
    )
    intervention_button: int = field(
        default=-1,
        metadata={
            "help": "Joy button index held to override the policy with the axes "
            "(-1: any axis outside the dead zone)",
            "min": -1,
            "max": 63,
        },
    )
    deadzone: float = field(
        default=0.05, metadata={"help": "axis values of smaller magnitude count as 0", "min": 0.0, "max": 0.9}
    )

    def __post_init__(self) -> None:
        if self.axis_scales and len(self.axis_scales) != len(self.axes):
            raise FieldError(
                "axis_scales",
                f"has {len(self.axis_scales)} entries, axes has {len(self.axes)}: one scale per mapped axis",
            )
        if self.intervention_button == self.deadman_button:
            raise FieldError("intervention_button", f"is the deadman button ({self.deadman_button})")

    @property
    def enabled(self) -> bool:
        """True when the file maps joystick axes (the robot graphs then start joy_node)."""
        return bool(self.axes)

    def scales(self) -> list[float]:
        """``axis_scales``, or 1.0 per mapped axis when it is empty."""
        return list(self.axis_scales) or [1.0] * len(self.axes)


DISCOVERY_RANGES = ("localhost", "subnet", "system_default", "off")


@dataclass
class LauncherConfig:
    """How ``rl-control launch`` connects its nodes over DDS (read by the launcher, not by a node): the
    same file on every machine of a multi-machine graph. Each value set here is exported to the node
    processes (and the launcher's monitor) as the ROS 2 environment variable in brackets, replacing the
    environment's."""

    ros_domain_id: int = field(
        default=-1,
        metadata={
            "help": "DDS domain shared by every machine of the experiment [ROS_DOMAIN_ID] "
            "(-1: the environment's, else 0)",
            "min": -1,
            "max": 232,
        },
    )
    discovery_range: str = field(
        default="",
        metadata={
            "help": "how far discovery reaches [ROS_AUTOMATIC_DISCOVERY_RANGE]: localhost (this machine), "
            "subnet (multicast on the LAN), system_default, off ('': the environment's, else localhost)",
            "choices": ("", *DISCOVERY_RANGES),
        },
    )
    static_peers: list[str] = field(
        default_factory=list,
        metadata={
            "help": "hosts (IP addresses or names) reached by unicast discovery whatever the range "
            "[ROS_STATIC_PEERS]: networks without multicast, VPNs",
            "max_items": 32,
        },
    )

    def __post_init__(self) -> None:
        for peer in self.static_peers:
            if not peer.strip() or any(c in peer for c in "; \t"):
                raise FieldError("static_peers", f"{peer!r} is not a host name or address")

    def environment(self) -> dict[str, str]:
        """The ROS 2 environment variables this section sets (only those it sets)."""
        env = {}
        if self.ros_domain_id >= 0:
            env["ROS_DOMAIN_ID"] = str(self.ros_domain_id)
        if self.discovery_range:
            env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = self.discovery_range.upper()
        if self.static_peers:
            env["ROS_STATIC_PEERS"] = ";".join(self.static_peers)
        return env


SECTION_CLASSES: dict[str, type] = {
    SHARED_SECTION: SharedConfig,
    "sim_node": SimNodeConfig,
    "actor_node": ActorNodeConfig,
    "learner_node": LearnerNodeConfig,
    "driver_node": DriverNodeConfig,
    "joy_node": JoyNodeConfig,
    "launcher": LauncherConfig,
}


@dataclass
class ExperimentConfig:
    """A fully resolved experiment: the shared values and each node's own section."""

    shared: SharedConfig = field(default_factory=SharedConfig)
    sim_node: SimNodeConfig = field(default_factory=SimNodeConfig)
    actor_node: ActorNodeConfig = field(default_factory=ActorNodeConfig)
    learner_node: LearnerNodeConfig = field(default_factory=LearnerNodeConfig)
    driver_node: DriverNodeConfig = field(default_factory=DriverNodeConfig)
    joy_node: JoyNodeConfig = field(default_factory=JoyNodeConfig)
    launcher: LauncherConfig = field(default_factory=LauncherConfig)
    source: str = ""

    @property
    def has_driver(self) -> bool:
        """True when the file configures a driver (``driver_node.servo_ids``): graphs use it, not sim_node."""
        return bool(self.driver_node.servo_ids)

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
    problems = ErrorCollector()
    for key, value in params.items():
        try:
            _check_ros_compatible(value, loc, key)
        except ConfigError as exc:
            problems.add(exc)
    problems.raise_if_any()
    if name != "learner_node":
        return build(SECTION_CLASSES[name], params, loc)
    agent_overrides = params.pop("agent", {})
    learner = build(LearnerNodeConfig, params, loc)
    if not isinstance(agent_overrides, dict):
        raise loc.error("agent", f"expected a mapping of agent keys, got {type(agent_overrides).__name__}")
    learner.agent = build(
        AgentConfig, agent_overrides, loc.nested("agent"), base=preset_config(learner.preset)
    )
    needed = network_memory_bytes(learner.agent)
    if needed > MAX_NETWORK_BYTES:
        raise loc.nested("agent").error(
            "hidden_sizes",
            f"networks of {learner.agent.hidden_sizes} with {learner.agent.num_critics} critics need about "
            f"{needed / 2**30:.1f} GiB for weights, gradients, Adam moments and targets; the limit is "
            f"{MAX_NETWORK_BYTES / 2**30:.0f} GiB",
        )
    return learner


def network_memory_bytes(agent: AgentConfig) -> int:
    """Estimated float32 bytes of the actor and critic ensemble while training.

    Each trainable weight is held four times (value, gradient, two Adam moments) and each critic once more
    as its target; input and output layers are counted at a generous width.
    """
    widths = [_ESTIMATE_IO_WIDTH, *agent.hidden_sizes, _ESTIMATE_IO_WIDTH]
    per_network = sum((fan_in + 1) * fan_out for fan_in, fan_out in itertools.pairwise(widths))
    trained = per_network * (1 + agent.num_critics)
    return 4 * (4 * trained + per_network * agent.num_critics)


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
    problems = ErrorCollector()
    sections = _split_sections(document, file, problems)
    for name, params in sections.items():  # shared keys belong in /** only, so all nodes agree on them
        if name != SHARED_SECTION:
            for key in params:
                if key in _field_names(SharedConfig):
                    problems.add(
                        ConfigError(
                            f"'{key}' is shared by all nodes: set it under '/**'",
                            file=file,
                            section=name,
                            key=key,
                        )
                    )
    built: dict[str, Any] = {}
    for name in SECTION_CLASSES:
        try:
            built[name] = _build_section(
                name, dict(sections.get(name, {})), Location(file, name, base_dir=base_dir)
            )
        except ConfigError as exc:
            problems.add(exc)
    actor, shared = built.get("actor_node"), built.get(SHARED_SECTION)
    if (
        actor is not None
        and shared is not None
        and actor.require_signed_policies
        and not shared.policy_key_file
    ):
        problems.add(
            ConfigError(
                "require_signed_policies needs the shared key file '/**' policy_key_file",
                file=file,
                section="actor_node",
                key="require_signed_policies",
            )
        )
    problems.raise_if_any()
    return ExperimentConfig(
        shared=built[SHARED_SECTION],
        sim_node=built["sim_node"],
        actor_node=built["actor_node"],
        learner_node=built["learner_node"],
        driver_node=built["driver_node"],
        joy_node=built["joy_node"],
        launcher=built["launcher"],
        source=file or "",
    )


def _split_sections(document: dict[Any, Any], file: str | None, problems: ErrorCollector) -> dict[str, Any]:
    """The ``ros__parameters`` mapping of each valid section; problems with sections go to ``problems``."""
    sections: dict[str, dict[str, Any]] = {}
    for raw_name, body in document.items():
        name = str(raw_name)
        name = name if name == SHARED_SECTION else name.lstrip("/")
        if name not in SECTION_CLASSES:
            problems.add(
                ConfigError(
                    f"unknown section{did_you_mean(name, SECTION_CLASSES)}; expected "
                    f"{', '.join(SECTION_CLASSES)}",
                    file=file,
                    section=str(raw_name),
                )
            )
        elif not isinstance(body, dict) or set(body) != {"ros__parameters"}:
            problems.add(
                ConfigError(
                    "each section must contain exactly one key, 'ros__parameters'", file=file, section=name
                )
            )
        elif not isinstance(body["ros__parameters"] or {}, dict):
            problems.add(ConfigError("'ros__parameters' must be a mapping", file=file, section=name))
        elif name in sections:
            problems.add(ConfigError("section appears twice", file=file, section=name))
        else:
            sections[name] = body["ros__parameters"] or {}
    return sections


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def load_experiment(path: str | Path) -> ExperimentConfig:
    """Read and validate an experiment YAML file; raise :class:`ConfigError` on any problem."""
    path = Path(path)
    document = load_yaml_file(path)
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


def params_files_from_argv(argv: list[str] | None = None) -> list[str]:
    """Every ``--params-file`` given to this ROS process, in command-line order."""
    argv = sys.argv if argv is None else argv
    return [argv[index + 1] for index, arg in enumerate(argv[:-1]) if arg == "--params-file"]


def section_parameters(files: list[str], section: str) -> dict[str, Any]:
    """The flat (dotted) ``ros__parameters`` of the node section ``section`` in ``files`` (later files win).

    ROS matches a file's node sections against the node's fully qualified name, so a node started in a
    namespace (``/robot1/actor_node``) or renamed (``-r __node:=my_actor``) does not get the ``actor_node:``
    section of the experiment file from rclpy; :func:`config_from_node` reads it here instead.
    """
    values: dict[str, Any] = {}
    for file in files:
        document = load_yaml_file(Path(file)) or {}
        if not isinstance(document, dict):
            continue
        for name, body in document.items():
            if str(name).lstrip("/") == section and isinstance(body, dict):
                values.update(_flatten(body.get("ros__parameters") or {}))
    return values


def _flatten(nested: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_from_node(
    node: Any, section: str | None = None, argv: list[str] | None = None
) -> ExperimentConfig:
    """Validate the parameters given to an rclpy node (its ``--params-file`` entries and ``-p``).

    ``section`` is the node's section of the experiment file (default: the node's name). Its keys are read
    from the parameter files whatever the node's namespace or name; what rclpy matched to the node's fully
    qualified name (``/robot1/actor_node:`` entries, ``/**``, ``-p``) takes precedence over them.
    """
    section = section or node.get_name()
    files = params_files_from_argv(argv)
    values = section_parameters(files, section) if section in NODE_NAMES else {}
    # rclpy keeps the overrides it was given in this attribute; no public accessor exists.
    values.update({name: parameter.value for name, parameter in node._parameter_overrides.items()})
    return config_from_parameters(section, values, file=files[0] if files else None)


@dataclass(frozen=True)
class ParameterSpec:
    """One ROS parameter of a node, as the schema defines it (the node declares it from this)."""

    name: str
    value: Any
    field_type: Any
    description: str
    minimum: float | int | None = None
    maximum: float | int | None = None
    choices: tuple[Any, ...] = ()
    path_kind: str = ""
    tunable: bool = False


def node_parameter_specs(node_name: str, config: ExperimentConfig) -> list[ParameterSpec]:
    """Every parameter of ``node_name`` (shared keys and its own, nested ones dotted) with its value in
    ``config``: what the node declares at start, defaults included."""
    if node_name not in NODE_NAMES:
        raise ValueError(f"unknown node {node_name!r}; expected one of {NODE_NAMES}")
    return _specs(config.shared, "") + _specs(config.section(node_name), "")


def _specs(instance: Any, prefix: str) -> list[ParameterSpec]:
    from rl_control.config.validation import field_types

    types = field_types(type(instance))
    specs: list[ParameterSpec] = []
    for spec in dataclasses.fields(instance):
        value = getattr(instance, spec.name)
        if dataclasses.is_dataclass(value):
            specs.extend(_specs(value, f"{prefix}{spec.name}."))
            continue
        meta = spec.metadata
        path = meta.get("path")
        specs.append(
            ParameterSpec(
                name=f"{prefix}{spec.name}",
                value=value,
                field_type=types[spec.name],
                description=str(meta.get("help", "")),
                minimum=meta.get("min"),
                maximum=meta.get("max"),
                choices=tuple(meta.get("choices", ())),
                path_kind="" if not path else "dir" if path == "dir" else "file",
                tunable=bool(meta.get("tunable", False)),
            )
        )
    return specs
